"""Every rulebook version the service serves is kept with its texts, and read back by the API."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from service.cli import main
from service.rulebook.reader import digest_texts, load_rulebook, load_rulebook_texts
from service.store.rulebook_versions import VersionRef
from service.store.tables import audit_records, rulebook_versions

from .conftest import TEST_RULEBOOK, bearer

# These tests reload the rulebook file, as an install that requires no approvals may.
pytestmark = pytest.mark.usefixtures("single_person_install")

SERVED = load_rulebook(TEST_RULEBOOK)


@pytest.fixture
def editable_rulebook(tmp_path) -> Path:
    shutil.copytree(TEST_RULEBOOK.parent, tmp_path / "book")
    return tmp_path / "book" / TEST_RULEBOOK.name


def _edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _stored(app) -> list:
    with app.extensions["instance"].database.connect() as connection:
        return connection.execute(select(rulebook_versions).order_by(rulebook_versions.c.id)).all()


def test_a_rulebook_keeps_the_texts_its_digest_is_computed_over():
    assert sorted(SERVED.texts) == sorted(
        [TEST_RULEBOOK.name] + [f"data/{p.name}" for p in (TEST_RULEBOOK.parent / "data").glob("*.yaml")]
    )
    assert SERVED.texts[TEST_RULEBOOK.name] == TEST_RULEBOOK.read_text(encoding="utf-8")
    assert digest_texts(SERVED.texts) == SERVED.digest
    again = load_rulebook_texts(SERVED.texts, digest=SERVED.digest)
    assert (again.digest, again.rules) == (SERVED.digest, SERVED.rules)


def test_texts_that_do_not_give_the_digest_they_claim_are_refused():
    from service.rulebook.model import RulebookError

    edited = {**SERVED.texts, TEST_RULEBOOK.name: SERVED.texts[TEST_RULEBOOK.name] + "\n"}
    with pytest.raises(RulebookError, match="digest"):
        load_rulebook_texts(edited, digest=SERVED.digest)
    with pytest.raises(RulebookError):
        load_rulebook_texts({"../escape.yaml": "x", **{k: v for k, v in SERVED.texts.items() if "/" in k}})


def test_the_version_served_at_start_is_stored_once_with_its_texts(make_app):
    app = make_app()
    make_app()  # a second process on the same database stores nothing more
    [row] = _stored(app)
    assert (row.version, row.digest, row.stored_by) == (SERVED.version, SERVED.digest, "service start")
    texts = json.loads(row.texts)
    assert texts == SERVED.texts and digest_texts(texts) == row.digest


def test_a_version_activated_before_versions_were_kept_is_stored_at_the_next_start(make_app):
    app = make_app()
    with app.extensions["instance"].database.begin() as connection:
        connection.execute(delete(rulebook_versions))  # as a database migrated to 0009 holds it
    make_app()
    assert [row.digest for row in _stored(app)] == [SERVED.digest]


def test_a_reload_stores_the_new_version_and_says_so_on_its_audit_record(make_app, editable_rulebook):
    app = make_app(RULEBOOK=str(editable_rulebook))
    client = app.test_client()
    from service.store.tokens import create_token

    admin = bearer(create_token(app.extensions["instance"].database, "root", "admin"))
    _edit(editable_rulebook, f"version: {SERVED.version}\n", "version: 1.1.0\n")
    assert client.post("/v1/rulebook/reload", headers=admin).get_json()["version"] == "1.1.0"
    rows = _stored(app)
    assert [(r.version, r.stored_by) for r in rows] == [(SERVED.version, "service start"), ("1.1.0", "root")]
    assert json.loads(rows[1].texts) == load_rulebook(editable_rulebook).texts
    with app.extensions["instance"].database.connect() as connection:
        reload_record = connection.execute(
            select(audit_records.c.content).where(audit_records.c.kind == "rulebook_reload")
        ).scalar_one()
    assert '"version_stored":true' in reload_record.replace(" ", "")

    listed = client.get("/v1/rulebook/versions", headers=admin).get_json()["versions"]
    assert [v["version"] for v in listed] == ["1.1.0", SERVED.version]  # newest first
    assert [a["activated_by"] for a in listed[0]["activations"]] == ["root"]
    assert [a["activated_by"] for a in listed[1]["activations"]] == ["service start"]
    assert "texts" not in listed[0]


def test_formulary_reload_stores_the_version_it_activates(monkeypatch, shell_instance, editable_rulebook):
    monkeypatch.setenv("FORMULARY_RULEBOOK", str(editable_rulebook))
    runner = CliRunner()
    assert runner.invoke(main, ["reload"]).exit_code == 0
    _edit(editable_rulebook, f"version: {SERVED.version}\n", "version: 1.2.0\n")
    assert runner.invoke(main, ["reload"]).exit_code == 0
    assert runner.invoke(main, ["reload"]).exit_code == 0  # activated again: stored once
    shown = runner.invoke(main, ["rulebook", "diff", SERVED.version, "1.2.0"])
    assert shown.exit_code == 0, shown.output
    assert f"rulebook: version {SERVED.version} -> 1.2.0" in shown.output


def test_every_role_reads_the_versions_and_one_version_with_texts_whose_digest_matches(client, tokens):
    for token in tokens.values():
        assert client.get("/v1/rulebook/versions", headers=bearer(token)).status_code == 200
    one = client.get(f"/v1/rulebook/versions/{SERVED.version}", headers=bearer(tokens["clinician"])).get_json()
    assert (one["version"], one["digest"], one["intact"]) == (SERVED.version, SERVED.digest, True)
    assert one["texts"] == SERVED.texts and digest_texts(one["texts"]) == one["digest"]
    assert one["activations"][0]["activated_by"] == "service start"
    picked = client.get(
        f"/v1/rulebook/versions/{SERVED.version}?digest={SERVED.digest[:8].upper()}", headers=bearer(tokens["auditor"])
    )
    assert picked.status_code == 200 and picked.get_json()["digest"] == SERVED.digest
    assert client.get("/v1/rulebook/versions", headers={}).status_code == 401


def test_reading_versions_writes_no_audit_record(app, client, tokens):
    def count():
        with app.extensions["instance"].database.connect() as connection:
            return len(connection.execute(select(audit_records.c.id)).all())

    before = count()
    client.get("/v1/rulebook/versions", headers=bearer(tokens["admin"]))
    client.get(f"/v1/rulebook/versions/{SERVED.version}", headers=bearer(tokens["admin"]))
    assert count() == before


def test_an_unknown_version_or_digest_is_404(client, tokens):
    admin = bearer(tokens["admin"])
    missing = client.get("/v1/rulebook/versions/9.9.9", headers=admin)
    assert missing.status_code == 404 and "9.9.9" in missing.get_json()["error"]["message"]
    assert client.get(f"/v1/rulebook/versions/{SERVED.version}?digest=ffff0000", headers=admin).status_code == 404
    assert client.get(f"/v1/rulebook/versions/{SERVED.version}?digest=%25", headers=admin).status_code == 404


def test_two_stored_rulebooks_with_one_version_string_are_409_naming_both_digests(
    make_app, editable_rulebook, tokens, client
):
    # the app of `client` stored the test rulebook; another with the same version string but other rules follows
    _edit(editable_rulebook, "Test fixture. Reviewed.", "Test fixture. Reviewed again.")
    other = make_app(RULEBOOK=str(editable_rulebook)).extensions["active_rulebook"].current.rulebook
    assert other.version == SERVED.version and other.digest != SERVED.digest
    admin = bearer(tokens["admin"])
    both = client.get(f"/v1/rulebook/versions/{SERVED.version}", headers=admin)
    error = both.get_json()["error"]
    assert both.status_code == 409 and error["code"] == "ambiguous_version"
    assert sorted(error["digests"]) == sorted([SERVED.digest, other.digest])
    assert SERVED.digest in error["message"] and other.digest in error["message"]
    one = client.get(f"/v1/rulebook/versions/{SERVED.version}?digest={other.digest[:6]}", headers=admin)
    assert one.status_code == 200 and one.get_json()["digest"] == other.digest
    diff = client.get(
        f"/v1/rulebook/versions/{SERVED.version}@{SERVED.digest[:8]}/diff/{SERVED.version}@{other.digest[:8]}",
        headers=admin,
    ).get_json()
    assert diff["words"] == [
        'rule kawasaki-review: rationale "Test fixture. Reviewed." -> "Test fixture. Reviewed again."'
    ]
    assert client.get(f"/v1/rulebook/versions/{SERVED.version}/diff/9.9", headers=admin).status_code == 409


def test_a_decisions_rulebook_is_fetched_from_its_record(client, tokens):
    clinician = bearer(tokens["clinician"])
    decision = client.post("/v1/decisions", json={"diagnosis": {"code": "G61.0"}}, headers=clinician).get_json()
    assert decision["rulebook"]["digest"] == SERVED.digest
    made_on = client.get(f"/v1/decisions/{decision['decision_id']}/rulebook", headers=clinician)
    assert made_on.status_code == 200
    assert made_on.get_json()["digest"] == SERVED.digest and made_on.get_json()["texts"] == SERVED.texts
    assert client.get("/v1/decisions/none/rulebook", headers=clinician).status_code == 404
    from service.store.tokens import create_token

    other = create_token(client.application.extensions["instance"].database, "ward-9", "clinician")
    assert client.get(f"/v1/decisions/{decision['decision_id']}/rulebook", headers=bearer(other)).status_code == 403


def test_the_diff_between_two_stored_versions_is_served_as_data_and_words(make_app, editable_rulebook):
    app = make_app(RULEBOOK=str(editable_rulebook))
    from service.store.tokens import create_token

    admin = bearer(create_token(app.extensions["instance"].database, "root", "admin"))
    client = app.test_client()
    _edit(editable_rulebook, f"version: {SERVED.version}\n", "version: 1.1.0\n")
    _edit(editable_rulebook, "  - id: gbs-adults\n", "  - id: gbs-adults\n    priority: 1\n")
    client.post("/v1/rulebook/reload", headers=admin)
    result = client.get(f"/v1/rulebook/versions/{SERVED.version}/diff/1.1.0", headers=admin).get_json()
    assert result["old"]["version"] == SERVED.version and result["new"]["version"] == "1.1.0"
    assert {"kind": "rule", "id": "gbs-adults", "field": "priority", "old": 0, "new": 1} in [
        {k: v for k, v in change.items() if k != "words"} for change in result["changes"]
    ]
    assert result["words"] == ["rulebook: version 1.0.0 -> 1.1.0", "rule gbs-adults: priority 0 -> 1"]
    same = client.get("/v1/rulebook/versions/1.1.0/diff/1.1.0", headers=admin).get_json()
    assert same["changes"] == [] and same["words"] == ["no differences"]


def test_a_version_is_named_by_its_string_and_a_digest_prefix():
    assert VersionRef.parse("2026.12.0") == VersionRef("2026.12.0")
    assert VersionRef.parse("2026.12.0@99001171") == VersionRef("2026.12.0", "99001171")
