"""The committee's journey in a real browser against `formulary serve` (issue 18): a member
proposes a change that turns adult GBS from needs_review into off_label_with_evidence, sees the
past decision it touches, a second member approves it, it is served and a new decision records the
new version, and an admin rolls back. Screenshots as in test_console_browser.py."""

import re
import time

import pytest
from playwright.sync_api import expect

from service.store.database import open_database
from service.store.tokens import create_token
from tests.service_process import running_service, service_env

from .test_console_browser import browser, page, shots, sign_in, sign_out, snap  # noqa: F401 (fixtures)
from .test_rulebook_proposals import ADULT_GBS, SUMMARY, adult_gbs_off_label

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A service requiring one approval, on a copy of the test rulebook, with two committee members."""
    import shutil

    from .conftest import TEST_RULEBOOK

    folder = tmp_path_factory.mktemp("committee")
    shutil.copytree(TEST_RULEBOOK.parent, folder / "book")
    env = {
        **service_env(folder / "instance"),
        "FORMULARY_RULEBOOK": str(folder / "book" / TEST_RULEBOOK.name),
        "FORMULARY_RULEBOOK_APPROVALS": "1",
    }
    with running_service(env) as running:
        engine = open_database(f"sqlite:///{folder / 'instance' / 'formulary.db'}")
        running.tokens = {
            who: create_token(engine, name, role)
            for who, name, role in [
                ("committee", "ann.committee", "committee"),
                ("second", "ben.committee", "committee"),
                ("admin", "admin.one", "admin"),
                ("clinician", "clinician.one", "clinician"),
            ]
        }
        engine.dispose()
        running.candidate = folder / "candidate.yaml"
        running.candidate.write_text(adult_gbs_off_label((folder / "book" / TEST_RULEBOOK.name).read_text()))
        yield running


def decided_on(service, version: str) -> dict:
    """A new adult GBS decision, once every worker serves `version` (they follow within a second)."""
    deadline = time.time() + 5
    while True:
        status, decision = service.call("POST", "/v1/decisions", service.tokens["clinician"], ADULT_GBS)
        assert status == 201, decision
        if decision["rulebook"]["version"] == version or time.time() > deadline:
            return decision
        time.sleep(0.2)


def test_committee_proposes_approves_and_an_admin_rolls_back_journey(page, service, shots):  # noqa: F811
    before = decided_on(service, "1.0.0")
    assert before["outcome"] == "needs_review"

    sign_in(page, service, "committee")
    expect(page).to_have_url(re.compile(r"/console/rulebook/versions$"))
    page.get_by_label("Rulebook file (YAML)").set_input_files(str(service.candidate))
    page.get_by_label("Summary: what changes and why").fill(SUMMARY)
    page.get_by_role("button", name="Propose").click()
    expect(page.get_by_role("heading", name=re.compile(r"Proposal 1: 1\.1\.0"))).to_be_visible()
    expect(page.get_by_text("1 would change", exact=True)).to_be_visible()
    # The decision it changes, by id (a committee member reads no patient record, so no link).
    expect(page.locator("table.changed code", has_text=before["decision_id"][:8])).to_be_visible()
    expect(page.get_by_label("Approve")).to_have_count(0)  # never one's own approval
    snap(page, shots, "17-rulebook-proposal")
    proposal_url = page.url
    sign_out(page)

    sign_in(page, service, "second")
    page.goto(proposal_url)
    page.get_by_label("Approve").check()
    page.get_by_label("Reason (kept on the record)").fill("Controlled evidence reviewed; agreed")
    page.get_by_role("button", name="Record my vote").click()
    expect(page.get_by_text("proposal 1 is active")).to_be_visible()
    snap(page, shots, "18-rulebook-proposal-approved")
    sign_out(page)

    after = decided_on(service, "1.1.0")
    assert (after["outcome"], after["rulebook"]["version"]) == ("off_label_with_evidence", "1.1.0")

    sign_in(page, service, "admin")
    page.goto(f"{service.url}/console/rulebook/versions")
    _, listed = service.call("GET", "/v1/rulebook/versions", service.tokens["admin"])
    first = next(v for v in listed["versions"] if v["version"] == "1.0.0")
    page.get_by_label("Version", exact=True).select_option(value=f"1.0.0@{first['digest']}")
    page.get_by_label("Reason (kept on the record)").fill("Rolled back pending the minutes")
    page.get_by_role("button", name="Serve this version again").click()
    expect(page.get_by_text("Now serving 1.0.0 again.")).to_be_visible()

    rolled_back = decided_on(service, "1.0.0")
    assert (rolled_back["outcome"], rolled_back["rulebook"]["version"]) == ("needs_review", "1.0.0")
