"""The framework floor for bench/http_load.sh: a bare Flask endpoint served exactly as ours is.

POST /v1/decisions parses the JSON body and answers 201 with a small JSON object; GET /healthz
answers 200. No token, no decision, no audit record, no logging: what Flask, Werkzeug, granian and
the BufferedApp in front of the app (service/web/served.py: whole bodies, then a thread pool) cost
per request on this machine today. Our figures are read as ratios to it, measured in the same run.

    FORMULARY_THREADS=32 FORMULARY_BODY_TIMEOUT=10 .venv/bin/python -m granian --interface rsgi \\
        --no-ws --workers 2 --working-dir bench --factory floor_app:create_floor_app
"""

import os

from flask import Flask, request

from service.web.served import BufferedApp


def create_floor_app() -> BufferedApp:
    """The floor app behind the same RSGI adapter, thread count and body timeout as `formulary serve`."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

    @app.post("/v1/decisions")
    def decide():
        body = request.get_json()
        return {"received": len(body)}, 201

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return BufferedApp(
        app, threads=int(os.environ["FORMULARY_THREADS"]), body_timeout=float(os.environ["FORMULARY_BODY_TIMEOUT"])
    )
