"""Rulebook proposals and two-person approval (issue 18): a candidate is linted, its rule cases
run, its diff and replay kept; others than its proposer approve it; it is served at its effective
date; reload is refused while approvals are required. On the test rulebook, SQLite and PostgreSQL."""

import io
import json
import shutil

import pytest
from sqlalchemy import select

from service.store.tables import audit_records
from service.store.tokens import create_token

from .conftest import TEST_RULEBOOK, bearer, csrf_token, dump_yaml, sign_in
from .test_console import post_form

ADULT_GBS = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 40}}
SUMMARY = "Adult GBS: controlled evidence of benefit; off-label with evidence, as for children."


def adult_gbs_off_label(text: str, version: str = "1.1.0", effective: str = "2026-11-30") -> str:
    """The test rulebook with gbs-adults turned from needs_review into off_label_with_evidence."""
    start = text.index("  - id: gbs-adults")
    end = text.index("  - id: polymyositis-with-corticosteroids")
    block = (
        text[start:end]
        .replace("outcome: needs_review", "outcome: off_label_with_evidence")
        .replace("strength: not_addressed", "strength: controlled\n        effect: benefit")
    )
    changed = text[:start] + block + text[end:]
    return changed.replace("version: 1.0.0\n", f"version: {version}\n", 1).replace(
        "effective: 2026-11-22\n", f"effective: {effective}\n", 1
    )


CASES = dump_yaml(
    {
        "cases": [
            {
                "name": "adult GBS is off-label with evidence",
                "request": ADULT_GBS,
                "expect": {"outcome": "off_label_with_evidence", "rule": "gbs-adults"},
            },
            {
                "name": "paediatric GBS is off-label with evidence",
                "request": {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}},
                "expect": {"outcome": "off_label_with_evidence", "rule": "gbs-children"},
            },
        ]
    }
)


@pytest.fixture
def committee(make_app, tmp_path, day):
    """An app requiring two approvals, with tokens for three committee members, an admin, a
    pharmacist and a clinician; the clinician decided adult GBS once (needs_review) today."""
    shutil.copytree(TEST_RULEBOOK.parent, tmp_path / "book")
    path = tmp_path / "book" / TEST_RULEBOOK.name
    app = make_app(RULEBOOK=str(path))
    database = app.extensions["instance"].database
    people = {
        name: bearer(create_token(database, name, role))
        for name, role in [
            ("alice", "committee"),
            ("bob", "committee"),
            ("carol", "committee"),
            ("root", "admin"),
            ("pat", "pharmacist"),
            ("cli", "clinician"),
        ]
    }
    client = app.test_client()
    first = client.post("/v1/decisions", json=ADULT_GBS, headers=people["cli"]).get_json()
    assert first["outcome"] == "needs_review"
    return app, client, people, path, first


def propose(client, headers, rulebook: str, **fields):
    return client.post(
        "/v1/rulebook/proposals", json={"rulebook": rulebook, "summary": SUMMARY, **fields}, headers=headers
    )


def approve(client, headers, proposal_id: int, decision="approve", reason="the evidence holds"):
    return client.post(
        f"/v1/rulebook/proposals/{proposal_id}/approvals",
        json={"decision": decision, "reason": reason},
        headers=headers,
    )


def test_a_proposal_is_kept_with_its_lint_cases_diff_and_replay(committee):
    _, client, people, path, first = committee
    response = propose(client, people["alice"], adult_gbs_off_label(path.read_text()), tests=CASES)
    assert response.status_code == 201, response.get_json()
    found = response.get_json()
    assert (found["status"], found["proposed_by"], found["problems"]) == ("open", "alice", [])
    assert found["candidate"]["version"] == "1.1.0" and found["base"]["version"] == "1.0.0"
    assert (found["cases"]["total"], found["cases"]["failed"]) == (2, 0)
    assert found["cases"]["source"] == "sent with the proposal"
    assert any("gbs-adults" in line and "off_label_with_evidence" in line for line in found["diff"]["words"])
    assert found["replay"]["matrix"] == {"needs_review": {"off_label_with_evidence": 1}}
    assert [item["decision_id"] for item in found["replay"]["changed"]] == [first["decision_id"]]
    assert found["approvals_required"] == 2 and found["approvals"] == []
    listed = client.get("/v1/rulebook/proposals", headers=people["pat"]).get_json()["proposals"]
    assert [(p["id"], p["status"], p["approvals"]) for p in listed] == [(found["id"], "open", 0)]


def test_two_others_than_the_proposer_approve_and_the_new_version_is_served_at_once(committee):
    app, client, people, path, _ = committee
    proposal = propose(client, people["alice"], adult_gbs_off_label(path.read_text())).get_json()
    own = approve(client, people["alice"], proposal["id"])
    assert own.status_code == 403 and own.get_json()["error"]["code"] == "own_proposal"
    once = approve(client, people["bob"], proposal["id"])
    assert once.status_code == 200 and once.get_json()["status"] == "open"
    again = approve(client, people["bob"], proposal["id"])
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_voted"
    assert client.post("/v1/decisions", json=ADULT_GBS, headers=people["cli"]).get_json()["outcome"] == "needs_review"
    settled = approve(client, people["root"], proposal["id"])
    assert settled.status_code == 200 and settled.get_json()["status"] == "active"
    decision = client.post("/v1/decisions", json=ADULT_GBS, headers=people["cli"]).get_json()
    assert decision["outcome"] == "off_label_with_evidence" and decision["rulebook"]["version"] == "1.1.0"
    versions = client.get("/v1/rulebook/versions", headers=people["pat"]).get_json()["versions"]
    assert versions[0]["activations"][0]["activated_by"] == f"proposal {proposal['id']}"
    with app.extensions["instance"].database.connect() as connection:
        records = connection.execute(
            select(audit_records.c.kind, audit_records.c.content)
            .where(audit_records.c.kind.like("rulebook_proposal%"))
            .order_by(audit_records.c.id)
        ).all()
    assert [r.kind for r in records] == ["rulebook_proposal", "rulebook_proposal_vote", "rulebook_proposal_vote"]
    said = [json.loads(r.content)["body"]["result"] for r in records[1:]]
    assert said == [{"status": "open", "approvals": 1}, {"status": "active", "approvals": 2}]


def test_a_rejection_closes_the_proposal(committee):
    _, client, people, path, _ = committee
    proposal = propose(client, people["alice"], adult_gbs_off_label(path.read_text())).get_json()
    rejected = approve(client, people["bob"], proposal["id"], "reject", "wait for the 2027 review")
    assert rejected.status_code == 200 and rejected.get_json()["status"] == "rejected"
    assert rejected.get_json()["rejections"][0]["reason"] == "wait for the 2027 review"
    late = approve(client, people["carol"], proposal["id"])
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "proposal_closed"


def test_a_proposal_that_fails_lint_is_kept_as_failed_and_cannot_be_approved(committee):
    _, client, people, path, _ = committee
    broken = adult_gbs_off_label(path.read_text()).replace("outcome: off_label_with_evidence", "outcome: maybe", 1)
    response = propose(client, people["alice"], broken)
    assert response.status_code == 201
    found = response.get_json()
    assert found["status"] == "failed" and any("maybe" in problem for problem in found["problems"])
    assert not any("/tmp" in problem or "rulebook-" in problem for problem in found["problems"])
    refused = approve(client, people["bob"], found["id"])
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "proposal_failed"


def test_a_proposal_whose_rule_case_fails_is_kept_as_failed_with_the_case(committee):
    _, client, people, path, _ = committee
    wrong = CASES.replace("outcome: off_label_with_evidence, rule: gbs-adults", "outcome: approved, rule: gbs-adults")
    wrong = wrong if wrong != CASES else CASES.replace("off_label_with_evidence", "approved", 1)
    found = propose(client, people["alice"], adult_gbs_off_label(path.read_text()), tests=wrong).get_json()
    assert found["status"] == "failed" and found["cases"]["failed"] == 1
    failed = [r for r in found["cases"]["results"] if not r["passed"]]
    assert failed[0]["name"] == "adult GBS is off-label with evidence"
    assert failed[0]["got"]["outcome"] == "off_label_with_evidence"


def test_an_approved_proposal_with_a_later_effective_date_is_served_from_that_day(committee, day):
    app, client, people, path, _ = committee
    later = adult_gbs_off_label(path.read_text(), effective="2026-12-05")
    proposal = propose(client, people["alice"], later).get_json()
    approve(client, people["bob"], proposal["id"])
    scheduled = approve(client, people["carol"], proposal["id"]).get_json()
    assert scheduled["status"] == "scheduled" and scheduled["decided_at"] is None
    app.extensions["active_rulebook"].follow_now()
    assert client.post("/v1/decisions", json=ADULT_GBS, headers=people["cli"]).get_json()["outcome"] == "needs_review"
    day.set(day.date.replace(day=5))
    app.extensions["active_rulebook"].follow_now()
    decision = client.post("/v1/decisions", json=ADULT_GBS, headers=people["cli"]).get_json()
    assert decision["outcome"] == "off_label_with_evidence" and decision["rulebook"]["version"] == "1.1.0"
    found = client.get(f"/v1/rulebook/proposals/{proposal['id']}", headers=people["pat"]).get_json()
    assert found["status"] == "active" and found["decided_at"].startswith("2026-12-05")


def test_approval_of_a_proposal_checked_against_another_version_is_refused(committee):
    _, client, people, path, _ = committee
    text = path.read_text()
    first = propose(client, people["alice"], adult_gbs_off_label(text)).get_json()
    second = propose(client, people["alice"], adult_gbs_off_label(text, version="1.2.0")).get_json()
    approve(client, people["bob"], first["id"])
    assert approve(client, people["carol"], first["id"]).get_json()["status"] == "active"
    stale = approve(client, people["bob"], second["id"])
    assert stale.status_code == 409 and stale.get_json()["error"]["code"] == "proposal_stale"


def test_reload_is_refused_while_approvals_are_required(committee):
    app, client, people, _, _ = committee
    response = client.post("/v1/rulebook/reload", headers=people["root"])
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "approvals_required"


def test_a_single_person_install_serves_a_passing_proposal_at_once(make_app, tmp_path):
    app = make_app(RULEBOOK_APPROVALS=0)
    admin = bearer(create_token(app.extensions["instance"].database, "root", "admin"))
    client = app.test_client()
    found = propose(client, admin, adult_gbs_off_label(TEST_RULEBOOK.read_text())).get_json()
    assert found["status"] == "active"
    assert client.post("/v1/decisions", json=ADULT_GBS, headers=admin).get_json()["rulebook"]["version"] == "1.1.0"


@pytest.mark.parametrize(
    "role, path, status",
    [
        ("pat", "/v1/rulebook/proposals", 403),  # a pharmacist does not propose
        ("cli", "/v1/rulebook/proposals/1/approvals", 403),  # nor a clinician approve
    ],
)
def test_only_the_committee_and_admins_propose_and_approve(committee, role, path, status):
    _, client, people, _, _ = committee
    assert client.post(path, json={}, headers=people[role]).status_code == status


def test_a_committee_member_reads_no_patient_records(committee):
    _, client, people, _, first = committee
    assert client.get(f"/v1/decisions/{first['decision_id']}", headers=people["alice"]).status_code == 403
    assert client.get("/v1/authorisations", headers=people["alice"]).status_code == 403


@pytest.mark.parametrize(
    "body, field",
    [
        ({"summary": SUMMARY}, "rulebook"),
        ({"rulebook": "rulebook: {}", "summary": " "}, "summary"),
        ({"rulebook": "rulebook: {}", "summary": SUMMARY, "since": "yesterday"}, "since"),
        ({"rulebook": "rulebook: {}", "summary": SUMMARY, "owner": "me"}, "owner"),
    ],
)
def test_a_proposal_without_what_it_needs_is_refused_naming_the_field(committee, body, field):
    _, client, people, _, _ = committee
    response = client.post("/v1/rulebook/proposals", json=body, headers=people["alice"])
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field


def test_a_rulebook_larger_than_the_usual_body_limit_can_be_proposed(committee):
    _, client, people, path, _ = committee
    padded = adult_gbs_off_label(path.read_text()) + "\n# " + "x" * 100_000 + "\n"
    assert propose(client, people["alice"], padded).status_code == 201


def test_a_proposal_is_uploaded_as_a_file(committee):
    _, client, people, path, _ = committee
    response = client.post(
        "/v1/rulebook/proposals",
        data={
            "file": (io.BytesIO(adult_gbs_off_label(path.read_text()).encode()), "ivig-test.yaml"),
            "tests": (io.BytesIO(CASES.encode()), "ivig-test.tests.yaml"),
            "summary": SUMMARY,
        },
        headers=people["alice"],
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["cases"]["total"] == 2


def test_the_changelog_entry_names_the_changes_and_approvals_and_leaves_the_committee_decision_pending(committee):
    _, client, people, path, _ = committee
    proposal = propose(client, people["alice"], adult_gbs_off_label(path.read_text())).get_json()
    approve(client, people["bob"], proposal["id"], reason="RCT evidence reviewed at the December meeting")
    entry = client.get(f"/v1/rulebook/proposals/{proposal['id']}/changelog", headers=people["pat"])
    assert entry.status_code == 200 and entry.mimetype == "text/markdown"
    text = entry.get_data(as_text=True)
    assert text.startswith("## 1.1.0 (effective 2026-11-30): Adult GBS")
    assert "gbs-adults" in text and "Approved in the service by bob" in text
    assert "Committee decision: pending" in text


def test_replay_names_the_active_authorisation_whose_next_continuation_would_change(committee):
    _, client, people, path, _ = committee
    text = path.read_text()
    child = client.post(
        "/v1/decisions", json={**ADULT_GBS, "patient": {"age_years": 8, "ref": "MRN-7"}}, headers=people["cli"]
    ).get_json()
    authorisation_id = child["authorisation_id"]
    start = text.index("  - id: gbs-children")  # the candidate's rule is for children under 5 only
    younger = text[:start] + text[start:].replace("age_years: {under: 18}", "age_years: {under: 5}", 1)
    found = propose(client, people["alice"], younger.replace("version: 1.0.0\n", "version: 1.1.0\n", 1)).get_json()
    ahead = found["continuations"]
    assert ahead["considered"] == 1 and ahead["changed_total"] == 1
    item = ahead["changed"][0]
    assert item["authorisation_id"] == authorisation_id
    assert (item["old"]["rule"], item["new"]["rule"]) == ("gbs-children", None)
    assert item["new"]["outcome"] == "needs_review"


def test_the_proposal_answers_match_the_api_document(committee):
    from .test_openapi import _validator

    _, client, people, path, _ = committee
    document = client.get("/openapi.json").get_json()
    proposal = propose(client, people["alice"], adult_gbs_off_label(path.read_text()), tests=CASES).get_json()
    _validator(document, {"$ref": "#/components/schemas/Proposal"}).validate(proposal)
    voted = approve(client, people["bob"], proposal["id"]).get_json()
    _validator(document, {"$ref": "#/components/schemas/Proposal"}).validate(voted)
    listed = client.get("/v1/rulebook/proposals", headers=people["pat"]).get_json()
    _validator(document, {"$ref": "#/components/schemas/ProposalList"}).validate(listed)


def test_a_start_with_a_changed_file_keeps_the_version_activated_last_while_approvals_are_required(committee, make_app):
    _, _, _, path, _ = committee
    path.write_text(adult_gbs_off_label(path.read_text()))
    restarted = make_app(RULEBOOK=str(path))
    assert restarted.extensions["active_rulebook"].current.rulebook.version == "1.0.0"


def test_a_start_with_a_changed_file_activates_it_on_a_single_person_install(committee, make_app):
    _, _, _, path, _ = committee
    path.write_text(adult_gbs_off_label(path.read_text()))
    restarted = make_app(RULEBOOK=str(path), RULEBOOK_APPROVALS=0)
    assert restarted.extensions["active_rulebook"].current.rulebook.version == "1.1.0"


# --- The console: the Rulebook page lists proposals; a proposal's page shows its impact and takes votes. ---


def test_a_committee_member_proposes_from_the_console_and_another_approves_there(committee):
    app, client, people, path, first = committee
    database = app.extensions["instance"].database
    sign_in(client, create_token(database, "alice.console", "committee"))
    page = client.get("/console/rulebook/versions").get_data(as_text=True)
    assert "Propose a new version" in page
    response = client.post(
        "/console/rulebook/proposals",
        data={
            "file": (io.BytesIO(adult_gbs_off_label(path.read_text()).encode()), "ivig-test.yaml"),
            "summary": SUMMARY,
            "csrf_token": csrf_token(client, "/console/rulebook/versions"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Impact on past decisions" in shown and first["decision_id"][:8] in shown
    assert "Withdraw my proposal" in shown and 'value="approve"' not in shown  # never one's own approval
    proposal_path = response.headers["Location"]
    post_form(client, "/console/sign-out", {}, proposal_path)
    sign_in(client, create_token(database, "bob.console", "committee"))
    assert "Record my vote" in client.get(proposal_path).get_data(as_text=True)
    voted = post_form(client, proposal_path + "/approvals", {"decision": "approve", "reason": "agreed"}, proposal_path)
    assert voted.status_code == 302
    assert "approve</strong> by bob.console" in client.get(proposal_path).get_data(as_text=True)


def test_a_console_proposal_without_a_summary_is_refused_on_the_page(committee):
    app, client, _, _, _ = committee
    sign_in(client, create_token(app.extensions["instance"].database, "alice.console", "committee"))
    response = post_form(client, "/console/rulebook/proposals", {"summary": ""}, "/console/rulebook/versions")
    assert response.status_code == 400 and "rulebook is required" in response.get_data(as_text=True)


# --- The shell: propose, list, show, and the CHANGELOG entry; reload refused. ---


def test_formulary_rulebook_propose_lists_and_shows_a_proposal(committee, monkeypatch, database_url):
    from .test_cli import run

    app, _, _, path, _ = committee
    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", app.config["INSTANCE_PATH"])
    monkeypatch.setenv("FORMULARY_DATABASE_URL", str(app.extensions["instance"].database.url))
    monkeypatch.setenv("FORMULARY_RULEBOOK", str(path))
    candidate = path.with_name("candidate.yaml")
    candidate.write_text(adult_gbs_off_label(path.read_text()))
    cases = path.with_name("candidate.tests.yaml")
    cases.write_text(CASES)
    proposed = run("rulebook", "propose", str(candidate), "--tests", str(cases), "--summary", SUMMARY)
    assert proposed.exit_code == 0, proposed.output
    assert "proposal 1: open; 1.1.0 against 1.0.0; approvals 0/2" in proposed.output
    assert "rule cases (sent with the proposal): 2 of 2 pass" in proposed.output
    assert "needs_review" in proposed.output and "off_label_with_evidence" in proposed.output
    listed = run("rulebook", "proposals")
    assert "open" in listed.output and "approvals 0/2" in listed.output and "by cli" in listed.output
    entry = run("rulebook", "proposal", "1", "--changelog")
    assert entry.output.startswith("## 1.1.0 (effective 2026-11-30)") and "Committee decision: pending" in entry.output
    refused = run("reload")
    assert refused.exit_code == 1 and "requires 2 approval(s)" in refused.output
    broken = path.with_name("broken.yaml")
    broken.write_text("rulebook: [")
    assert run("rulebook", "propose", str(broken), "--summary", "x").exit_code == 1


def test_the_proposer_withdraws_their_own_proposal(committee):
    _, client, people, path, _ = committee
    proposal = propose(client, people["alice"], adult_gbs_off_label(path.read_text())).get_json()
    withdrawn = approve(client, people["alice"], proposal["id"], "reject", "the evidence is being re-read")
    assert withdrawn.status_code == 200 and withdrawn.get_json()["status"] == "withdrawn"
    assert approve(client, people["bob"], proposal["id"]).get_json()["error"]["code"] == "proposal_closed"


def test_a_scheduled_proposal_whose_base_is_no_longer_served_goes_stale_on_its_day(committee, day):
    app, client, people, path, _ = committee
    text = path.read_text()
    later = propose(client, people["alice"], adult_gbs_off_label(text, effective="2026-12-05")).get_json()
    approve(client, people["bob"], later["id"])
    assert approve(client, people["carol"], later["id"]).get_json()["status"] == "scheduled"
    sooner = propose(client, people["alice"], adult_gbs_off_label(text, version="1.0.1")).get_json()
    approve(client, people["bob"], sooner["id"])
    assert approve(client, people["carol"], sooner["id"]).get_json()["status"] == "active"
    day.set(day.date.replace(day=5))
    app.extensions["active_rulebook"].follow_now()
    assert client.get(f"/v1/rulebook/proposals/{later['id']}", headers=people["pat"]).get_json()["status"] == "stale"
    decision = client.post("/v1/decisions", json=ADULT_GBS, headers=people["cli"]).get_json()
    assert decision["rulebook"]["version"] == "1.0.1"  # the later one did not undo the sooner one
    with app.extensions["instance"].database.connect() as connection:
        kinds = connection.execute(select(audit_records.c.kind).order_by(audit_records.c.id.desc()).limit(3)).scalars()
        assert "rulebook_proposal_not_activated" in list(kinds)


def test_a_console_upload_larger_than_the_usual_body_limit_is_proposed(committee):
    app, client, _, path, _ = committee
    sign_in(client, create_token(app.extensions["instance"].database, "alice.console", "committee"))
    padded = adult_gbs_off_label(path.read_text()) + "\n# " + "x" * 100_000 + "\n"
    response = client.post(
        "/console/rulebook/proposals",
        data={
            "file": (io.BytesIO(padded.encode()), "ivig-test.yaml"),
            "summary": SUMMARY,
            "csrf_token": csrf_token(client, "/console/rulebook/versions"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:300]


def test_other_paths_keep_the_usual_body_limit(committee):
    _, client, people, _, _ = committee
    big = {"diagnosis": {"code": "G61.0", "text": "x" * 70_000}}
    assert client.post("/v1/decisions", json=big, headers=people["cli"]).status_code == 413
