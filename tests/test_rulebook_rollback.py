"""Rolling back to a stored rulebook version (issue 18): served at once, followed by every
process on the database, kept by a restarted worker, on the record with its reason; on the test
rulebook, on SQLite and PostgreSQL."""

import shutil

import pytest
from sqlalchemy import select

from service.store.tables import audit_records
from service.store.tokens import create_token

from .conftest import TEST_RULEBOOK, bearer

# These tests reload the rulebook file, as an install that requires no approvals may.
pytestmark = pytest.mark.usefixtures("single_person_install")

REASON = {"reason": "1.1.0 sent paediatric GBS to review by mistake"}


@pytest.fixture
def rolled_forward(make_app, tmp_path):
    """An app serving 1.1.0 (gbs-children needs review) after 1.0.0, with an admin token."""
    shutil.copytree(TEST_RULEBOOK.parent, tmp_path / "book")
    path = tmp_path / "book" / TEST_RULEBOOK.name
    app = make_app(RULEBOOK=str(path))
    text = path.read_text()
    start = text.index("  - id: gbs-children")
    changed = text[:start] + text[start:].replace("outcome: off_label_with_evidence", "outcome: needs_review", 1)
    changed = changed.replace("version: 1.0.0\n", "version: 1.1.0\n", 1)
    # needs_review takes no controlled-benefit finding: keep the rulebook valid
    path.write_text(
        changed.replace("effect: benefit\n\n  - id: gbs-adults", "effect: unclear\n\n  - id: gbs-adults", 1)
    )
    admin = bearer(create_token(app.extensions["instance"].database, "root", "admin"))
    client = app.test_client()
    reloaded = client.post("/v1/rulebook/reload", headers=admin)
    assert reloaded.status_code == 200 and reloaded.get_json()["version"] == "1.1.0", reloaded.get_json()
    return app, client, admin, path


def gbs_child(client, headers) -> dict:
    body = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}}
    return client.post("/v1/decisions", json=body, headers=headers).get_json()


def test_an_admin_rolls_back_to_a_stored_version_with_a_reason_and_it_is_served_at_once(rolled_forward):
    app, client, admin, _ = rolled_forward
    assert gbs_child(client, admin)["outcome"] == "needs_review"
    response = client.post("/v1/rulebook/versions/1.0.0/activate", json=REASON, headers=admin)
    assert response.status_code == 200, response.get_json()
    summary = response.get_json()
    assert (summary["version"], summary["rolled_back"], summary["changed"]) == ("1.0.0", True, True)
    assert summary["previous"]["version"] == "1.1.0" and summary["reason"] == REASON["reason"]
    decision = gbs_child(client, admin)
    assert decision["outcome"] == "off_label_with_evidence" and decision["rulebook"]["version"] == "1.0.0"
    with app.extensions["instance"].database.connect() as connection:
        contents = (
            connection.execute(select(audit_records.c.content).where(audit_records.c.kind == "rulebook_reload"))
            .scalars()
            .all()
        )
    assert any('"rolled_back": true' in c.replace('":true', '": true') and REASON["reason"] in c for c in contents)


def test_another_process_and_a_restarted_worker_follow_the_rollback(rolled_forward, make_app):
    app, client, admin, path = rolled_forward
    client.post("/v1/rulebook/versions/1.0.0/activate", json=REASON, headers=admin)
    restarted = make_app(RULEBOOK=str(path))  # the file still says 1.1.0, a version served before
    assert restarted.extensions["active_rulebook"].current.rulebook.version == "1.0.0"
    assert gbs_child(restarted.test_client(), admin)["outcome"] == "off_label_with_evidence"


def test_a_reload_serves_the_file_again_after_a_rollback(rolled_forward):
    _, client, admin, _ = rolled_forward
    client.post("/v1/rulebook/versions/1.0.0/activate", json=REASON, headers=admin)
    assert client.post("/v1/rulebook/reload", headers=admin).get_json()["version"] == "1.1.0"
    assert gbs_child(client, admin)["outcome"] == "needs_review"


@pytest.mark.parametrize(
    "version, body, status, code, field",
    [
        ("1.0.0", {}, 400, "missing_field", "reason"),
        ("1.0.0", {"reason": "   "}, 400, "missing_field", "reason"),
        ("1.0.0", {"reason": "x", "why": "y"}, 400, "unknown_field", "why"),
        ("9.9.9", REASON, 404, "not_found", None),
    ],
)
def test_a_bad_rollback_is_refused_and_nothing_changes(rolled_forward, version, body, status, code, field):
    _, client, admin, _ = rolled_forward
    response = client.post(f"/v1/rulebook/versions/{version}/activate", json=body, headers=admin)
    assert response.status_code == status
    assert (response.get_json()["error"]["code"], response.get_json()["error"].get("field")) == (code, field)
    assert gbs_child(client, admin)["outcome"] == "needs_review"


def test_only_an_admin_rolls_back(rolled_forward):
    app, client, admin, _ = rolled_forward
    for role in ("clinician", "pharmacist", "auditor"):
        token = create_token(app.extensions["instance"].database, f"{role}.one", role)
        response = client.post("/v1/rulebook/versions/1.0.0/activate", json=REASON, headers=bearer(token))
        assert response.status_code == 403
    assert gbs_child(client, admin)["outcome"] == "needs_review"


def test_a_running_process_follows_a_rollback_made_by_another(rolled_forward, make_app, monkeypatch):
    from service.workflow import active_rulebook

    app, client, admin, path = rolled_forward
    other = make_app(RULEBOOK=str(path))  # serving 1.1.0, the file's version and the newest activation
    assert other.extensions["active_rulebook"].current.rulebook.version == "1.1.0"
    client.post("/v1/rulebook/versions/1.0.0/activate", json=REASON, headers=admin)
    monkeypatch.setattr(active_rulebook, "CHECK_EVERY_SECONDS", 0.0)
    decision = gbs_child(other.test_client(), admin)
    assert decision["rulebook"]["version"] == "1.0.0" and decision["outcome"] == "off_label_with_evidence"


def test_formulary_rulebook_activate_rolls_back_from_the_shell(rolled_forward, monkeypatch):
    from .test_cli import run

    app, client, admin, path = rolled_forward
    database_url = str(app.extensions["instance"].database.url)
    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", app.config["INSTANCE_PATH"])
    monkeypatch.setenv("FORMULARY_DATABASE_URL", database_url)
    monkeypatch.setenv("FORMULARY_RULEBOOK", str(path))
    result = run("rulebook", "activate", "1.0.0", "--reason", "back to 1.0.0")
    assert result.exit_code == 0, result.output
    assert "1.0.0" in result.output and "now served again" in result.output
    assert run("rulebook", "activate", "1.0.0", "--reason", "again").output.endswith("already the version served\n")
    assert run("rulebook", "activate", "9.9.9", "--reason", "x").exit_code == 1
    assert run("rulebook", "activate", "1.0.0").exit_code == 2  # --reason is required


def test_an_admin_rolls_back_from_the_console_and_others_see_no_form(rolled_forward):
    from .conftest import sign_in
    from .test_console import post_form

    app, client, admin, _ = rolled_forward
    pharmacist = create_token(app.extensions["instance"].database, "pharm.one", "pharmacist")
    sign_in(client, pharmacist)
    assert "Serve a stored version again" not in client.get("/console/rulebook/versions").get_data(as_text=True)
    assert client.post("/console/rulebook/versions/activate", data={"version": "1.0.0"}).status_code in (400, 403)
    sign_in(client, create_token(app.extensions["instance"].database, "root.console", "admin"))
    page = client.get("/console/rulebook/versions").get_data(as_text=True)
    assert "Serve a stored version again" in page
    refused = post_form(
        client, "/console/rulebook/versions/activate", {"version": "1.0.0", "reason": " "}, "/console/rulebook/versions"
    )
    assert refused.status_code == 400 and "a reason is required" in refused.get_data(as_text=True)
    done = post_form(
        client,
        "/console/rulebook/versions/activate",
        {"version": "1.0.0", "reason": "back to 1.0.0"},
        "/console/rulebook/versions",
    )
    assert done.status_code == 302
    assert "Now serving 1.0.0 again." in client.get(done.headers["Location"]).get_data(as_text=True)
    assert gbs_child(client, admin)["outcome"] == "off_label_with_evidence"
