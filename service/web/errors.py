"""The one error mapping: every exception a request can end in, as the one JSON error shape for
the API, or as a console page for the console (same status, same code, same message). A request
sent as FHIR (application/fhir+json) that is refused 400 is answered with a FHIR OperationOutcome
carrying the same code and message.

A refusal shown as a page is noted in `g.refusal`, so the audit log records why it was refused,
as it records the JSON error of an API refusal.
"""

import logging

from flask import Flask, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from service.decide.questionnaire import operation_outcome
from service.decide.request import RequestError
from service.store.audit import AuditUnavailable
from service.store.database import describe
from service.workflow.administrations import (
    AlreadyRecorded,
    AlreadyResolved,
    NoSuchAdministration,
    NoSuchDiscrepancy,
)
from service.workflow.authorisations import AlreadyContinued, NoSuchAuthorisation, Tampered
from service.workflow.cases import Conflict, NoSuchCase

log = logging.getLogger("service")
CONSOLE_PREFIX = "/console"
_PAGE_TITLES = {
    400: "Not accepted",
    401: "Sign in again",
    403: "Not for your role",
    404: "Not found",
    409: "Already done",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Service unavailable",
}
FHIR_JSON = "application/fhir+json"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


class Refusal(Exception):
    """A request the web layer refuses: the status, an error code, the message and the field."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict | None = None, **extra
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers, self.extra = headers or {}, extra


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict | None = None, **extra
):
    """`{"error": {"code", "message", "field", ...}}` with the status, as a Flask view return value."""
    return jsonify({"error": {"code": code, "message": message, "field": field, **extra}}), status, headers or {}


def error_page(status: int, code: str, message: str, field: str | None = None):
    """An error as a console page: a heading, the message, the request id; never a trace."""
    g.refusal = {"code": code, "message": message, **({"field": field} if field else {})}
    return render_template(
        "console/error.html",
        title=_PAGE_TITLES.get(status, "Error"),
        message=message[:1].upper() + message[1:],
        request_id=g.get("request_id") if status >= 500 else None,
    ), status


def is_console(path: str) -> bool:
    """Is this a console page (answered with pages) rather than the API (answered with JSON)?"""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def _answer(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None, **extra):
    if is_console(request.path):
        return (*error_page(status, code, message, field), headers or {})
    if status == 400 and request.mimetype == FHIR_JSON:
        # The refusal's record keeps the usual error (service/web/middleware.py reads g.refusal).
        g.refusal = {"code": code, "message": message, "field": field}
        outcome = jsonify(operation_outcome(code, message))
        outcome.mimetype = FHIR_JSON
        return outcome, status, headers or {}
    return error_response(status, code, message, field, headers, **extra)


def register(app: Flask, max_body_bytes: int) -> None:
    """Install the mapping on `app`: one handler per kind of failure."""

    @app.errorhandler(Refusal)
    def _refused(error: Refusal):
        return _answer(error.status, error.code, error.message, error.field, error.headers, **error.extra)

    @app.errorhandler(RequestError)
    def _bad_request(error: RequestError):
        if error.suggestions:
            return _answer(400, error.code, error.message, error.field, suggestions=error.suggestions)
        return _answer(400, error.code, error.message, error.field)

    @app.errorhandler(Conflict)
    def _conflict(error: Conflict):
        return _answer(409, error.code, str(error))

    @app.errorhandler(NoSuchCase)
    def _no_case(error: NoSuchCase):
        return _answer(404, "not_found", f"no review case {error}")

    @app.errorhandler(NoSuchAuthorisation)
    def _no_authorisation(error: NoSuchAuthorisation):
        return _answer(404, "not_found", f"no authorisation {error}")

    @app.errorhandler(AlreadyContinued)
    def _already_continued(error: AlreadyContinued):
        return _answer(409, "already_continued", str(error))

    @app.errorhandler(NoSuchAdministration)
    def _no_administration(error: NoSuchAdministration):
        return _answer(404, "not_found", f"no administration {error}")

    @app.errorhandler(NoSuchDiscrepancy)
    def _no_discrepancy(error: NoSuchDiscrepancy):
        return _answer(404, "not_found", f"no discrepancy {error}")

    @app.errorhandler(AlreadyRecorded)
    def _already_recorded(error: AlreadyRecorded):
        return _answer(409, "already_recorded", str(error), administration_id=error.administration_id)

    @app.errorhandler(AlreadyResolved)
    def _already_resolved(error: AlreadyResolved):
        return _answer(409, "already_resolved", str(error))

    @app.errorhandler(Tampered)
    def _tampered(error: Tampered):
        return _answer(
            409,
            "integrity_failed",
            f"authorisation {error.authorisation_id}, or a measurement recorded against it, fails its integrity "
            "check (it is not as the service wrote it): nothing is decided on it until an administrator has looked "
            "(formulary audit verify)",
        )

    @app.errorhandler(CSRFError)
    def _stale_form(error: CSRFError):
        return _answer(
            400,
            "csrf_failed",
            f"the form could not be accepted ({error.description}) It may have come "
            "from another site, or your session ended: reload the page and try again.",
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        message = {
            # The path is the caller's and may be long: the refusal's record holds it once, cut.
            404: f"no such endpoint for {request.method} at this path",
            413: f"the request body is larger than {(request.max_content_length or max_body_bytes) // 1024} KiB",
        }.get(status, error.description or "")
        return _answer(status, _HTTP_CODES.get(status, "http_error"), message)

    @app.errorhandler(AuditUnavailable)
    def _audit_down(error: AuditUnavailable):
        log.error("audit log unavailable: %s: %s request=%s", error, describe(error.__cause__), g.get("request_id"))
        return _answer(
            503, "audit_unavailable", "the audit log cannot be written, so no decision is given; try again shortly"
        )

    @app.errorhandler(SQLAlchemyError)
    def _database_down(error: SQLAlchemyError):
        log.error("database unavailable: %s request=%s", describe(error), g.get("request_id"))
        return _answer(
            503,
            "database_unavailable",
            "the database does not answer, so nothing was decided or recorded; try again shortly",
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error request=%s", g.get("request_id"))
        return _answer(
            500, "internal_error", f"an internal error occurred; quote request id {g.get('request_id')} to support"
        )
