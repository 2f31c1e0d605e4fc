"""Flooding the audit log: bounded records (issue 15, item 2).

The store and service tests run on SQLite and, when it is reachable, on PostgreSQL.
"""

import hashlib
import json

import pytest

from service.store.audit import MAX_ITEMS, MAX_TEXT, AuditStore, Filters, _Pending, canonical
from service.store.tables import audit_records


def records(app) -> list[dict]:
    return list(reversed(list(app.extensions["instance"].audit.stream(Filters()))))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- Every record is bounded. ---


def test_a_refused_request_with_a_60_kb_path_is_one_bounded_record_carrying_the_paths_digest(app, client):
    path = "/v1/" + "a" * 61_440
    assert client.get(path).status_code == 404
    [record] = records(app)
    assert record["kind"] == "refusal"
    stored = json.dumps(record["body"])
    assert len(stored) < MAX_TEXT + 1000  # the path once, cut; not 120 KB
    assert record["body"]["path"].startswith("/v1/aaa")
    assert record["body"]["path"].endswith(f"…[cut: {len(path)} characters, sha256 {sha256(path)}]")
    assert "aaaa" not in record["body"]["error"]["message"]  # the path is stored once, not again in the message
    assert app.extensions["instance"].audit.verify()["ok"]


@pytest.fixture
def audit(engine):
    return AuditStore(engine, b"test-secret")


def stored_content(engine, record_id: int) -> str:
    with engine.connect() as connection:
        return connection.exec_driver_sql(f"SELECT content FROM audit_records WHERE id = {record_id}").scalar_one()


@pytest.mark.parametrize(
    "kind", ["decision", "refusal", "refusals_summary", "preapproval", "review_resolution", "rulebook_reload"]
)
def test_every_kind_of_record_cuts_a_long_text_and_a_long_list_keeping_the_digest_of_the_whole(audit, engine, kind):
    long_text, long_key, requester = "x" * 10_000, "k" * 5_000, "r" * 500
    many = list(range(MAX_ITEMS + 500))
    body = {"nested": {"texts": ["short", long_text]}, long_key: "v", "many": many, "short": "kept as it is"}
    record = audit.append(kind, body, requester=requester, status=400)
    content = stored_content(engine, record["id"])
    assert len(content) < 4 * MAX_TEXT + 10 * MAX_ITEMS
    stored = json.loads(content)
    texts = stored["body"]["nested"]["texts"]
    assert texts[0] == "short" and stored["body"]["short"] == "kept as it is"
    assert len(texts[1]) <= MAX_TEXT and texts[1].startswith("xxx")
    assert texts[1].endswith(f"…[cut: 10000 characters, sha256 {sha256(long_text)}]")
    [cut_key] = [key for key in stored["body"] if key.startswith("kkk")]
    assert cut_key.endswith(f"…[cut: 5000 characters, sha256 {sha256(long_key)}]") and len(cut_key) <= MAX_TEXT
    listed = stored["body"]["many"]
    assert len(listed) == MAX_ITEMS and listed[: MAX_ITEMS - 1] == many[: MAX_ITEMS - 1]
    assert listed[-1] == f"…[cut: {len(many)} items, sha256 {sha256(canonical(many))}]"
    # An indexed column is cut to its own width, the same way, in the column and the signed content alike.
    assert len(record["requester"]) == audit_records.c.requester.type.length == 128 and record["requester"].startswith(
        "rrr"
    )
    assert stored["requester"] == record["requester"] and sha256(requester) in record["requester"]
    assert audit.verify()["ok"]


def test_records_written_unbounded_before_bounding_still_verify(audit, engine):
    old = {name: None for name in ("requester", "status", "decision_id", "outcome", "rule_id", "code")}
    old.update(
        {name: None for name in ("matched_by", "patient_ref_hash", "rulebook_version", "rulebook_digest")},
        kind="refusal",
        created_at="2026-11-23T00:00:00.000000Z",
    )
    unbounded = _Pending(old, {"path": "/v1/" + "a" * 61_440}, None)
    audit._commit_batch([unbounded])  # as the writer committed it before records were bounded
    audit.append("refusal", {"path": "/v1/" + "b" * 61_440})
    assert len(stored_content(engine, 1)) > 61_440 and len(stored_content(engine, 2)) < MAX_TEXT + 500
    verified = audit.verify()
    assert (verified["ok"], verified["records"], verified["first_broken"]) == (True, 2, None)
