"""The audit log for auditors: filtered pages, the CSV export and the chain's verification."""

from flask import Blueprint, jsonify, request

from service.decide.request import RequestError, known_arguments
from service.web.api.guard import requires
from service.web.audit_queries import audit_csv_download, audit_filters, shown
from service.web.context import current_instance

blueprint = Blueprint("api_audit", __name__)
MAX_PAGE = 500


def _paging(args) -> tuple[int, int | None]:
    try:
        limit = int(args.get("limit", 50))
        cursor = int(args["cursor"]) if "cursor" in args else None
    except ValueError:
        raise RequestError(
            "wrong_type", "limit and cursor must be whole numbers", "limit" if "limit" in args else "cursor"
        ) from None
    if not 1 <= limit <= MAX_PAGE:
        raise RequestError("out_of_range", f"limit must be between 1 and {MAX_PAGE}", "limit")
    if cursor is not None and not 0 <= cursor < 2**63:
        raise RequestError("out_of_range", "cursor is not one this service gave", "cursor")
    return limit, cursor


@blueprint.get("/v1/audit")
@requires("read_audit")
def audit_log():
    filters = audit_filters(request.args)
    limit, cursor = _paging(request.args)
    records, next_cursor = current_instance().audit.page(filters, limit, cursor)
    return jsonify(
        {"records": [shown(r) for r in records], "next_cursor": None if next_cursor is None else str(next_cursor)}
    )


@blueprint.get("/v1/audit.csv")
@requires("read_audit")
def audit_csv():
    return audit_csv_download(audit_filters(request.args))


@blueprint.get("/v1/audit/verify")
@requires("read_audit")
def audit_verify():
    known_arguments(request.args, ["since_anchor"], "an argument here")
    since_anchor = request.args.get("since_anchor", "false")
    if since_anchor not in ("true", "false"):
        raise RequestError(
            "unknown_value", f"since_anchor must be true or false, found {since_anchor[:20]!r}", "since_anchor"
        )
    return jsonify(current_instance().audit.verify(since_anchor=since_anchor == "true"))
