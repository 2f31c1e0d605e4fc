"""The console's Administrations page in a real browser: a pharmacist records an administration
that has a discrepancy, sees it, and resolves it (fixtures: tests/test_console_browser.py)."""

import datetime
import re

import pytest
from playwright.sync_api import expect

from tests.test_console_browser import browser, page, service, shots, sign_in, snap  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def test_record_an_administration_with_a_discrepancy_and_resolve_it_journey(page, service, shots):  # noqa: F811
    status, decision = service.call(
        "POST",
        "/v1/decisions",
        service.tokens["clinician"],
        {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-5100"}},
    )
    assert status == 201 and decision["authorisation_id"], decision
    sign_in(page, service, "pharmacist")
    page.get_by_role("link", name="Administrations").click()
    expect(page).to_have_url(re.compile(r"/console/administrations$"))
    page.get_by_label("Authorisation").fill(decision["authorisation_id"])
    page.get_by_label("Patient reference").fill("MRN-5100")
    page.get_by_label("Product").select_option("Privigen")
    page.get_by_label("Lot").fill("P-77")
    page.get_by_label("Vials").fill("10x2")
    page.get_by_label("Grams given").fill("18")
    page.get_by_label("Grams wasted").fill("0")
    page.get_by_label("Given on").fill(datetime.datetime.now(datetime.UTC).date().isoformat())
    page.get_by_role("button", name="Record").click()
    recorded = page.locator("section.card")
    expect(recorded).to_contain_text(
        "vial total: the vials (2 x 10 g) hold 20 g, but 18 g given and 0 g wasted make 18 g"
    )
    snap(page, shots, "15-administration-discrepancy")
    row = page.locator("tr", has_text="vial total")
    row.get_by_label("Reason").fill("2 g left in the line, recorded as given by mistake")
    row.get_by_role("button", name="Resolve").click()
    expect(page.get_by_text("Discrepancy resolved.")).to_be_visible()
    expect(page.locator("tr", has_text="vial total")).to_have_count(0)
