"""Supply phases in a real browser (Chromium driven by Playwright) against `formulary serve`: an
admin switches to a red phase on the Supply page, every page shows it, and a clinician's request in
a blue tier goes to review saying why. Its own service, so the phase never leaks into other journeys."""

import re

import pytest
from playwright.sync_api import expect

from service.store.database import open_database
from service.store.tokens import create_token
from tests.service_process import running_service, service_env
from tests.test_console_browser import browser, page, shots, sign_in, sign_out, snap  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    instance = tmp_path_factory.mktemp("supply") / "instance"
    with running_service(service_env(instance)) as running:
        engine = open_database(f"sqlite:///{instance / 'formulary.db'}")
        running.tokens = {role: create_token(engine, f"{role}.one", role) for role in ("clinician", "admin")}
        engine.dispose()
        yield running


def test_switch_to_a_red_phase_and_a_blue_tier_request_goes_to_review_journey(page, service, shots):  # noqa: F811
    sign_in(page, service, "admin")
    page.get_by_role("link", name="Supply").click()
    expect(page.locator("p.phase-now")).to_contain_text("Phase in force: normal")
    page.get_by_label("Phase", exact=True).select_option("red")
    page.get_by_label("Reason (kept on the record)").fill("Two lots recalled by the supplier")
    page.get_by_role("button", name="Set the phase").click()
    banner = page.locator("p.supply-banner")
    expect(banner).to_contain_text("Supply phase red: Two lots recalled by the supplier")
    expect(page.locator("table.supply-counts")).to_contain_text("needs review")
    sign_out(page)

    sign_in(page, service, "clinician")
    page.goto(f"{service.url}/console/request")
    expect(page.locator("p.supply-banner")).to_contain_text("Supply phase red")
    page.get_by_label("ICD-10-CM code").fill("M32.9")
    page.get_by_label("Patient reference (MRN)").fill("MRN-5150")
    page.get_by_label("Age in years").fill("40")
    page.get_by_role("button", name="Decide").click()
    card = page.locator("section.card").first
    expect(card).to_contain_text("Needs review")
    expect(card).to_contain_text(
        "Supply phase red (Two lots recalled by the supplier): blue-tier indications go to review"
    )
    expect(card.get_by_role("link", name=re.compile("review case"))).to_be_visible()
    snap(page, shots, "16-supply-red-phase")
