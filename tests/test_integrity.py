"""Integrity beyond the audit table (issue 15, items 9 and 10).

Rows that grant or change a right are bound to the chained record that created them, so a row
forged or edited in the database is refused by pre-approval and named by verify; the chain head
is anchored in a file outside the database, so records cut off the end or a database emptied or
replaced are named too. Tests with `app` run on SQLite and, when it is reachable, PostgreSQL.
"""

import datetime
import json
import multiprocessing
import os
import time
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, insert, select, update

from service import clock
from service.cli import commands as cli
from service.cli import main
from service.store.tables import GENESIS_HASH, audit_head, audit_records, authorisations, review_resolutions

from .conftest import bearer

PATIENT = {"age_years": 50, "sex": "male", "weight_kg": 90, "height_cm": 180}
WITH_STEROIDS = {"concurrent": ["corticosteroids"]}


def _order(ref: str, therapies: dict) -> dict:
    return {
        "patient": {"ref": ref, **PATIENT},
        "diagnosis": {"code": "M33.20"},
        "product": "Privigen",
        "dose": {"g_per_kg": 2.0, "interval_days": 28},
        "therapies": therapies,
    }


def _decide(client, tokens, ref: str, therapies: dict | None = None) -> dict:
    body = {"diagnosis": {"code": "M33.20"}, "patient": {"ref": ref, **PATIENT}}
    response = client.post(
        "/v1/decisions",
        json=body | ({"therapies": therapies} if therapies else {}),
        headers=bearer(tokens["clinician"]),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _rows(app, table) -> list[dict]:
    with app.extensions["instance"].database.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(table))]


def _verify(client, tokens) -> dict:
    return client.get("/v1/audit/verify", headers=bearer(tokens["auditor"])).get_json()


# --- Rows bound to the records that created them. ---


@pytest.mark.parametrize("forgery", ["without a binding", "with a binding copied from a real row"])
def test_a_forged_authorisation_row_is_refused_at_preapproval_and_named_by_verify(app, client, tokens, forgery):
    granted = _decide(client, tokens, "MRN-1", WITH_STEROIDS)
    assert granted["outcome"] == "off_label_with_evidence" and granted["authorisation_id"]
    assert _verify(client, tokens)["ok"] is True

    # Without corticosteroids the rules do not support IVIG for MRN-2's polymyositis...
    audit = app.extensions["instance"].audit
    [real] = _rows(app, authorisations)
    forged = {**real, "id": str(uuid.uuid4()), "patient_ref_hash": audit.patient_hash("MRN-2")}
    if forgery == "without a binding":
        for column in ("record_id", "binding"):
            forged.pop(column, None)
    # ...so someone with write access to the database gives MRN-2 an authorisation of their own.
    with app.extensions["instance"].database.begin() as connection:
        connection.execute(insert(authorisations).values(**forged))

    result = client.post(
        "/v1/preapprovals", json=_order("MRN-2", {"concurrent": []}), headers=bearer(tokens["pharmacist"])
    ).get_json()
    assert result["dispense"] is False
    cover = next(r for r in result["reasons"] if r["check"] == "authorisation")
    assert (
        cover["ok"] is False and "failed its integrity check" in cover["message"] and forged["id"] in cover["message"]
    )
    assert result["authorisation"] is None and result["decision"] is None
    [recorded] = client.get("/v1/audit?limit=1", headers=bearer(tokens["auditor"])).get_json()["records"]
    assert recorded["kind"] == "preapproval" and "failed its integrity check" in json.dumps(recorded["body"])

    result = _verify(client, tokens)
    assert result["ok"] is False and result["first_broken"] is None
    assert result["broken_row"]["table"] == "authorisations" and result["broken_row"]["id"] == forged["id"]
    assert f"authorisations row {forged['id']}" in result["reason"]

    # MRN-1's own authorisation still dispenses.
    own = client.post(
        "/v1/preapprovals", json=_order("MRN-1", WITH_STEROIDS), headers=bearer(tokens["pharmacist"])
    ).get_json()
    assert own["dispense"] is True and own["authorisation"]["id"] == real["id"]


def test_an_authorisation_edited_in_the_database_is_refused(app, client, tokens):
    _decide(client, tokens, "MRN-1", WITH_STEROIDS)
    with app.extensions["instance"].database.begin() as connection:
        connection.execute(update(authorisations).values(valid_until="2099-12-31"))
    result = client.post(
        "/v1/preapprovals", json=_order("MRN-1", WITH_STEROIDS), headers=bearer(tokens["pharmacist"])
    ).get_json()
    assert result["dispense"] is False
    assert _verify(client, tokens)["broken_row"]["table"] == "authorisations"


def test_resolutions_and_the_authorisations_they_grant_are_bound_and_an_edit_is_named(app, client, tokens):
    case_id = _decide(client, tokens, "MRN-3")["review_case_id"]
    approved = client.post(
        f"/v1/reviews/{case_id}/resolution",
        json={"resolution": "approved", "reason": "steroids given"},
        headers=bearer(tokens["pharmacist"]),
    )
    assert approved.status_code == 201
    result = _verify(client, tokens)
    assert result["ok"] is True and result["rows"] == 2, result  # the resolution and its authorisation
    [resolution] = _rows(app, review_resolutions)
    assert "binding" not in json.dumps(approved.get_json()) and resolution["record_id"] == result["records"]

    with app.extensions["instance"].database.begin() as connection:
        connection.execute(update(review_resolutions).values(reason="no reason at all"))
    result = _verify(client, tokens)
    assert result["ok"] is False
    assert result["broken_row"] == {
        "table": "review_resolutions",
        "id": resolution["id"],
        "problem": result["broken_row"]["problem"],
    }
    assert "does not match its binding" in result["reason"]


def test_rows_made_before_binding_are_listed_and_bound_once_checked(app, client, tokens, monkeypatch):
    _decide(client, tokens, "MRN-1", WITH_STEROIDS)
    with app.extensions["instance"].database.begin() as connection:  # as the migration leaves older rows
        connection.execute(update(authorisations).values(record_id=None, binding=None))
    assert "not bound" in _verify(client, tokens)["reason"]
    monkeypatch.setattr(cli, "_instance", lambda: app.extensions["instance"])  # the app's engine, closed after
    listed = CliRunner().invoke(main, ["audit", "bind-existing"])
    assert listed.exit_code == 0 and "authorisations " in listed.output and "--yes" in listed.output
    assert _verify(client, tokens)["ok"] is False  # nothing bound without --yes
    bound = CliRunner().invoke(main, ["audit", "bind-existing", "--yes"])
    assert bound.exit_code == 0 and "bound 1 rows" in bound.output, bound.output
    result = _verify(client, tokens)
    assert result["ok"] is True and result["rows"] == 1
    records = client.get("/v1/audit?limit=5", headers=bearer(tokens["auditor"])).get_json()["records"]
    assert [r["kind"] for r in records if r["kind"] != "access"][0] == "rows_bound"  # verify's reads are access
    result = client.post(
        "/v1/preapprovals", json=_order("MRN-1", WITH_STEROIDS), headers=bearer(tokens["pharmacist"])
    ).get_json()
    assert result["dispense"] is True


# --- The chain head, anchored outside the database. ---


@pytest.fixture
def anchored_app(make_app):
    """An app that anchors every 5 records."""
    return make_app(ANCHOR_EVERY=5)


def _records(app, count: int):
    from service.store.tokens import create_token

    client = app.test_client()
    token = create_token(app.extensions["instance"].database, f"clinician-{uuid.uuid4()}", "clinician")
    for i in range(count):
        response = client.post(
            "/v1/decisions", json={"diagnosis": {"code": "G61.0"}, "patient": {"age_years": i}}, headers=bearer(token)
        )
        assert response.status_code == 201


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _anchors(app) -> list[dict]:
    return _lines(app.extensions["instance"].path / "anchors.jsonl")


def _cut(app, after: int):
    """Remove the records after `after` and make the head name the new last one, as someone who can
    write the database but not read the secret can."""
    with app.extensions["instance"].database.begin() as connection:
        connection.execute(delete(audit_records).where(audit_records.c.id > after))
        last = connection.execute(select(audit_records.c.hash).where(audit_records.c.id == after)).scalar()
        connection.execute(update(audit_head).values(last_id=after, last_hash=last or GENESIS_HASH))


def test_records_cut_off_the_end_are_named_from_the_anchors(anchored_app):
    _records(anchored_app, 12)
    assert [a["id"] for a in _anchors(anchored_app)] == [1, 5, 10]  # the first record, then every 5th
    assert anchored_app.extensions["instance"].audit.verify()["ok"] is True
    _cut(anchored_app, 8)
    result = anchored_app.extensions["instance"].audit.verify()
    assert result["ok"] is False and result["records"] == 8 and result["first_broken"] == 9
    assert result["reason"].startswith("records 9 to 10 are missing: the anchor written at ")


def test_an_emptied_database_is_named_from_the_anchors(anchored_app):
    _records(anchored_app, 12)
    _cut(anchored_app, 0)
    result = anchored_app.extensions["instance"].audit.verify()
    assert result["ok"] is False and result["records"] == 0 and result["first_broken"] == 1
    assert "records 1 to 10 are missing" in result["reason"]


def test_a_chain_replaced_by_another_differs_from_its_anchor(anchored_app):
    _records(anchored_app, 6)
    _cut(anchored_app, 0)
    _records(anchored_app, 7)  # a new chain, as long as the old one, signed with the same secret
    result = anchored_app.extensions["instance"].audit.verify()
    assert result["ok"] is False and result["first_broken"] == 1
    assert "record 1's hash differs from its anchor" in result["reason"]


def test_verify_warns_when_the_anchors_file_is_missing_and_the_cli_prints_the_comparison(anchored_app, monkeypatch):
    _records(anchored_app, 3)
    instance = anchored_app.extensions["instance"]
    monkeypatch.setattr(cli, "_instance", lambda: instance)  # the app's engine, closed after
    verified = CliRunner().invoke(main, ["audit", "verify"])
    assert verified.exit_code == 0
    assert "anchors: 1 in " in verified.output and "names record 1" in verified.output
    (instance.path / "anchors.jsonl").unlink()
    result = instance.audit.verify()
    assert result["ok"] is True and "there is no anchors file" in result["warnings"][0]
    _cut(anchored_app, 1)
    broken = CliRunner().invoke(main, ["audit", "verify"])
    assert broken.exit_code == 0 and "warning: there is no anchors file" in broken.output


def _since_anchor(app, monkeypatch):
    """`formulary audit verify --since-anchor` on the app's instance: (exit code, result, the lines after it)."""
    monkeypatch.setattr(cli, "_instance", lambda: app.extensions["instance"])  # the app's engine, closed after
    verified = CliRunner().invoke(main, ["audit", "verify", "--since-anchor"])
    first, *rest = verified.output.splitlines()
    return verified.exit_code, json.loads(first), rest


def test_verify_since_anchor_checks_the_anchored_record_and_every_later_one_and_says_so(anchored_app, monkeypatch):
    _records(anchored_app, 12)  # anchors name records 1, 5 and 10
    code, result, lines = _since_anchor(anchored_app, monkeypatch)
    assert code == 0 and result["ok"] is True, result
    assert result["from_anchor"]["id"] == 10 and result["records"] == 3  # records 10, 11 and 12
    assert f"checked from the anchor written at {result['from_anchor']['at']}, which names record 10" in lines[0]
    assert "3 records from 10 on, not the 9 before it" in lines[0]
    with anchored_app.extensions["instance"].database.begin() as connection:  # before the anchor: not checked
        connection.execute(update(audit_records).where(audit_records.c.id == 3).values(outcome="approved"))
    assert anchored_app.extensions["instance"].audit.verify(since_anchor=True)["ok"] is True
    assert anchored_app.extensions["instance"].audit.verify()["first_broken"] == 3  # the whole chain names it


def test_verify_since_anchor_names_a_record_altered_after_the_anchor(anchored_app, monkeypatch):
    _records(anchored_app, 12)
    with anchored_app.extensions["instance"].database.begin() as connection:
        connection.execute(update(audit_records).where(audit_records.c.id == 11).values(outcome="approved"))
    code, result, lines = _since_anchor(anchored_app, monkeypatch)
    assert code == 1 and result["ok"] is False and result["first_broken"] == 11
    assert "searchable fields differ" in result["reason"] and lines[-1].startswith("broken: ")


def test_verify_since_anchor_fails_when_the_anchored_record_differs_from_its_anchor(anchored_app, monkeypatch):
    _records(anchored_app, 12)
    _cut(anchored_app, 0)
    _records(anchored_app, 12)  # another chain as long, signed with the same secret, anchored again
    code, result, _ = _since_anchor(anchored_app, monkeypatch)
    assert code == 1 and result["ok"] is False and result["first_broken"] == 10
    assert "record 10's hash differs from its anchor" in result["reason"]


def test_verify_since_anchor_names_an_anchored_record_cut_off_the_end(anchored_app, monkeypatch):
    _records(anchored_app, 12)
    _cut(anchored_app, 8)
    code, result, _ = _since_anchor(anchored_app, monkeypatch)
    assert code == 1 and result["ok"] is False and result["first_broken"] == 10
    assert result["reason"].startswith("record 10 is not in the chain: the newest anchor, written at ")


def test_verify_since_anchor_names_a_row_bound_after_the_anchor_and_edited(anchored_app):
    from service.store.tokens import create_token

    audit = anchored_app.extensions["instance"].audit
    _records(anchored_app, 5)  # anchors name records 1 and 5
    tokens = {"clinician": create_token(anchored_app.extensions["instance"].database, "clinician", "clinician")}
    _decide(anchored_app.test_client(), tokens, "MRN-1", WITH_STEROIDS)  # record 6 grants an authorisation
    result = audit.verify(since_anchor=True)
    assert result["ok"] is True and result["from_anchor"]["id"] == 5 and result["rows"] == 1, result
    with anchored_app.extensions["instance"].database.begin() as connection:
        connection.execute(update(authorisations).values(valid_until="2099-12-31"))
    result = audit.verify(since_anchor=True)
    assert result["ok"] is False and result["broken_row"]["table"] == "authorisations"


def test_verify_since_anchor_without_anchors_checks_the_whole_chain_and_says_so(anchored_app, monkeypatch):
    _records(anchored_app, 7)
    (anchored_app.extensions["instance"].path / "anchors.jsonl").unlink()
    code, result, lines = _since_anchor(anchored_app, monkeypatch)
    assert code == 0 and result["ok"] is True and result["from_anchor"] is None and result["records"] == 7
    assert "there is no anchor to check from" in result["warnings"][0]
    assert "warning: there is no anchor to check from" in "\n".join(lines)
    assert not any(line.startswith("checked from the anchor") for line in lines)


def test_verify_since_anchor_takes_true_or_false(app, client, tokens):
    response = client.get("/v1/audit/verify?since_anchor=yes", headers=bearer(tokens["auditor"]))
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "since_anchor"
    assert client.get("/v1/audit/verify?since_anchor=false", headers=bearer(tokens["auditor"])).get_json()["ok"]


def test_the_anchors_file_is_owner_only(anchored_app):
    previous = os.umask(0)
    try:
        _records(anchored_app, 1)
    finally:
        os.umask(previous)
    path = anchored_app.extensions["instance"].path / "anchors.jsonl"
    assert path.stat().st_mode & 0o777 == 0o600


def _store(engine, path, every=3, minutes=5.0):
    from service.store.anchors import Anchors
    from service.store.audit import AuditStore

    return AuditStore(engine, b"test-secret", Anchors(path, every, minutes))


def test_anchors_are_written_every_n_records_and_after_m_minutes(engine, tmp_path, monkeypatch):
    audit = _store(engine, tmp_path / "anchors.jsonl")
    start = clock.now()
    monkeypatch.setattr(clock, "now", lambda: start)
    for i in range(4):
        audit.append("decision", {"i": i})
    assert [a["id"] for a in _lines(tmp_path / "anchors.jsonl")] == [1, 3]
    monkeypatch.setattr(clock, "now", lambda: start + datetime.timedelta(minutes=5))
    audit.append("decision", {"i": 4})  # record 5: five minutes after the last anchor
    audit.append("decision", {"i": 5})  # record 6: every 3
    audit.append("decision", {"i": 6})  # record 7: neither
    anchors = _lines(tmp_path / "anchors.jsonl")
    assert [(a["id"], a["count"]) for a in anchors] == [(1, 1), (3, 3), (5, 5), (6, 6)]
    assert anchors[2]["at"] == clock.stamp(start + datetime.timedelta(minutes=5))
    assert audit.verify()["anchors"]["newest"]["id"] == 6


def test_the_last_records_before_a_quiet_spell_are_anchored(engine, tmp_path, monkeypatch):
    audit = _store(engine, tmp_path / "anchors.jsonl", every=1000, minutes=0.01)  # the writer wakes every 0.6 s
    audit.append("decision", {"i": 0})
    audit.append("decision", {"i": 1})
    start = clock.now()
    monkeypatch.setattr(clock, "now", lambda: start + datetime.timedelta(minutes=1))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ids = [a["id"] for a in _lines(tmp_path / "anchors.jsonl")]
        if ids == [1, 2]:
            break
        time.sleep(0.1)
    assert ids == [1, 2]


def _append_records(url: str, path: str, count: int):
    from pathlib import Path

    from service.store.database import open_database

    audit = _store(open_database(url), Path(path), every=1)
    for i in range(count):
        audit.append("decision", {"process": os.getpid(), "i": i, "padding": "x" * 200})


def test_two_processes_anchoring_at_once_write_whole_lines(tmp_path):
    from service.store.database import migrate, open_database

    url = f"sqlite:///{tmp_path / 'two.db'}"
    engine = open_database(url)
    migrate(engine)
    path = tmp_path / "anchors.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_records, args=(url, str(path), 150)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 >= 300  # every commit anchored (every=1), each a whole line
    assert all(json.loads(line)["count"] >= 1 for line in lines[:-1])
    result = _store(engine, path, every=1).verify()
    assert result["ok"] is True and result["records"] == 300 and result["warnings"] == []
    engine.dispose()
