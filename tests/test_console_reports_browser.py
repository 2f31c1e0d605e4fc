"""The Reports page in a real browser against `formulary serve` (issue 17): after a few decisions,
a pre-approval and what was given, an auditor opens Reports from the navigation, is told beside the
field what was wrong with a date, sees the charts and tables, downloads the utilisation CSV, and the
page prints without its navigation and form. Screenshot 19-reports, as in test_console_browser.py."""

import csv
import datetime
import io
import re

import pytest
from playwright.sync_api import expect

from .test_console_browser import browser, page, service, shots, sign_in, snap  # noqa: F401 (fixtures)
from .test_reports import GIVEN, ORDER

pytestmark = pytest.mark.slow


def _today() -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat()


def _history(running) -> None:
    """Through the API: a pre-approval that authorises and is given, and three decisions."""
    pharmacist, clinician = running.tokens["pharmacist"], running.tokens["clinician"]
    status, preapproval = running.call("POST", "/v1/preapprovals", pharmacist, ORDER)
    assert status == 200 and preapproval["dispense"], preapproval
    given = GIVEN | {"preapproval_id": preapproval["preapproval_id"], "given_on": _today()}
    assert running.call("POST", "/v1/administrations", pharmacist, given)[0] == 201
    for body in (
        {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-2"}},
        {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 40, "ref": "MRN-3"}},
        {"diagnosis": {"code": "D80.0"}, "patient": {"age_years": 30, "ref": "MRN-4"}, "product": "Privigen"},
    ):
        status, decision = running.call("POST", "/v1/decisions", clinician, body)
        assert status == 201
        if decision.get("review_case_id"):  # the adult's GBS: reviewed at once, for the turnaround chart
            resolution = {"resolution": "denied", "reason": "Not for adults here"}
            path = f"/v1/reviews/{decision['review_case_id']}/resolution"
            assert running.call("POST", path, pharmacist, resolution)[0] == 201


def test_reports_page_journey(page, service, shots):  # noqa: F811
    _history(service)
    sign_in(page, service, "auditor")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Reports").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Reports:")

    page.get_by_label("From").fill("2026-02-30")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#since-error")).to_contain_text("since must be a date as YYYY-MM-DD")
    page.get_by_label("From").fill("")
    page.get_by_label("Grouped by").select_option("outcome")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#since-error")).to_have_count(0)
    expect(page.get_by_role("heading", name="Utilisation by outcome")).to_be_visible()

    charts = page.locator("figure.report-figure svg.chart")
    expect(charts).to_have_count(5)
    expect(page.locator("#grams-by-indication-desc")).to_contain_text("Polymyositis: 160 g")
    expect(page.locator("figure.report-figure figcaption").nth(3)).to_contain_text("no price per gram is set")
    expect(page.locator("#turnaround-desc")).to_contain_text("under 1 day: 1")
    table = page.locator("table.utilisation")
    expect(table.locator("tr.total")).to_contain_text("Total")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download this table (CSV)").click()
    rows = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert rows[0][:3] == ["group", "label", "requests"] and rows[-1][:2] == ["total", "total"]
    assert re.match(r"utilisation-outcome-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv", download.value.suggested_filename)

    # Printed: no navigation, form or buttons; the tables and charts stay.
    page.emulate_media(media="print")
    expect(page.get_by_role("navigation", name="Console")).to_be_hidden()
    expect(page.get_by_role("button", name="Show")).to_be_hidden()
    expect(page.get_by_role("link", name="Download this table (CSV)")).to_be_hidden()
    expect(table).to_be_visible()
    expect(charts.first).to_be_visible()
    page.emulate_media(media="screen")
    snap(page, shots, "19-reports")
