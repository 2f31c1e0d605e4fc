"""Reading the audit log over the web: the filters in a query string, checked, and the CSV
download. The API (`GET /v1/audit`) and the console's audit page read the same filters, so the
same query shows the same records in both."""

import datetime
import io

from flask import Response, stream_with_context

from service import clock
from service.decide.request import RequestError, known_arguments, patient_ref
from service.rulebook import icd10
from service.rulebook.model import OUTCOMES
from service.store.audit import Filters
from service.web.context import current_instance
from service.workflow import csv_out

FILTERS = ("outcome", "code", "rule", "requester", "patient_ref", "since", "until")
CSV_COLUMNS = (
    "id",
    "created_at",
    "kind",
    "requester",
    "status",
    "decision_id",
    "outcome",
    "rule_id",
    "code",
    "matched_by",
    "rulebook_version",
    "rulebook_digest",
    "patient_ref_hash",
    "hash",
)
CODE = CSV_COLUMNS.index("code")


def audit_filters(args) -> Filters:
    """The audit filters in query arguments, checked (paging arguments are the caller's)."""
    allowed = {*FILTERS, "limit", "cursor"}
    known_arguments(args, sorted(allowed), "a filter")
    for key in ("rule", "requester"):  # matched as given (patient_ref is read as on every path, below)
        if key in args and not args[key].isprintable():
            raise RequestError("invalid_value", f"{key} must be printable text, without control characters", key)
    outcome = args.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise RequestError("unknown_value", f"outcome must be one of {', '.join(OUTCOMES)}", "outcome")
    code = args.get("code")
    if code is not None:
        code = icd10.normalise(code)
        if not icd10.is_valid(code):
            raise RequestError("invalid_code", f"code '{args['code']}' is not an ICD-10-CM code", "code")
    return Filters(
        outcome=outcome,
        code=code,
        rule=args.get("rule"),
        requester=args.get("requester"),
        patient_ref=patient_ref(args["patient_ref"], "patient_ref") if args.get("patient_ref") else None,
        since=_instant(args.get("since"), "since"),
        until=_instant(args.get("until"), "until"),
    )


def _instant(value: str | None, field: str) -> str | None:
    """An ISO 8601 date or date-time (UTC if no offset) as the stored fixed-width UTC text."""
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(
            "invalid_value", f"{field} must be an ISO 8601 date or date-time, found {value!r}", field
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    try:
        return clock.stamp(moment)
    except OverflowError:
        raise RequestError(
            "out_of_range", f"{field} {value!r} is outside the calendar once moved to UTC", field
        ) from None


def shown(record: dict) -> dict:
    """A record as people read it: the code dotted."""
    return {**record, "code": dotted(record["code"])}


def dotted(code: str | None) -> str | None:
    return icd10.dotted(code) if code else None


def audit_csv_download(filters: Filters) -> Response:
    """The matching records as a streamed CSV download, newest first, in constant memory."""
    audit = current_instance().audit

    def rows():
        buffer = io.StringIO()
        writer = csv_out.Writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for batch in audit.batches(filters, CSV_COLUMNS):  # tuples, no dict a record
            writer.writerows([*row[:CODE], dotted(row[CODE]), *row[CODE + 1 :]] for row in batch)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    return Response(
        stream_with_context(rows()),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=audit.csv"},
    )
