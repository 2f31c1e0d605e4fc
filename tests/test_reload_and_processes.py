"""Reloading the rulebook without a restart, and several processes sharing one audit chain."""

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main
from service.rulebook.reader import load_rulebook
from service.store.audit import AuditStore
from service.store.database import migrate, open_database
from service.web.app import create_app
from service.workflow.active_rulebook import ActiveRulebook

from .conftest import TEST_RULEBOOK, bearer, write_rulebook

# These tests reload the rulebook file, as an install that requires no approvals may.
pytestmark = pytest.mark.usefixtures("single_person_install")

SERVED = load_rulebook(TEST_RULEBOOK)  # the version every test starts from
VERSION = SERVED.version


@pytest.fixture
def editable_rulebook(tmp_path) -> Path:
    """A copy of the test rulebook and its data that a test may edit."""
    shutil.copytree(TEST_RULEBOOK.parent, tmp_path / "book")
    return tmp_path / "book" / TEST_RULEBOOK.name


@pytest.fixture
def reloadable_app(make_app, editable_rulebook):
    return make_app(RULEBOOK=str(editable_rulebook))


def _bump_version(path: Path, version: str):
    text = path.read_text()
    assert f"version: {VERSION}\n" in text
    path.write_text(text.replace(f"version: {VERSION}\n", f"version: {version}\n", 1))


def test_reload_serves_the_new_version_and_records_it(reloadable_app, editable_rulebook):
    from service.store.tokens import create_token

    client = reloadable_app.test_client()
    admin = create_token(reloadable_app.extensions["instance"].database, "root", "admin")
    _bump_version(editable_rulebook, "1.1.0")
    result = client.post("/v1/rulebook/reload", headers=bearer(admin)).get_json()
    assert result["version"] == "1.1.0" and result["changed"] is True and result["previous"]["version"] == VERSION
    decision = client.post("/v1/decisions", json={"diagnosis": {"code": "G61.0"}}, headers=bearer(admin)).get_json()
    assert decision["rulebook"]["version"] == "1.1.0"
    assert client.post("/v1/rulebook/reload", headers=bearer(admin)).get_json()["changed"] is False


def test_a_rulebook_failing_lint_is_refused_and_the_old_one_keeps_serving(reloadable_app, editable_rulebook):
    from service.store.tokens import create_token

    client = reloadable_app.test_client()
    admin = create_token(reloadable_app.extensions["instance"].database, "root", "admin")
    editable_rulebook.write_text(editable_rulebook.read_text().replace("outcome: not_supported", "outcome: perhaps", 1))
    response = client.post("/v1/rulebook/reload", headers=bearer(admin))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "rulebook_invalid" and any("'perhaps' is not one of" in p for p in error["problems"])
    assert f"still serving {VERSION}" in error["message"]
    decision = client.post("/v1/decisions", json={"diagnosis": {"code": "G61.0"}}, headers=bearer(admin)).get_json()
    assert decision["rulebook"]["version"] == VERSION


def test_a_yaml_alias_bomb_is_a_small_422_and_a_small_record(reloadable_app, editable_rulebook):
    from service.store.audit import Filters
    from service.store.tokens import create_token

    from .test_lint import ALIAS_BOMB

    client = reloadable_app.test_client()
    admin = create_token(reloadable_app.extensions["instance"].database, "root", "admin")
    text = editable_rulebook.read_text()
    assert "age_years: {under: 18}" in text
    editable_rulebook.write_text(ALIAS_BOMB + text.replace("age_years: {under: 18}", "age_years: {under: *f}", 1))
    response = client.post("/v1/rulebook/reload", headers=bearer(admin))
    assert response.status_code == 422 and len(response.get_data()) < 2000
    assert response.get_json()["error"]["problems"] == [
        f"{editable_rulebook}: line 1: YAML anchors and aliases (&name, *name) are not allowed; write the value out"
    ]
    records, _ = reloadable_app.extensions["instance"].audit.page(Filters(), 10)
    assert max(len(json.dumps(record)) for record in records) < 4000


def test_a_decision_in_flight_finishes_on_the_version_it_started_with(reloadable_app, editable_rulebook):
    active = reloadable_app.extensions["active_rulebook"]
    with active.use() as started_on:
        _bump_version(editable_rulebook, "1.1.0")
        active.reload(reloadable_app.extensions["instance"].audit, "test")
        assert active.current.rulebook.version == "1.1.0"
        # The old version still decides, on its own engine, until the request lets go of it.
        decision = started_on.decide({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 3}})
        assert decision.rulebook["version"] == VERSION and decision.outcome == "off_label_with_evidence"
        assert not started_on.engine._closed
    assert started_on.engine._closed


def test_other_processes_follow_a_reload_within_a_second(
    reloadable_app, editable_rulebook, tmp_path, database_url, monkeypatch
):
    import service.workflow.active_rulebook as module

    monkeypatch.setattr(module, "CHECK_EVERY_SECONDS", 0.0)
    other = ActiveRulebook(editable_rulebook, reloadable_app.extensions["instance"].database, warm=False)
    try:
        _bump_version(editable_rulebook, "1.1.0")
        reloadable_app.extensions["active_rulebook"].reload(reloadable_app.extensions["instance"].audit, "admin")
        with other.use() as formulary:
            assert formulary.rulebook.version == "1.1.0"
    finally:
        other.close()


def _rss_kb() -> int:
    import resource

    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


@pytest.mark.slow
def test_memory_stays_flat_over_1000_reloads(tmp_path):
    path = write_rulebook(tmp_path)
    database = open_database(f"sqlite:///{tmp_path / 'reloads.db'}")
    migrate(database)
    active = ActiveRulebook(path, database, warm=True)
    audit = AuditStore(database, b"memory-test-secret")
    original = path.read_text()
    try:

        def cycle(count):
            for i in range(count):
                path.write_text(original.replace("version: '1.0'", f"version: '1.{i % 2 + 1}'"))
                active.reload(audit, "test")
                with active.use() as formulary:
                    formulary.decide({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 3}})

        cycle(100)  # let caches and allocator pools settle
        before = _rss_kb()
        cycle(1000)
        growth = _rss_kb() - before
    finally:
        active.close()
    print(f"RSS growth over 1,000 reloads: {growth} KiB")
    assert growth < 20_000


# --- Two processes, one chain. ---


def _write_decisions(url, instance_path, rulebook, count, token):
    app = create_app({"INSTANCE_PATH": instance_path, "DATABASE_URL": url, "RULEBOOK": rulebook, "WARM": False})
    client = app.test_client()
    for i in range(count):
        response = client.post(
            "/v1/decisions",
            json={"diagnosis": {"code": "G61.0"}, "patient": {"age_years": i % 30}},
            headers=bearer(token),
        )
        assert response.status_code == 201, response.get_json()


def test_two_processes_writing_at_once_keep_one_unbroken_chain(app, tokens, tmp_path):
    instance = app.extensions["instance"]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_write_decisions,
            args=(instance.database_url, str(instance.path), str(instance.rulebook_path), 60, tokens["pharmacist"]),
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert instance.audit.verify().items() >= {"ok": True, "records": 120, "first_broken": None, "reason": None}.items()


# --- The CLI around the service. ---


def test_tokens_audit_and_reload_from_the_shell(tmp_path, monkeypatch, shell_instance, editable_rulebook):
    monkeypatch.setenv("FORMULARY_RULEBOOK", str(editable_rulebook))
    runner = CliRunner()
    created = runner.invoke(main, ["tokens", "create", "--name", "nurse-1", "--role", "clinician"])
    assert created.exit_code == 0 and created.output.strip().splitlines()[-1].startswith("ivig_")
    secret = tmp_path / "instance" / "secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert runner.invoke(main, ["tokens", "create", "--name", "nurse-1", "--role", "clinician"]).exit_code == 1
    assert "nurse-1" in runner.invoke(main, ["tokens", "list"]).output
    assert runner.invoke(main, ["tokens", "revoke", "nurse-1"]).exit_code == 0
    assert runner.invoke(main, ["tokens", "revoke", "nurse-1"]).exit_code == 1

    reloaded = runner.invoke(main, ["reload"])
    assert reloaded.exit_code == 0 and f"activated {SERVED.name} {VERSION}" in reloaded.output
    editable_rulebook.write_text(editable_rulebook.read_text().replace("outcome: not_supported", "outcome: perhaps", 1))
    refused = runner.invoke(main, ["reload"])
    assert refused.exit_code == 1 and "refused" in refused.output

    verified = runner.invoke(main, ["audit", "verify"])
    # the token's creation and revocation, then the two reloads
    assert verified.exit_code == 0 and '"ok": true' in verified.output and '"records": 4' in verified.output
    head = runner.invoke(main, ["audit", "head"]).output.split()
    assert head[0] == "4" and len(head[1]) == 64
    database = open_database(f"sqlite:///{tmp_path / 'instance' / 'formulary.db'}")
    with database.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_records SET requester = 'someone' WHERE id = 1")
    broken = runner.invoke(main, ["audit", "verify"])
    assert broken.exit_code == 1 and '"first_broken": 1' in broken.output
