"""The Flask application factory: configuration, logging, the error mapping, middleware and the blueprints."""

import ctypes
import logging
import multiprocessing
import os
import signal

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from service.store.database import describe
from service.store.instance import Instance
from service.web import console, errors, middleware
from service.web.api import BLUEPRINTS
from service.web.json_provider import JSONProvider
from service.web.openapi import blueprint as openapi_blueprint
from service.web.served import BufferedApp
from service.workflow.active_rulebook import ActiveRulebook

MAX_BODY_BYTES = 64 * 1024
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies (Linux)
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
        _ = instance.database  # migrate now if the database answers; `formulary serve` already did
    except SQLAlchemyError as error:
        log.error("database unavailable at start (%s): answering 503 until it returns", describe(error))
    app.extensions["active_rulebook"] = ActiveRulebook(
        instance.rulebook_path, instance.sql_engine, warm=config.get("WARM", True)
    )

    for blueprint in (*BLUEPRINTS, openapi_blueprint):
        app.register_blueprint(blueprint)
    console.register(app, instance)
    errors.register(app, MAX_BODY_BYTES)
    middleware.register(app)
    return app


def create_served_app() -> BufferedApp:
    """The app as a `formulary serve` worker builds it: create_app behind a BufferedApp (whole
    request bodies within FORMULARY_BODY_TIMEOUT seconds, then FORMULARY_THREADS threads: both
    set by `formulary serve`), in a worker that ends with its server.

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
        if os.getppid() != server.pid:  # the server died before that took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return BufferedApp(
        create_app(),
        threads=int(os.environ["FORMULARY_THREADS"]),
        body_timeout=float(os.environ["FORMULARY_BODY_TIMEOUT"]),
    )


def _configure_logging(app: Flask, instance: Instance):
    if log.handlers:
        return
    handler = logging.FileHandler(instance.path / "logs" / "service.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)  # every service.* logger propagates here
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler())
