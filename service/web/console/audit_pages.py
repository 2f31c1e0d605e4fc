"""The console's audit log: filters, paging, CSV export, chain verification and a daily chart.

Filters are the API's (service/web/audit_queries.py), so a page and `GET /v1/audit` with the
same query show the same records.
"""

import datetime
from dataclasses import replace

from flask import Blueprint, render_template, request, url_for

from service import clock
from service.decide.request import RequestError
from service.rulebook.model import OUTCOMES
from service.web.audit_queries import FILTERS, audit_csv_download, audit_filters, shown
from service.web.console.auth import page
from service.web.console.chart import daily_outcomes_chart
from service.web.context import current_instance

blueprint = Blueprint("console_audit", __name__, url_prefix="/console")
PAGE_SIZE = 50
CHART_DAYS = 30


def _given() -> dict:
    """The filters the form filled in (a blank field filters nothing)."""
    return {key: request.args[key].strip() for key in FILTERS if request.args.get(key, "").strip()}


@blueprint.get("/audit")
@page("read_audit")
def audit_log():
    audit = current_instance().audit
    given, errors = _given(), {}
    cursor = request.args.get("cursor", "")
    try:
        filters = audit_filters(given)
        before = int(cursor) if cursor else None
    except RequestError as error:
        errors = {error.field: error.message}
        filters, before = audit_filters({}), None
    except ValueError:
        errors = {"cursor": "the page link is broken: start from the newest records"}
        filters, before = audit_filters(given), None
    records, next_cursor = audit.page(filters, PAGE_SIZE, before, with_body=False)
    charted = (
        filters if filters.since else replace(filters, since=audit_filters({"since": _days_ago(CHART_DAYS)}).since)
    )
    chart = daily_outcomes_chart(audit.daily_counts(charted), OUTCOMES)
    verification = audit.verify() if request.args.get("verify") else None
    return render_template(
        "console/audit.html",
        records=[shown(r) for r in records],
        values=given,
        errors=errors,
        outcomes=[(o, o.replace("_", " ")) for o in OUTCOMES],
        chart=chart,
        chart_days=None if filters.since else CHART_DAYS,
        next_url=url_for("console_audit.audit_log", **given, cursor=next_cursor) if next_cursor else None,
        newest_url=url_for("console_audit.audit_log", **given) if before else None,
        csv_url=url_for("console_audit.audit_csv", **given),
        verify_url=url_for("console_audit.audit_log", **given, verify=1),
        verification=verification,
        head=audit.head(),
    ), 400 if errors else 200


@blueprint.get("/audit.csv")
@page("read_audit")
def audit_csv():
    return audit_csv_download(audit_filters(_given()))


def _days_ago(days: int) -> str:
    return (clock.utc_today() - datetime.timedelta(days=days - 1)).isoformat()
