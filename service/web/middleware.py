"""What happens around every request: its id, its log line, and the record of every refusal.

Every refused request (4xx) to the API or the console is on the record, with its reason and
never the token; if that record cannot be written, the caller gets 503 instead. A known
requester's refusal is a record of its own; an anonymous one (no or failed credentials) counts
against its client address, which is limited, and is summarised with the others of its window
(service/web/limits.py).
"""

import logging
import re
import secrets
import time
from urllib.parse import quote

from flask import Flask, current_app, g, request

from service.web.context import current_instance
from service.web.errors import error_response, is_console
from service.web.limits import AnonymousRefusals, client_address, refuse_if_limited

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a caller's id is logged only if it is plainly safe
_PATH_SAFE = "/:@!$&'()*+,;=~"  # printable URL characters a logged path keeps as they are
log = logging.getLogger("service")


def register(app: Flask) -> None:
    limiter = app.extensions["anonymous_refusals"] = AnonymousRefusals(
        app.extensions["instance"].audit, app.config["ANON_LIMIT"], app.config["ANON_WINDOW"]
    )
    app.before_request(_start)
    app.before_request(lambda: refuse_if_limited(limiter))
    # Flask runs after_request functions last registered first: the refusal is recorded (or the
    # answer becomes a 503) before the log line and the request id header see the final response.
    app.after_request(_finish)
    app.after_request(_record_refusal)


def _start():
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(16)
    g.started = time.perf_counter()


def _record_refusal(response):
    console = is_console(request.path)
    if 400 <= response.status_code < 500 and (request.path.startswith(("/v1/", "/cds-services")) or console):
        # A console page, or an API refusal answered in another shape (a FHIR OperationOutcome), notes it in g.refusal.
        noted = console or "refusal" in g
        error = g.get("refusal", {}) if noted else (response.get_json(silent=True) or {}).get("error", {})
        principal = g.get("principal")
        if principal is None and not current_app.extensions["anonymous_refusals"].note(
            client_address(), response.status_code, error.get("code"), request.method, request.path
        ):
            return response  # counted, for its window's summary
        try:
            current_instance().audit.append(
                "refusal",
                {"method": request.method, "path": request.path, "error": error},
                requester=principal.name if principal else None,
                status=response.status_code,
            )
        except Exception:
            return current_app.make_response(
                error_response(503, "audit_unavailable", "the audit log cannot be written; try again shortly")
            )
    return response


def _finish(response):
    response.headers["X-Request-Id"] = g.get("request_id", "")
    principal = g.get("principal")
    # The path only: query strings may carry patient identifiers. Method and path are the
    # caller's, so they are logged percent-encoded: no newline, space or control character of
    # theirs can start a line or a field of its own.
    log.info(
        "%s %s %s %.1fms by=%s request=%s",
        quote(request.method, safe=""),
        quote(request.path, safe=_PATH_SAFE),
        response.status_code,
        (time.perf_counter() - g.get("started", time.perf_counter())) * 1000,
        principal.name if principal else "-",
        g.get("request_id"),
    )
    return response
