"""The Flask application factory: configuration, logging, errors as JSON, and the blueprints."""
import ctypes
import logging
import multiprocessing
import os
import re
import secrets
import signal
import time

from flask import Flask, g, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from service.web import console
from service.workflow.active_rulebook import ActiveRulebook
from service.store.audit import AuditUnavailable
from service.store.database import describe
from service.web.errors import error_response
from service.store.instance import Instance
from service.store.json_text import JSONProvider

MAX_BODY_BYTES = 64 * 1024
PR_SET_PDEATHSIG = 1   # prctl(2): the signal a process gets when its parent dies (Linux)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")   # a caller's id is logged only if it is plainly safe
log = logging.getLogger("service")


def create_app(test_config: dict | None = None) -> Flask:
    """Build the service. `test_config` may set INSTANCE_PATH, DATABASE_URL, RULEBOOK, WARM."""
    config = dict(test_config or {})
    instance = Instance.from_env(config)
    app = Flask(__name__, instance_path=str(instance.path))
    app.json = JSONProvider(app)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, **config)
    _configure_logging(app, instance)
    app.extensions["instance"] = instance
    try:
        instance.database  # migrate now if the database answers; `formulary serve` already did
    except SQLAlchemyError as error:
        log.error("database unavailable at start (%s): answering 503 until it returns", describe(error))
    app.extensions["active_rulebook"] = ActiveRulebook(
        instance.rulebook_path, instance.engine, warm=config.get("WARM", True))

    from service.web.api import decisions as api

    from service.web.api import workflow as api_workflow

    from service.web import openapi
    app.register_blueprint(api.blueprint)
    app.register_blueprint(api_workflow.blueprint)
    app.register_blueprint(openapi.blueprint)
    console.register(app, instance)
    _register_errors(app)

    @app.before_request
    def _start():
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(16)
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        principal = g.get("principal")
        # The path only: query strings may carry patient identifiers.
        log.info("%s %s %s %.1fms by=%s request=%s", request.method, request.path, response.status_code,
                 (time.perf_counter() - g.get("started", time.perf_counter())) * 1000,
                 principal[0] if principal else "-", g.get("request_id"))
        return response

    return app


def create_served_app() -> Flask:
    """The app as a `formulary serve` worker builds it: create_app, in a worker that ends with
    its server.

    Granian forks its workers, and a worker whose main process was killed (SIGKILL, the OOM
    killer) would go on serving the port with nobody to replace or stop it. So the kernel sends
    the worker SIGTERM when its parent dies, and granian's worker stops on SIGTERM. While the app
    builds, before granian installs that handler, SIGTERM and SIGINT take their default action
    instead of the main process's handler, which fork copied and which would ignore them here.
    (A stop that arrives while the worker still imports is ignored; `--workers-kill-timeout`
    ends such a worker.)
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    server = multiprocessing.parent_process()
    if server is not None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != server.pid:   # the server died before that took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return create_app()


def _configure_logging(app: Flask, instance: Instance):
    if log.handlers:
        return
    handler = logging.FileHandler(instance.path / "logs" / "service.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"))
    for name in ("service", "service.workflow.active_rulebook"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("service").addHandler(logging.StreamHandler())


def _error(status: int, code: str, message: str):
    """The error as JSON for the API, or as a page for the console."""
    if console.is_console(request.path):
        return console.error_page(status, code, message)
    return error_response(status, code, message)


def _register_errors(app: Flask):
    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}
        message = {
            404: f"no such endpoint: {request.method} {request.path}",
            413: f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB",
        }.get(error.code, error.description)
        return _error(error.code, codes.get(error.code, "http_error"), message)

    @app.errorhandler(AuditUnavailable)
    def _audit_down(error: AuditUnavailable):
        log.error("audit log unavailable: %s: %s request=%s", error, describe(error.__cause__), g.get("request_id"))
        return _error(503, "audit_unavailable",
                      "the audit log cannot be written, so no decision is given; try again shortly")

    @app.errorhandler(SQLAlchemyError)
    def _database_down(error: SQLAlchemyError):
        log.error("database unavailable: %s request=%s", describe(error), g.get("request_id"))
        return _error(503, "database_unavailable",
                      "the database does not answer, so nothing was decided or recorded; try again shortly")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error request=%s", g.get("request_id"))
        return _error(500, "internal_error",
                      f"an internal error occurred; quote request id {g.get('request_id')} to support")
