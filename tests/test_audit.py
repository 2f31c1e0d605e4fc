"""The audit writer: group commit, per-record effects in savepoints, driver errors, the SQLite writer queue.

Each test runs on SQLite and, when it is reachable, on PostgreSQL.
"""

import threading
import time
import uuid

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import IntegrityError

from service.store.audit import AuditStore, AuditUnavailable, Filters, _Pending
from service.store.database import migrate, open_database, writing
from service.store.tables import audit_records, review_cases


@pytest.fixture
def audit(engine):
    return AuditStore(engine, b"test-secret")


def pending(then=None, **indexed) -> _Pending:
    fields = {
        name: None
        for name in (
            "kind",
            "created_at",
            "requester",
            "status",
            "decision_id",
            "outcome",
            "rule_id",
            "code",
            "matched_by",
            "patient_ref_hash",
            "rulebook_version",
            "rulebook_digest",
        )
    }
    fields.update(kind="decision", created_at="2026-11-23T00:00:00.000000Z", decision_id=str(uuid.uuid4()), **indexed)
    return _Pending(fields, {"request": {"diagnosis": {"code": "G61.0"}}, "note": "é ☃ \ud800"}, then)


def case_row(case_id: str) -> dict:
    return dict(
        id=case_id,
        opened_at="t",
        updated_at="t",
        status="open",
        requester="r",
        patient_ref_hash=None,
        code="G610",
        opening_decision_id="d",
        latest_decision_id="d",
        request="{}",
    )


def insert_case(case_id: str):
    return lambda connection: connection.execute(insert(review_cases).values(**case_row(case_id)))


def stored(engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(audit_records).order_by(audit_records.c.id))]


def test_a_group_is_chained_in_order_and_verifies(audit, engine):
    batch = [pending(), pending(then=insert_case("c1")), pending(), pending(then=lambda connection: None)]
    audit._commit_batch(batch)
    assert [item.error for item in batch] == [None] * 4
    assert [item.record["id"] for item in batch] == [1, 2, 3, 4]
    rows = stored(engine)
    assert [row["id"] for row in rows] == [1, 2, 3, 4]
    assert [row["decision_id"] for row in rows] == [item.fields["decision_id"] for item in batch]
    assert all(row["hash"] == item.record["hash"] for row, item in zip(rows, batch, strict=True))
    assert audit.head() == {"id": 4, "hash": rows[-1]["hash"]}
    assert audit.verify().items() >= {"ok": True, "records": 4, "first_broken": None, "reason": None}.items()
    assert [r["body"]["note"] for r in audit.stream(Filters())] == ["é ☃ \ud800"] * 4


def test_the_writer_keeps_its_connection_while_records_wait_and_returns_it_when_none_do(audit, engine):
    checkouts = []
    event.listen(engine, "checkout", lambda *args: checkouts.append(1))
    first = pending()
    audit._commit_batch([first], lambda: True)
    audit._commit_batch([pending()], lambda: True)
    assert len(checkouts) == 1 and engine.pool.checkedout() == 1  # one connection for both groups
    audit._commit_batch([pending()], lambda: False)
    assert len(checkouts) == 1 and engine.pool.checkedout() == 0  # back in the pool before its callers go on
    again = pending()
    again.fields["decision_id"] = first.fields["decision_id"]  # refused: the whole group fails
    with pytest.raises(IntegrityError):
        audit._commit_batch([pending(), again], lambda: True)
    assert engine.pool.checkedout() == 0  # a group that failed gives up its connection
    audit._commit_batch([pending()])
    assert [row["id"] for row in stored(engine)] == [1, 2, 3, 4] and audit.verify()["ok"]


def test_failing_effects_leave_out_only_their_own_record(audit, engine):
    def refuse(connection):
        connection.execute(insert(review_cases).values(**case_row("c2")))  # written, then undone with its record
        raise ValueError("case already closed")

    batch = [pending(then=insert_case("c1")), pending(then=refuse), pending(), pending(then=insert_case("c3"))]
    audit._commit_batch(batch)
    assert isinstance(batch[1].error, ValueError) and batch[1].record is None
    assert [item.record["id"] for item in (batch[0], batch[2], batch[3])] == [1, 2, 3]  # no gap where it failed
    with engine.connect() as connection:
        assert sorted(connection.execute(select(review_cases.c.id)).scalars()) == ["c1", "c3"]
    assert [row["decision_id"] for row in stored(engine)] == [batch[i].fields["decision_id"] for i in (0, 2, 3)]
    assert audit.verify()["ok"]


def test_a_database_error_in_effects_fails_that_record_and_the_transaction_goes_on(audit, engine):
    # On PostgreSQL a failed statement aborts the transaction until its savepoint is rolled back.
    audit._commit_batch([pending(then=insert_case("dup"))])
    batch = [pending(), pending(then=insert_case("dup")), pending(then=insert_case("fresh"))]
    audit._commit_batch(batch)
    assert isinstance(batch[1].error, IntegrityError)
    assert batch[0].error is None and batch[2].error is None
    assert [row["id"] for row in stored(engine)] == [1, 2, 3]
    assert audit.verify()["ok"]


def test_a_record_the_database_refuses_is_an_audit_failure_not_a_crash(audit, engine):
    taken = audit.append("decision", {"n": 1}, decision_id="same")["decision_id"]
    with pytest.raises(AuditUnavailable):  # a plain record: the whole group fails
        audit.append("decision", {"n": 2}, decision_id=taken)
    with pytest.raises(AuditUnavailable):  # with effects: its savepoint fails
        audit.append("decision", {"n": 3}, then=lambda connection: None, decision_id=taken)
    assert audit.append("decision", {"n": 4}, decision_id="other")["id"] == 2
    assert audit.verify().items() >= {"ok": True, "records": 2, "first_broken": None, "reason": None}.items()


def test_concurrent_appends_share_commits_and_every_one_is_on_file(audit, engine):
    commits = []
    event.listen(engine, "commit", lambda connection: commits.append(1))
    results, errors = [], []

    def work(n):
        for i in range(25):
            try:
                then = insert_case(f"case-{n}-{i}") if i % 3 == 0 else None
                results.append(audit.append("decision", {"thread": n, "i": i}, then=then, requester=f"t{n}")["id"])
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == list(range(1, 201))
    assert len(commits) < 200  # appends were grouped
    assert audit.verify().items() >= {"ok": True, "records": 200, "first_broken": None, "reason": None}.items()


def test_sqlite_writers_queue_on_the_writer_lock(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'queue.db'}")
    migrate(engine)
    assert (tmp_path / "queue.db-writer.lock").exists()
    order = []
    first_in = threading.Event()

    def first():
        with writing(engine):
            order.append("first in")
            first_in.set()
            time.sleep(0.3)
            order.append("first out")

    def second():
        first_in.wait()
        with writing(engine):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert order == ["first in", "first out", "second in"]
    engine.dispose()


def test_a_failed_write_releases_the_writer_lock(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'release.db'}")
    migrate(engine)
    with pytest.raises(RuntimeError):
        with writing(engine):
            raise RuntimeError("effects failed")
    done = threading.Event()

    def write():
        with writing(engine):
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert done.wait(5)
    thread.join()
    engine.dispose()
