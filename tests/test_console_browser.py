"""The pharmacist console in a real browser (Debian's Chromium driven by Playwright) against
`formulary serve` on a temporary database: the journey from a clinician's request to an
auditor's CSV export, and a CIDP patient from initial authorisation through a granted and a refused
continuation, with a screenshot of each page.

Screenshots go to $FORMULARY_SCREENSHOTS when set (`make screenshots` sets docs/screenshots),
else to the test's temporary folder.
"""

import csv
import io
import os
import re
from itertools import pairwise
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from service.store.database import open_database
from service.store.tokens import create_token
from tests.service_process import running_service, service_env

CHROMIUM = Path("/usr/bin/chromium")
# As root in a closed network: no sandbox, no GPU, and none of Chromium's calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PATIENT = "MRN-4471"
# The journey's patient as the request and order forms ask for her (a 15-year-old with chronic ITP).
PATIENT_FACTS = {"Age in years": "15", "Sex": "female", "Weight (kg)": "52", "Height (cm)": "160"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    instance = tmp_path_factory.mktemp("console") / "instance"
    with running_service(service_env(instance)) as running:
        engine = open_database(f"sqlite:///{instance / 'formulary.db'}")
        running.tokens = {
            role: create_token(engine, f"{role}.one", role) for role in ("clinician", "pharmacist", "auditor", "admin")
        }
        engine.dispose()
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("FORMULARY_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def sign_in(page, service, role: str):
    page.goto(f"{service.url}/console/sign-in")
    page.get_by_label("API token").fill(service.tokens[role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def sign_out(page):
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/console/sign-in"))


def fill(page, fields: dict):
    """Type into text fields and choose in selects, each found by its label."""
    for label, value in fields.items():
        field = page.get_by_label(label)
        if field.evaluate("element => element.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)


def snap(page, shots: Path, name: str):
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_request_review_preapproval_and_audit_journey(page, service, shots):
    # A clinician signs in and submits a request; a typo in the age comes back beside its field.
    page.goto(f"{service.url}/console/request")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    snap(page, shots, "01-sign-in")
    page.get_by_label("API token").fill("ivig_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("That token is unknown or has been revoked.")).to_be_visible()
    sign_in(page, service, "clinician")
    expect(page).to_have_url(re.compile(r"/console/request$"))

    page.get_by_label("ICD-10-CM code").fill("D69.3")
    page.get_by_label("Patient reference (MRN)").fill(PATIENT)
    page.get_by_label("Age in years").fill("fifteen")
    page.get_by_label("Product").select_option("Privigen")
    page.get_by_role("button", name="Decide").click()
    age_error = page.locator("#age_years-error")
    expect(age_error).to_contain_text("age_years must be a number")
    assert page.get_by_label("Age in years").input_value() == "fifteen"
    assert page.get_by_label("ICD-10-CM code").input_value() == "D69.3"
    snap(page, shots, "02-request-error")

    fill(page, PATIENT_FACTS)
    page.get_by_role("button", name="Decide").click()
    card = page.locator("section.card").first
    expect(card).to_contain_text("Needs review")
    assert card.locator("svg.icon").count() == 1  # an icon beside the colour and the words
    case_link = card.get_by_role("link", name=re.compile("review case"))
    case_id = case_link.get_attribute("href").rsplit("/", 1)[1]
    snap(page, shots, "03-request-needs-review")

    # A misspelt text is proposed, with what the rules would decide if it is confirmed.
    page.get_by_label("ICD-10-CM code").fill("")
    page.get_by_label("Diagnosis in words").fill("guillian bare syndrom")
    page.get_by_label("Patient reference (MRN)").fill("")
    page.get_by_role("button", name="Decide").click()
    expect(page.get_by_role("heading", name="Did you mean one of these?")).to_be_visible()
    expect(page.locator(".if-confirmed")).to_contain_text("If so: Off-label, with controlled evidence of benefit")
    snap(page, shots, "04-request-candidates")
    sign_out(page)

    # A pharmacist finds the case in the queue and approves it.
    sign_in(page, service, "pharmacist")
    page.get_by_role("link", name="Review queue").click()
    page.get_by_role("link", name=f"Case {case_id[:8]}").click()
    snap(page, shots, "05-review-queue-case")
    page.get_by_label("Approve").check()
    page.get_by_role("button", name="Record resolution").click()
    expect(page.locator("#reason-error")).to_have_text(
        "a reason is required (spaces and invisible characters do not count)"
    )  # the API's message, beside the field
    page.get_by_label("Approve").check()
    page.get_by_label("Reason").fill("Chronic ITP confirmed: platelets under 30 for 14 months despite steroids.")
    page.get_by_role("button", name="Record resolution").click()
    expect(page.get_by_text("Resolution recorded: approved.")).to_be_visible()
    expect(page.locator("p.status")).to_contain_text("approved")
    snap(page, shots, "06-case-resolved")

    # Pre-approval of the order for that patient: one order, then a day's list.
    page.get_by_role("link", name="Pre-approval").click()
    fill(
        page,
        {
            "Patient reference (MRN)": PATIENT,
            **PATIENT_FACTS,
            "ICD-10-CM code": "D69.3",
            "Product": "Privigen",
            "Dose (g/kg a course)": "1",
            "Interval (days)": "28",
        },
    )
    page.get_by_role("button", name="Check order").click()
    result = page.locator("section.card").first
    expect(result).to_contain_text("Dispense")
    expect(result).not_to_contain_text("Do not dispense")
    snap(page, shots, "07-preapproval-order")

    infusion_list = (
        "patient_ref,age_years,sex,weight_kg,height_cm,diagnosis_code,product,g_per_kg,interval_days\n"
        f"{PATIENT},15,female,52,160,D69.3,Privigen,1,28\n"
        "MRN-9000,40,male,80,180,G61.0,Privigen,3,28\n"
        "MRN-9001,abc,male,80,180,G61.0,Privigen,1,28\n"
    )
    page.get_by_label("Infusion list (CSV)").set_input_files(
        files=[{"name": "infusions.csv", "mimeType": "text/csv", "buffer": infusion_list.encode()}]
    )
    page.get_by_role("button", name="Check the list").click()
    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).locator("td").nth(3).inner_text() for i in range(3)] == ["Yes", "No", "Error"]
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the results (CSV)").click()
    downloaded = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(row["patient_ref"], row["dispense"]) for row in downloaded] == [
        (PATIENT, "yes"),
        ("MRN-9000", "no"),
        ("MRN-9001", "error"),
    ]
    snap(page, shots, "08-preapproval-list")

    page.get_by_role("link", name="Authorisations").click()
    page.get_by_label("Patient reference (MRN)").fill(PATIENT)
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("table tbody tr").first).to_contain_text("Active")
    snap(page, shots, "11-authorisations")
    sign_out(page)

    # An auditor finds every step for the patient, verifies the chain, and exports the selection.
    sign_in(page, service, "auditor")
    expect(page).to_have_url(re.compile(r"/console/audit$"))
    page.get_by_label("Patient reference (MRN)").fill(PATIENT)
    page.get_by_role("button", name="Show records").click()
    expect(page).to_have_url(re.compile(f"patient_ref={PATIENT}"))
    kinds = page.locator("table.records tbody tr td:nth-child(3)").all_inner_texts()
    assert {"decision", "review resolution", "preapproval"} <= set(kinds)
    expect(page.locator(".chart svg[role=img]")).to_have_count(1)
    page.get_by_role("link", name="Verify the whole chain now").click()
    expect(page.get_by_text(re.compile(r"Verified: all \d+ records are intact"))).to_be_visible()
    snap(page, shots, "09-audit-log")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export these records (CSV)").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert {"decision", "review_resolution", "preapproval"} <= {row["kind"] for row in exported}
    assert all(row["patient_ref_hash"] == exported[0]["patient_ref_hash"] for row in exported)

    page.get_by_role("link", name="Formulary", exact=True).click()
    page.get_by_label("Search rules").fill("D69.3")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"q=D69\.3"))
    assert page.get_by_role("heading", level=3).count() >= 1
    snap(page, shots, "10-formulary")


def test_console_works_from_the_keyboard_alone(page, service):
    page.goto(f"{service.url}/console/sign-in")
    page.wait_for_function("document.activeElement.id === 'token'")  # the token field takes the focus
    page.keyboard.type(service.tokens["pharmacist"])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/request"))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    for _ in range(20):  # on through the menu to the first field
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "diagnosis_code":
            break
    page.keyboard.type("G61.0")
    page.keyboard.press("Enter")
    expect(page.locator("section.card").first).to_contain_text("Guillain")


def test_every_page_has_ordered_headings_and_labelled_fields(page, service):
    sign_in(page, service, "admin")
    page.get_by_label("ICD-10-CM code").fill("D80.2")
    page.get_by_role("button", name="Decide").click()
    case = page.get_by_role("link", name=re.compile("review case")).get_attribute("href")
    for path in (
        "/console/request",
        "/console/reviews",
        case,
        "/console/preapproval",
        "/console/audit",
        "/console/formulary",
        "/console/authorisations?patient_ref=MRN-1",
        "/console/authorisations/due",
        "/console/rulebook/versions",
        "/console/formulary/usage",
    ):
        page.goto(service.url + path)
        levels = [
            int(tag[1])
            for tag in page.eval_on_selector_all("main h1, main h2, main h3", "els => els.map(e => e.tagName)")
        ]
        assert levels[0] == 1 and all(b - a <= 1 for a, b in pairwise(levels)), (path, levels)
        unlabelled = page.eval_on_selector_all(
            "main input:not([type=hidden]), main select, main textarea",
            "els => els.filter(e => !(e.labels && e.labels.length)).map(e => e.name)",
        )
        assert unlabelled == [], (path, unlabelled)


def test_a_tablet_sees_the_whole_form_without_scrolling_sideways(browser, service):
    context = browser.new_context(viewport={"width": 768, "height": 1024})
    page = context.new_page()
    sign_in(page, service, "clinician")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()


def test_continuation_journey_a_cidp_patient_authorised_measured_continued_then_refused_for_no_benefit(
    page, service, shots
):
    import datetime

    today = datetime.datetime.now(datetime.UTC).date()
    baseline_day = (today - datetime.timedelta(days=10)).isoformat()
    sign_in(page, service, "clinician")
    page.goto(f"{service.url}/console/request")
    fill(page, {"ICD-10-CM code": "G61.81", "Patient reference (MRN)": "MRN-5520", "Age in years": "54"})
    for row, (measure, value) in enumerate((("incat", "5"), ("mrc_sum", "40"))):
        page.locator(f"#obs_measure_{row}").select_option(measure)
        page.locator(f"#obs_value_{row}").fill(value)
        page.locator(f"#obs_unit_{row}").select_option("points")
        page.locator(f"#obs_taken_on_{row}").fill(baseline_day)
    page.get_by_role("button", name="Decide").click()
    card = page.locator("section.card").first
    expect(card).to_contain_text("Approved")
    card.locator('p.next a[href*="/console/authorisations/"]').click()
    expect(page.get_by_role("heading", name="Baseline")).to_be_visible()
    expect(page.locator("table").first).to_contain_text("incat")

    def measure(name: str, value: str):
        page.get_by_label("Measure", exact=True).select_option(name)
        page.get_by_label("Value", exact=True).fill(value)
        page.get_by_label("Unit", exact=True).select_option("points")
        page.get_by_label("Taken on", exact=True).fill(today.isoformat())
        page.get_by_role("button", name="Record").click()
        expect(page.get_by_text(re.compile(f"Measurement recorded: {name}"))).to_be_visible()

    # Six months on (here: the same day), INCAT is 2 points better: the continuation is granted.
    measure("incat", "3")
    snap(page, shots, "12-authorisation-measured")
    page.get_by_role("button", name="Ask for a continuation").click()
    card = page.locator("section.card").first
    expect(card).to_contain_text("Approved")
    expect(card.locator("table.compared")).to_contain_text("incat improved by at least 1 points")
    snap(page, shots, "13-continuation-granted")

    # On the continued authorisation, both measures are worse than the baseline: refused, with a case.
    card.locator('p.next a[href*="/console/authorisations/"]').click()
    measure("incat", "6")
    measure("mrc_sum", "35")
    page.get_by_role("button", name="Ask for a continuation").click()
    card = page.locator("section.card").first
    expect(card).to_contain_text("Not supported")
    expect(card).to_contain_text("No demonstrated benefit")
    expect(card.get_by_role("link", name=re.compile("review case"))).to_be_visible()
    snap(page, shots, "14-continuation-refused")
