"""The v1 JSON API: decisions, the formulary, the audit log and rulebook reloads.

Every decision is committed to the audit log before the caller sees it; every refused request
(4xx) is recorded too, with its reason and never the token.
"""
import csv
import datetime
import io
import json
from functools import wraps

from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context

from service.rulebook import icd10
from service.store.audit import Filters
from service.workflow.cases import record_decision
from service.rulebook.as_data import rulebook_ref
from service.web.console import is_console
from service.web.errors import error_response
from service.rulebook.as_data import rule_as_data, rulebook_as_data
from service.decide.request import RequestError
from service.rulebook.model import OUTCOMES, RulebookError
from service.store.tokens import principal_for

blueprint = Blueprint("api", __name__)
MAX_PAGE = 500
CSV_COLUMNS = ("id", "created_at", "kind", "requester", "status", "decision_id", "outcome", "rule_id", "code",
               "matched_by", "rulebook_version", "rulebook_digest", "patient_ref_hash", "hash")


def current_instance():
    """The app's Instance (database, audit log, secret); the API and the console share it."""
    return current_app.extensions["instance"]


def active_rulebook():
    """The app's ActiveRulebook: the version served now, and `use()` to hold one for a request."""
    return current_app.extensions["active_rulebook"]


def requires(*roles):
    """Only a valid bearer token with one of these roles may call the endpoint (401 / 403)."""
    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                response = error_response(401, "unauthenticated", "send an API token as 'Authorization: Bearer <token>'")
                response[0].headers["WWW-Authenticate"] = "Bearer"
                return response
            g.principal = principal_for(current_instance().engine, token.strip())
            if g.principal is None:
                response = error_response(401, "invalid_token", "the API token is unknown or revoked")
                response[0].headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
                return response
            if g.principal[1] not in roles:
                return error_response(403, "forbidden", f"the role '{g.principal[1]}' may not do this")
            return view(*args, **kwargs)
        return guarded
    return decorate


@blueprint.after_app_request
def _record_refusal(response):
    """Put every refused request on the record; if that fails, the caller gets 503."""
    console = is_console(request.path)
    if 400 <= response.status_code < 500 and (request.path.startswith("/v1/") or console):
        error = g.get("refusal", {}) if console else (response.get_json(silent=True) or {}).get("error", {})
        principal = g.get("principal")
        try:
            current_instance().audit.append(
                "refusal",
                {"method": request.method, "path": request.path, "error": error},
                requester=principal[0] if principal else None,
                status=response.status_code,
            )
        except Exception:
            body, status = error_response(503, "audit_unavailable", "the audit log cannot be written; try again shortly")
            return current_app.make_response((body, status))
    return response


def json_body() -> dict:
    if not request.is_json:
        raise _Refusal(415, "unsupported_media_type", "send the request as JSON (Content-Type: application/json)")
    payload = request.get_json(silent=True)
    if payload is None:
        raise _Refusal(400, "invalid_json", "the request body is not valid JSON")
    body = request.get_data(cache=True)
    if body.isascii() and b"\\u" not in body:
        return payload   # no escapes and no bytes beyond ASCII: no unpaired surrogate can be in it
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _Refusal(400, "invalid_json", "the request body contains text that is not valid Unicode "
                                            "(an unpaired surrogate escape)") from None
    return payload


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        self.status, self.code, self.message, self.field = status, code, message, field


@blueprint.app_errorhandler(_Refusal)
def _refused(error: _Refusal):
    return error_response(error.status, error.code, error.message, error.field)


@blueprint.app_errorhandler(RequestError)
def _bad_request(error: RequestError):
    extra = {"suggestions": error.suggestions} if getattr(error, "suggestions", None) else {}
    return error_response(400, error.code, error.message, error.field, **extra)


@blueprint.post("/v1/decisions")
@requires("clinician", "pharmacist", "admin")
def submit_decision():
    payload = json_body()
    with active_rulebook().use() as formulary:
        response = record_decision(current_instance(), formulary, payload, g.principal[0])
    return jsonify(response), 201, {"Location": f"/v1/decisions/{response['decision_id']}"}


@blueprint.get("/v1/decisions/<decision_id>")
@requires("clinician", "pharmacist", "auditor", "admin")
def get_decision(decision_id):
    record = current_instance().audit.decision(decision_id)
    if record is None:
        return error_response(404, "not_found", f"no decision {decision_id!r}")
    if g.principal[1] == "clinician" and record["requester"] != g.principal[0]:
        return error_response(403, "forbidden", "a clinician may read only the decisions they submitted")
    return jsonify(record["body"]["decision"])


@blueprint.get("/v1/rulebook")
@requires("clinician", "pharmacist", "auditor", "admin")
def get_rulebook():
    return jsonify(rulebook_as_data(active_rulebook().current.rulebook))


@blueprint.get("/v1/rulebook/rules/<rule_id>")
@requires("clinician", "pharmacist", "auditor", "admin")
def get_rule(rule_id):
    rulebook = active_rulebook().current.rulebook
    rule = rulebook.rule(rule_id)
    if rule is None:
        return error_response(404, "not_found", f"no rule {rule_id!r} in rulebook {rulebook.version}")
    return jsonify(rule_as_data(rulebook, rule))


@blueprint.post("/v1/rulebook/reload")
@requires("admin")
def reload_rulebook():
    audit = current_instance().audit
    try:
        summary = active_rulebook().reload(requested_by=g.principal[0])
    except RulebookError as error:
        audit.append("rulebook_reload", {"refused": True, "problems": error.problems}, requester=g.principal[0], status=422)
        current = active_rulebook().current.rulebook
        return error_response(422, "rulebook_invalid",
                              f"the rulebook has {len(error.problems)} problem(s); still serving {current.version}",
                              problems=error.problems)
    audit.append("rulebook_reload", summary, requester=g.principal[0], status=200,
                 rulebook_version=summary["version"], rulebook_digest=summary["digest"])
    return jsonify(summary)


def audit_filters(args) -> Filters:
    """The audit filters in query arguments, checked; the console's audit page reads the same."""
    allowed = {"outcome", "code", "rule", "requester", "patient_ref", "since", "until", "limit", "cursor"}
    for key in args:
        if key not in allowed:
            raise RequestError("unknown_field", f"'{key}' is not a filter (allowed: {', '.join(sorted(allowed))})", key)
    outcome = args.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise RequestError("unknown_value", f"outcome must be one of {', '.join(OUTCOMES)}", "outcome")
    code = args.get("code")
    if code is not None:
        code = icd10.normalise(code)
        if not icd10.is_valid(code):
            raise RequestError("invalid_code", f"code '{args['code']}' is not an ICD-10-CM code", "code")
    return Filters(outcome=outcome, code=code, rule=args.get("rule"), requester=args.get("requester"),
                   patient_ref=args.get("patient_ref"), since=_instant(args.get("since"), "since"),
                   until=_instant(args.get("until"), "until"))


def _instant(value: str | None, field: str) -> str | None:
    """An ISO 8601 date or date-time (UTC if no offset) as the stored fixed-width UTC text."""
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError("invalid_value", f"{field} must be an ISO 8601 date or date-time, found {value!r}", field) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    try:
        return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError:
        raise RequestError("out_of_range", f"{field} {value!r} is outside the calendar once moved to UTC", field) from None


def _public(record: dict) -> dict:
    return {**record, "code": icd10.dotted(record["code"]) if record["code"] else None}


@blueprint.get("/v1/audit")
@requires("auditor", "admin")
def audit_log():
    filters = audit_filters(request.args)
    try:
        limit = int(request.args.get("limit", 50))
        cursor = int(request.args["cursor"]) if "cursor" in request.args else None
    except ValueError:
        raise RequestError("wrong_type", "limit and cursor must be whole numbers", "limit" if "limit" in request.args else "cursor") from None
    if not 1 <= limit <= MAX_PAGE:
        raise RequestError("out_of_range", f"limit must be between 1 and {MAX_PAGE}", "limit")
    if cursor is not None and not 0 <= cursor < 2 ** 63:
        raise RequestError("out_of_range", "cursor is not one this service gave", "cursor")
    records, next_cursor = current_instance().audit.page(filters, limit, cursor)
    return jsonify({"records": [_public(r) for r in records],
                    "next_cursor": None if next_cursor is None else str(next_cursor)})


@blueprint.get("/v1/audit.csv")
@requires("auditor", "admin")
def audit_csv():
    return audit_csv_download(audit_filters(request.args))


def audit_csv_download(filters: Filters) -> Response:
    """The matching records as a streamed CSV download, newest first, in constant memory."""
    audit = current_instance().audit

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for record in audit.stream(filters, with_body=False):
            record = _public(record)
            writer.writerow([record[column] for column in CSV_COLUMNS])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=audit.csv"})


@blueprint.get("/v1/audit/verify")
@requires("auditor", "admin")
def audit_verify():
    return jsonify(current_instance().audit.verify())


@blueprint.get("/healthz")
def healthz():
    rulebook = active_rulebook().current.rulebook
    audit = current_instance().audit
    try:
        head = audit.head()
        audit.check_writable()
    except Exception:
        return jsonify({"status": "unavailable", "reason": "the database does not answer or cannot be written"}), 503
    return jsonify({"status": "ok", "rulebook": rulebook_ref(rulebook), "audit_records": head["id"]})
