"""The Flask application factory: configuration, logging, the error mapping, middleware and the blueprints."""

import ctypes
import gc
import logging
import multiprocessing
import os
import signal

from flask import Flask, Request, current_app
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from service.store.database import describe
from service.store.instance import Instance
from service.web import console, errors, middleware
from service.web.api import BLUEPRINTS
from service.web.json_provider import JSONProvider
from service.web.openapi import blueprint as openapi_blueprint
from service.web.served import BufferedApp
from service.workflow import proposals
from service.workflow.active_rulebook import ActiveRulebook

MAX_BODY_BYTES = 64 * 1024
# Paths whose POST bodies may be larger: a rulebook proposal carries a rulebook and its rule cases.
LARGER_BODIES = {"/v1/rulebook/proposals": 2 << 20, "/console/rulebook/proposals": 2 << 20}


class LimitedRequest(Request):
    """A request whose body limit is MAX_CONTENT_LENGTH, or larger for a POST to a path of
    LARGER_BODIES: known before anything reads the body (the console's CSRF check reads the form)."""

    @property  # type: ignore[misc]  # read-only here: the limit follows the path
    def max_content_length(self) -> int | None:  # type: ignore[override]
        larger = current_app.config["LARGER_BODIES"].get(self.path) if self.method == "POST" else None
        return larger if larger is not None else super().max_content_length


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies (Linux)
# What an operator sets in the environment as FORMULARY_<name> (a test passes <name> in test_config):
# the limit on anonymous refusals per address and window (service/web/limits.py), the free space
# under which /healthz says "degraded", and how many proxies' X-Forwarded-For to trust.
SETTINGS = {"ANON_LIMIT": 60, "ANON_WINDOW": 60, "MIN_FREE_MB": 512, "TRUSTED_PROXIES": 0}
log = logging.getLogger("service")


def create_app(test_config: dict | None = None) -> Flask:
    """Build the service. `test_config` may set INSTANCE_PATH, DATABASE_URL, RULEBOOK, WARM and SETTINGS."""
    # The URL EHRs are given for this service (CDS Hooks: a JWT's aud names it exactly); when unset,
    # the URL each request came to.
    config = {"PUBLIC_URL": os.environ.get("FORMULARY_PUBLIC_URL", ""), **_settings(), **(test_config or {})}
    instance = Instance.from_env(config)
    app = Flask(__name__, instance_path=str(instance.path))
    app.request_class = LimitedRequest
    app.json = JSONProvider(app)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, LARGER_BODIES=LARGER_BODIES, **config)
    if config["TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config["TRUSTED_PROXIES"])  # type: ignore[method-assign]
    _configure_logging(app, instance)
    app.extensions["instance"] = instance
    try:
        _ = instance.database  # migrate now if the database answers; `formulary serve` already did
    except SQLAlchemyError as error:
        log.error("database unavailable at start (%s): answering 503 until it returns", describe(error))
    app.extensions["active_rulebook"] = ActiveRulebook(
        instance.rulebook_path,
        instance.sql_engine,
        warm=config.get("WARM", True),
        approvals=instance.rulebook_approvals,
        due=lambda: proposals.activate_due(instance),
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
    app = create_app()
    app.extensions["anonymous_refusals"].flush_in_background()  # and at the worker's end
    # What the app built to serve (rulebook, code set, statements: about 130,000 objects) lives as long
    # as the worker: left out of the cyclic collector's scans, whose full ones took 85 ms each, about
    # 7% of a worker's CPU at saturation with the collections of the younger generations.
    gc.collect()
    gc.freeze()
    return BufferedApp(
        app, threads=int(os.environ["FORMULARY_THREADS"]), body_timeout=float(os.environ["FORMULARY_BODY_TIMEOUT"])
    )


def _settings() -> dict[str, int]:
    settings = {}
    for name, default in SETTINGS.items():
        given = os.environ.get(f"FORMULARY_{name}", "").strip()
        if given and not given.isdigit():
            raise RuntimeError(f"FORMULARY_{name} must be a whole number, found {given!r}")
        settings[name] = int(given) if given else default
    for name in ("ANON_LIMIT", "ANON_WINDOW"):
        if settings[name] < 1:
            raise RuntimeError(f"FORMULARY_{name} must be at least 1, found {settings[name]}")
    return settings


def _configure_logging(app: Flask, instance: Instance):
    if log.handlers:
        return
    handler = logging.FileHandler(instance.path / "logs" / "service.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)  # every service.* logger propagates here
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler())
