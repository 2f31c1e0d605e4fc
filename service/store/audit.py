"""The append-only, tamper-evident audit log.

Every record is canonical JSON, signed in a chain: its hash is HMAC-SHA-256, keyed from the
instance secret, over the previous record's hash and its own content. Editing, deleting,
inserting or reordering records breaks the chain at the first record touched, and someone who
can write the database but cannot read the secret cannot forge a consistent chain. The last
record's id and hash (`head`) can be copied elsewhere, so cutting records off the end shows too.

Appends lock the one-row chain head, so several processes (or hosts on one PostgreSQL) extend a
single chain in turn. Patient identifiers are stored only as a keyed hash.
"""

import hashlib
import hmac
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import overload

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from service import clock
from service.store import json_text
from service.store.database import writing
from service.store.tables import GENESIS_HASH, audit_head, audit_records

BATCH = 5000
MAX_GROUP = 64  # records committed together at most
# The indexed columns of a record, each copied from its signed content; verify checks they agree.
INDEXED = (
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
COLUMNS = ("id", *INDEXED, "content", "prev_hash", "hash")  # every column of a record, as the writer inserts them


class AuditUnavailable(RuntimeError):
    """The audit log could not be written; the caller must not act as if it had been."""


def canonical(value) -> str:
    """Sorted keys, no spaces. The chain signs this text as stored, so verify never rebuilds it;
    any text, even an unpaired surrogate (escaped), can be signed."""
    return json_text.dumps(value, sort_keys=True)


def subkey(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Filters:
    outcome: str | None = None
    code: str | None = None  # dotless; matches descendants
    rule: str | None = None
    requester: str | None = None
    patient_ref: str | None = None  # in clear; hashed before it reaches the database
    since: str | None = None  # ISO 8601 UTC text, inclusive
    until: str | None = None  # exclusive


@dataclass
class _Pending:
    fields: dict
    body: dict
    then: Callable[[Connection], None] | None
    record: dict | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class _GroupWriter:
    """Group commit: the appends that arrive while a transaction commits go into the next one.

    One thread per process writes; each caller waits until the commit holding its record has
    returned, so no response ever precedes its record, while concurrent requests share one
    transaction and one fsync instead of queueing for one each.
    """

    def __init__(self, commit_batch, max_batch: int = MAX_GROUP):
        self._commit_batch, self._max_batch = commit_batch, max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, item: "_Pending") -> dict:
        if self._thread is None:
            with self._start:
                if self._thread is None:  # started lazily: after a server forks its workers
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()
        self._queue.put(item)
        item.done.wait()
        if item.error is not None:
            raise _unavailable(item.error) if isinstance(item.error, SQLAlchemyError) else item.error
        assert item.record is not None  # set with the commit that `done` announces
        return item.record

    def _run(self):
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit_batch(batch)
            except Exception as error:  # the transaction failed: none of these records is on file
                for item in batch:
                    cause = item.error or error
                    item.record = None
                    item.error = (
                        cause if isinstance(cause, (SQLAlchemyError, AuditUnavailable)) else _unavailable(cause)
                    )
            for item in batch:
                item.done.set()


def _unavailable(cause: BaseException) -> AuditUnavailable:
    """The error a caller gets; its cause (the driver's message, the file refused) is kept for the log."""
    error = AuditUnavailable(f"the audit log could not be written ({type(cause).__name__})")
    error.__cause__ = cause
    return error


class _Statements:
    """The writer's four statements, compiled once for the database's dialect and run on the
    DB-API cursor of the writer's SQLAlchemy connection, in the same transaction.

    Building and compiling a Core statement per record (`insert(...).values(**row)`: coercions,
    cache key, compiled-cache lookup, execution context) cost more CPU than the whole decision;
    the writer runs the same statements for every record, so it keeps their SQL text. A driver
    error is re-raised as SQLAlchemy's exception for it, as Core would have raised it.
    """

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self.dbapi_error = dialect.loaded_dbapi.Error
        head = audit_head.c.id == bindparam("head")
        self.read_head = self._compile(
            select(audit_head.c.last_id, audit_head.c.last_hash).where(head).with_for_update()
        )
        self.insert_record = self._compile(insert(audit_records), COLUMNS)
        self.write_head = self._compile(update(audit_head).where(head), ("last_id", "last_hash"))

    def _compile(self, statement, column_keys=None) -> tuple[str, tuple | None]:
        compiled = statement.compile(dialect=self.dialect, column_keys=list(column_keys) if column_keys else None)
        return compiled.string, (tuple(compiled.positiontup) if compiled.positional else None)

    @staticmethod
    def _bind(order, values: dict):
        return values if order is None else tuple(values[name] for name in order)

    def run(self, cursor, statement, values: dict):
        sql, order = statement
        self._call(cursor.execute, sql, self._bind(order, values), False)

    def run_many(self, cursor, statement, rows: list[dict]):
        sql, order = statement
        self._call(cursor.executemany, sql, [self._bind(order, row) for row in rows], True)

    def savepoint(self, cursor, command: str):
        self._call(cursor.execute, f"{command} audit_record", None, False)

    def _call(self, method, sql, params, many):
        try:
            if params is None:
                method(sql)
            else:
                method(sql, params)
        except self.dbapi_error as error:
            raise DBAPIError.instance(
                sql, params, error, self.dbapi_error, hide_parameters=True, dialect=self.dialect, ismulti=many
            ) from error


class AuditStore:
    def __init__(self, engine: Engine, secret: bytes):
        self.engine = engine
        self._chain_key = subkey(secret, "audit-chain-v1")
        self._patient_key = subkey(secret, "patient-ref-v1")
        self._writer = _GroupWriter(self._commit_batch)
        self._statements: _Statements | None = None  # compiled on the first commit, for the engine's dialect

    @overload
    def patient_hash(self, ref: str) -> str: ...
    @overload
    def patient_hash(self, ref: None) -> None: ...
    @overload
    def patient_hash(self, ref: str | None) -> str | None: ...

    def patient_hash(self, ref: str | None) -> str | None:
        """The keyed hash that stands for a patient identifier everywhere we store one."""
        return None if ref is None else hmac.new(self._patient_key, ref.encode(), hashlib.sha256).hexdigest()

    def _hash(self, prev_hash: str, content: str) -> str:
        return hmac.new(self._chain_key, f"{prev_hash}\n{content}".encode(), hashlib.sha256).hexdigest()

    def append(self, kind: str, body: dict, then=None, **indexed) -> dict:
        """Sign and commit one record; returns its indexed fields with id and hash.

        `then(connection)`, if given, runs in the same transaction (the case or authorisation a
        decision creates), so the record and what it records commit together or not at all; an
        exception it raises is re-raised here and nothing of this record is kept.
        Raises AuditUnavailable when the record could not be committed.
        """
        fields = {name: indexed.get(name) for name in INDEXED}
        fields["kind"] = kind
        fields["created_at"] = indexed.get("created_at") or clock.utc_now()
        return self._writer.submit(_Pending(fields, body, then))

    def _commit_batch(self, batch: list["_Pending"]):
        """Chain and commit every pending record in one transaction (called by the writer thread).

        A record with effects (`then`) is written in a savepoint with them, so when they fail only
        that record is left out; the records without effects go in with one executemany.
        """
        with writing(self.engine) as connection:
            sql = self._statements
            if sql is None:
                sql = self._statements = _Statements(connection.dialect)
            cursor = connection.connection.cursor()
            try:
                sql.run(cursor, sql.read_head, {"head": 1})
                last_id, last_hash = cursor.fetchone()
                plain = []
                for item in batch:
                    record_id = last_id + 1
                    content = canonical({"id": record_id, **item.fields, "body": item.body})
                    record_hash = self._hash(last_hash, content)
                    values = {
                        **item.fields,
                        "id": record_id,
                        "content": content,
                        "prev_hash": last_hash,
                        "hash": record_hash,
                    }
                    if item.then is None:
                        plain.append(values)
                    else:
                        sql.savepoint(cursor, "SAVEPOINT")
                        try:
                            sql.run(cursor, sql.insert_record, values)
                            item.then(connection)
                        except Exception as error:  # this item only: the others stay in the batch
                            sql.savepoint(cursor, "ROLLBACK TO SAVEPOINT")
                            sql.savepoint(cursor, "RELEASE SAVEPOINT")
                            item.error = error
                            continue
                        sql.savepoint(cursor, "RELEASE SAVEPOINT")
                    item.record = {"id": record_id, "hash": record_hash, **item.fields}
                    last_id, last_hash = record_id, record_hash
                if plain:
                    sql.run_many(cursor, sql.insert_record, plain)
                sql.run(cursor, sql.write_head, {"last_id": last_id, "last_hash": last_hash, "head": 1})
            finally:
                cursor.close()

    def decision(self, decision_id: str) -> dict | None:
        """The signed content of a decision record, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(audit_records.c.content).where(audit_records.c.decision_id == decision_id)
            ).first()
        return None if row is None else json.loads(row.content)

    def _conditions(self, filters: Filters) -> list:
        c = audit_records.c
        conditions = []
        if filters.outcome:
            conditions.append(c.outcome == filters.outcome)
        if filters.code:
            conditions.append(c.code.startswith(filters.code, autoescape=True))
        if filters.rule:
            conditions.append(c.rule_id == filters.rule)
        if filters.requester:
            conditions.append(c.requester == filters.requester)
        if filters.patient_ref:
            conditions.append(c.patient_ref_hash == self.patient_hash(filters.patient_ref))
        if filters.since:
            conditions.append(c.created_at >= filters.since)
        if filters.until:
            conditions.append(c.created_at < filters.until)
        return conditions

    def page(
        self, filters: Filters, limit: int, before: int | None = None, with_body: bool = True
    ) -> tuple[list[dict], int | None]:
        """Records matching the filters, newest first, and the cursor for the next page (or None)."""
        c = audit_records.c
        columns = [c.id, *(c[name] for name in INDEXED), c.hash] + ([c.content] if with_body else [])
        conditions = self._conditions(filters) + ([c.id < before] if before is not None else [])
        query = select(*columns).where(*conditions).order_by(c.id.desc()).limit(limit + 1)
        with self.engine.connect() as connection:
            rows = [self._public(row, with_body) for row in connection.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["id"] if more else None)

    def stream(self, filters: Filters, with_body: bool = True):
        """Every matching record, newest first, fetched a batch at a time (constant memory)."""
        before = None
        while True:
            rows, before = self.page(filters, BATCH, before, with_body)
            yield from rows
            if before is None:
                return

    def daily_counts(self, filters: Filters) -> dict[str, dict[str, int]]:
        """Decisions a day (UTC) by outcome, for the records matching the filters."""
        c = audit_records.c
        day = func.substr(c.created_at, 1, 10)
        query = (
            select(day.label("day"), c.outcome, func.count().label("n"))
            .where(c.kind == "decision", *self._conditions(filters))
            .group_by(day, c.outcome)
        )
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                counts.setdefault(row.day, {})[row.outcome] = row.n
        return counts

    @staticmethod
    def _public(row, with_body: bool = True) -> dict:
        record = {name: getattr(row, name) for name in ("id", *INDEXED, "hash")}
        if with_body:
            record["body"] = json.loads(row.content)["body"]
        return record

    def head(self) -> dict:
        with self.engine.connect() as connection:
            head = connection.execute(select(audit_head).where(audit_head.c.id == 1)).one()
        return {"id": head.last_id, "hash": head.last_hash}

    def check_writable(self):
        """Raise as an append would, writing nothing: the head row is updated to itself in a
        writers' transaction that is then rolled back. A read-only database still answers reads,
        so a read alone would call a service that cannot record decisions healthy."""
        with writing(self.engine) as connection:
            connection.execute(update(audit_head).where(audit_head.c.id == 1).values(last_id=audit_head.c.last_id))
            connection.get_transaction().rollback()

    def verify(self) -> dict:
        """Check the whole chain: {"ok", "records", "first_broken", "reason"}."""
        expected_id, expected_prev, count = 1, GENESIS_HASH, 0
        c = audit_records.c
        with self.engine.connect() as connection:
            after = 0
            while True:
                rows = connection.execute(select(audit_records).where(c.id > after).order_by(c.id).limit(BATCH)).all()
                if not rows:
                    break
                for row in rows:
                    problem = self._check(row, expected_id, expected_prev)
                    if problem:
                        return {"ok": False, "records": count, "first_broken": problem[0], "reason": problem[1]}
                    expected_id, expected_prev, count = row.id + 1, row.hash, count + 1
                after = rows[-1].id
            head = connection.execute(select(audit_head).where(audit_head.c.id == 1)).one()
        if (head.last_id, head.last_hash) != (expected_id - 1, expected_prev):
            return {
                "ok": False,
                "records": count,
                "first_broken": expected_id,
                "reason": f"the chain head names record {head.last_id}, but the chain ends at record "
                f"{expected_id - 1}: records at the end were removed or the head was altered",
            }
        return {"ok": True, "records": count, "first_broken": None, "reason": None}

    def _check(self, row, expected_id: int, expected_prev: str) -> tuple[int, str] | None:
        if row.id != expected_id:
            return expected_id, f"record {expected_id} is missing (the next record is {row.id})"
        if row.prev_hash != expected_prev:
            return row.id, "the record does not follow the one before it (records deleted, inserted or reordered)"
        if not hmac.compare_digest(row.hash, self._hash(row.prev_hash, row.content)):
            return row.id, "the record's content does not match its signature (the record was altered)"
        try:
            content = json.loads(row.content)
        except ValueError:
            return row.id, "the record's content is not valid JSON"
        if content.get("id") != row.id or any(content.get(name) != getattr(row, name) for name in INDEXED):
            return row.id, "the record's searchable fields differ from its signed content (the record was altered)"
        return None
