"""The append-only, tamper-evident audit log.

Every record is canonical JSON, signed in a chain: its hash is HMAC-SHA-256, keyed from the
instance secret, over the previous record's hash and its own content. Editing, deleting,
inserting or reordering records breaks the chain at the first record touched, and someone who
can write the database but cannot read the secret cannot forge a consistent chain. The last
record's id and hash (`head`) are also appended to the anchors file outside the database
(service/store/anchors.py), so cutting records off the end, or emptying the table, shows too.

Rows that grant or change a right (authorisations, review resolutions) are written by the store
with the record that creates them (`append(..., bind=...)`), and carry that record's id and a
keyed MAC over their content (`binding`): a row forged or edited in the database fails it, and
pre-approval and verify refuse it.

Appends lock the one-row chain head, so several processes (or hosts on one PostgreSQL) extend a
single chain in turn. Patient identifiers are stored only as a keyed hash.
"""

import hashlib
import hmac
import json
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import overload

import orjson
from sqlalchemy import Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from service import clock
from service.store import decision_days, json_text, report_days, report_patients
from service.store.anchors import Anchors
from service.store.database import writing
from service.store.tables import (
    GENESIS_HASH,
    administrations,
    audit_head,
    audit_records,
    authorisation_measurements,
    authorisations,
    discrepancies,
    discrepancy_resolutions,
    preapproval_figures,
    review_resolutions,
    supply_phases,
)

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
SIGNED = COLUMNS[: COLUMNS.index("content")]  # the columns copied from the signed content
# Every record is bounded (`bounded`, `cut`): a text of its body longer than MAX_TEXT characters,
# and a list longer than MAX_ITEMS items, is cut and carries the SHA-256 of the whole; the indexed
# columns a caller's text can reach are cut the same way to their width.
MAX_TEXT = 4096
MAX_ITEMS = 1000
CUT_COLUMNS = {"requester": 128, "rule_id": 128}  # their widths in tables.py
# The bound tables, each with the kinds of record that may create its rows. Every column of a
# bound row is given by its writer (a server default would not be in its binding).
BOUND: dict[Table, tuple[str, ...]] = {
    authorisations: ("decision", "review_resolution", "rows_bound"),
    review_resolutions: ("review_resolution", "rows_bound"),
    authorisation_measurements: ("measurement", "rows_bound"),
    administrations: ("administration", "rows_bound"),
    discrepancies: ("administration", "rows_bound"),
    discrepancy_resolutions: ("discrepancy_resolution", "rows_bound"),
    supply_phases: ("supply_phase", "rows_bound"),
}
# Columns added to a bound table after its rows were first bound: left out of a row's binding
# while null, so rows bound before the column existed still verify (a value set later is bound).
ADDED_LATER = {authorisations: ("previous_id",)}
# Tables derived from a record (an index of it, rebuildable from the records): their rows are written
# with the record, keyed by its id, with a copy of its indexed fields they have columns for, and
# carry no binding of their own.
DERIVED = (preapproval_figures,)
_BOUND_INSERTS = {table: insert(table) for table in (*BOUND, *DERIVED)}  # built once: they run under the writer's lock
ROW_BATCH = 1000


def _signed_fields(content: str) -> tuple | None:
    """The id and the indexed fields (SIGNED, as COLUMNS begins) in a record's signed content, as
    verify compares them with its columns; None when the content is not an object. ValueError
    when the content is not JSON.

    orjson parses it several times faster than json; what orjson refuses (an unpaired surrogate,
    NaN, a number beyond a double) goes to json, which takes every text `canonical` writes. The two
    differ only on integers beyond 64 bits (orjson: a float), which equal no column's value either way.
    """
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        value = json.loads(content)
    return tuple(map(value.get, SIGNED)) if isinstance(value, dict) else None


class AuditUnavailable(RuntimeError):
    """The audit log could not be written; the caller must not act as if it had been."""


def canonical(value) -> str:
    """Sorted keys, no spaces. The chain signs this text as stored, so verify never rebuilds it;
    any text, even an unpaired surrogate (escaped), can be signed."""
    return json_text.dumps(value, sort_keys=True)


def subkey(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


def cut(text: str, limit: int = MAX_TEXT) -> str:
    """`text` itself when it has at most `limit` characters; else its start and a mark naming its
    length and the SHA-256 of the whole text (UTF-8), `limit` characters in all:
    "/v1/aaaa…[cut: 61444 characters, sha256 <64 hex digits>]". The one convention of the log."""
    if len(text) <= limit:
        return text
    whole = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    mark = f"…[cut: {len(text)} characters, sha256 {whole}]"
    return text[: max(limit - len(mark), 0)] + mark


def bounded(value):
    """A record body with every text (keys too) cut at MAX_TEXT characters and every list at
    MAX_ITEMS items, the last of which then says how many there were and the SHA-256 of the
    whole list's canonical JSON. A value within the bounds comes back as it is."""
    if isinstance(value, str):
        return cut(value)
    if isinstance(value, dict):
        return {cut(key) if isinstance(key, str) else key: bounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) <= MAX_ITEMS:
            return [bounded(item) for item in value]
        whole = hashlib.sha256(canonical(value).encode("utf-8", "surrogatepass")).hexdigest()
        return [bounded(item) for item in value[: MAX_ITEMS - 1]] + [f"…[cut: {len(value)} items, sha256 {whole}]"]
    return value


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
    bind: tuple[tuple[Table, dict], ...] = ()
    record: dict | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class _GroupWriter:
    """Group commit: the appends that arrive while a transaction commits go into the next one.

    One thread per process writes; each caller waits until the commit holding its record has
    returned, so no response ever precedes its record, while concurrent requests share one
    transaction and one fsync instead of queueing for one each.
    """

    def __init__(self, commit_batch, max_batch: int = MAX_GROUP, idle=None, idle_seconds: float | None = None):
        self._commit_batch, self._max_batch = commit_batch, max_batch
        self._idle, self._idle_seconds = idle, idle_seconds  # called when nothing came for that long
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

    def _waiting(self) -> bool:
        return not self._queue.empty()

    def _run(self):
        while True:
            try:
                batch = [self._queue.get(timeout=self._idle_seconds)]
            except queue.Empty:
                self._idle()
                continue
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit_batch(batch, self._waiting)
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
    """The writer's statements, compiled once for the database's dialect and run on the
    DB-API cursor of the writer's SQLAlchemy connection, in the same transaction.

    Building and compiling a Core statement per record (`insert(...).values(**row)`: coercions,
    cache key, compiled-cache lookup, execution context) cost more CPU than the whole decision;
    the writer runs the same statements for every record, so it keeps their SQL text. A driver
    error is re-raised as SQLAlchemy's exception for it, as Core would have raised it.
    """

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        head = audit_head.c.id == bindparam("head")
        self.read_head = self._compile(
            select(audit_head.c.last_id, audit_head.c.last_hash).where(head).with_for_update()
        )
        self.insert_record = self._compile(insert(audit_records), COLUMNS)
        self.write_head = self._compile(update(audit_head).where(head), ("last_id", "last_hash"))
        self.add_report_days = self._compile(report_days.ADD)

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
        _driver_call(self.dialect, method, sql, params, many)


def _driver_call(dialect: Dialect, method, sql: str, params, many: bool):
    """Run a DB-API call, re-raising a driver error as SQLAlchemy's exception for it."""
    error_type = dialect.loaded_dbapi.Error
    try:
        if params is None:
            method(sql)
        else:
            method(sql, params)
    except error_type as error:
        raise DBAPIError.instance(
            sql, params, error, error_type, hide_parameters=True, dialect=dialect, ismulti=many
        ) from error


class _Query:
    """A read compiled once for a dialect and run on a DB-API cursor, its rows plain tuples.

    Reading the whole log (verify, the CSV export) through Core built a Row per record and read
    its fields by name, which cost more than checking the record's signature; a tuple costs
    almost nothing. `values` fill the statement's bindparams; its own values (filters) stay.
    """

    def __init__(self, dialect: Dialect, statement):
        self.dialect = dialect
        compiled = statement.compile(dialect=dialect)
        self.sql, self.params = compiled.string, compiled.params
        self.order = tuple(compiled.positiontup) if compiled.positional else None

    def rows(self, connection: Connection, **values) -> Sequence[tuple]:
        params = self.params | values
        bound = params if self.order is None else tuple(params[name] for name in self.order)
        cursor = connection.connection.cursor()
        try:
            _driver_call(self.dialect, cursor.execute, self.sql, bound, False)
            return cursor.fetchall()
        finally:
            cursor.close()


class AuditStore:
    def __init__(self, engine: Engine, secret: bytes, anchors: Anchors | None = None):
        self.engine = engine
        self.anchors = anchors
        # Keyed once; each signature is a copy of it (cheaper than keying per record, which verify does a million times).
        self._chain = hmac.new(subkey(secret, "audit-chain-v1"), digestmod=hashlib.sha256)
        self._patient_key = subkey(secret, "patient-ref-v1")
        self._row_key = subkey(secret, "row-binding-v1")
        self._committed: tuple[int, str] | None = None  # the head after this process's last commit
        self._writer = _GroupWriter(
            self._commit_batch, idle=self._anchor_when_idle, idle_seconds=anchors.seconds if anchors else None
        )
        # The writer thread's connection, kept while groups follow one another: no pool checkout,
        # pre-ping (PostgreSQL) and reset per group under load; back to the pool when the queue is empty.
        self._held: Connection | None = None
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
        signature = self._chain.copy()
        signature.update(f"{prev_hash}\n{content}".encode())
        return signature.hexdigest()

    def append(self, kind: str, body: dict, then=None, bind=(), **indexed) -> dict:
        """Sign and commit one record; returns its indexed fields with id and hash.

        `then(connection)`, if given, runs in the same transaction (the case a decision opens),
        so the record and what it records commit together or not at all; an exception it raises
        is re-raised here and nothing of this record is kept. `bind`: (table, row) pairs of a
        table in BOUND, inserted after `then` in the same transaction, bound to this record (or of a
        table in DERIVED, inserted with this record's id and the indexed fields it has columns for).
        Raises AuditUnavailable when the record could not be committed.
        """
        fields = {name: indexed.get(name) for name in INDEXED}
        fields["kind"] = kind
        fields["created_at"] = indexed.get("created_at") or clock.utc_now()
        for name, width in CUT_COLUMNS.items():
            value = fields[name]
            if isinstance(value, str):
                fields[name] = cut(value, width)
        return self._writer.submit(_Pending(fields, bounded(body), then, tuple(bind)))

    def _commit_batch(self, batch: list["_Pending"], waiting: Callable[[], bool] = lambda: False):
        """Chain and commit every pending record in one transaction (called by the writer thread).

        A record with effects (`then`) is written in a savepoint with them, so when they fail only
        that record is left out; the records without effects go in with one executemany. The
        connection is kept for the next group when `waiting()` says more records wait for one, and
        returned to the pool before the callers go on otherwise.
        """
        if self._held is None:
            self._held = self.engine.connect()
        try:
            self._commit_group(batch, self._held)
        except BaseException:
            self._release_connection()  # a connection a group failed on is not used again
            raise
        if not waiting():
            self._release_connection()

    def _release_connection(self):
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def _commit_group(self, batch: list["_Pending"], held: Connection):
        with writing(self.engine, held) as connection:
            sql = self._statements
            if sql is None:
                sql = self._statements = _Statements(connection.dialect)
            cursor = connection.connection.cursor()
            try:
                sql.run(cursor, sql.read_head, {"head": 1})
                last_id, last_hash = cursor.fetchone()
                first_id = last_id + 1
                plain = []
                kept = []  # the fields of each record committed, counted into decision_days
                tallies: list = []  # what each row written adds to report_days
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
                    if item.then is None and not item.bind:
                        plain.append(values)
                    else:
                        sql.savepoint(cursor, "SAVEPOINT")
                        try:
                            sql.run(cursor, sql.insert_record, values)
                            if item.then is not None:
                                item.then(connection)
                            counted = [report_patients.of_record(record_id, item.fields)]
                            tallied = [report_days.of_decision(record_id, item.fields)]
                            for table, row in item.bind:
                                bound = {**row, "record_id": record_id}
                                if table in BOUND:
                                    bound["binding"] = self.binding(table, bound)
                                else:  # derived: with the record's indexed fields it keeps a copy of
                                    bound |= {n: v for n, v in item.fields.items() if n in table.c}
                                connection.execute(_BOUND_INSERTS[table], bound)
                                counted.append(report_patients.of_bound(connection, table, row))
                                tallied.append(report_days.of_bound(table, bound, counted[-1]))
                            replaced = set()
                            if any(counted):
                                rows = [row for row in counted if row]
                                replaced = report_patients.write(connection, rows, item.fields["kind"])
                        except Exception as error:  # this item only: the others stay in the batch
                            sql.savepoint(cursor, "ROLLBACK TO SAVEPOINT")
                            sql.savepoint(cursor, "RELEASE SAVEPOINT")
                            item.error = error
                            continue
                        sql.savepoint(cursor, "RELEASE SAVEPOINT")
                        tallies += (t for t in tallied if t and (t.source, t.source_id) not in replaced)
                    item.record = {"id": record_id, "hash": record_hash, **item.fields}
                    last_id, last_hash = record_id, record_hash
                    kept.append(item.fields)
                if plain:
                    sql.run_many(cursor, sql.insert_record, plain)
                    counted = [report_patients.of_record(values["id"], values) for values in plain]
                    if any(counted):  # in the same transaction, one executemany
                        report_patients.write(connection, [row for row in counted if row], "")
                    tallies += (report_days.of_decision(values["id"], values) for values in plain)
                summed = report_days.rows(tallies)
                if summed:  # one executemany for the group, as its records'
                    sql.run_many(cursor, sql.add_report_days, summed)
                decision_days.add(connection, kept)
                sql.run(cursor, sql.write_head, {"last_id": last_id, "last_hash": last_hash, "head": 1})
            finally:
                cursor.close()
        if last_id >= first_id:  # committed: anchor the head if due
            self._committed = (last_id, last_hash)
            if self.anchors is not None:
                self.anchors.after_commit(first_id, last_id, last_hash)

    def _anchor_when_idle(self):
        """The writer had nothing to do for the anchor interval (see Anchors.when_idle)."""
        if self.anchors is not None and self._committed is not None:
            self.anchors.when_idle(*self._committed)

    def binding(self, table: Table, row) -> str:
        """The keyed MAC that binds a row of a BOUND table (with its record_id) to its content."""
        later = ADDED_LATER.get(table, ())
        content = {
            column.name: row.get(column.name)
            for column in table.columns
            if column.name != "binding" and not (column.name in later and row.get(column.name) is None)
        }
        text = canonical([table.name, content])
        return hmac.new(self._row_key, text.encode(), hashlib.sha256).hexdigest()

    def row_intact(self, table: Table, row) -> bool:
        """The row is as the service wrote it: bound to a record, its content matching its binding."""
        binding = row.get("binding")
        return (
            binding is not None
            and row.get("record_id") is not None
            and hmac.compare_digest(binding, self.binding(table, row))
        )

    def unbound_rows(self) -> list[tuple[Table, dict]]:
        """The rows of the bound tables without a binding: made before rows were bound, or written
        outside the service."""
        with self.engine.connect() as connection:
            return [
                (table, dict(row._mapping))
                for table in BOUND
                for row in connection.execute(
                    select(table)
                    .where(or_(table.c.binding.is_(None), table.c.record_id.is_(None)))
                    .order_by(table.c.id)
                )
            ]

    def bind_existing(self, rows: list[tuple[Table, dict]], requester: str) -> dict:
        """Bind these rows (from unbound_rows, checked by someone) in one record that lists them."""

        def unbind(connection):  # rewritten bound, in the same transaction
            for table, row in rows:
                connection.execute(delete(table).where(table.c.id == row["id"]))

        listed = {table.name: [row["id"] for t, row in rows if t is table] for table in BOUND}
        return self.append("rows_bound", listed, then=unbind, bind=rows, requester=requester)

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

    def stream(self, filters: Filters):
        """Every matching record with its body, newest first, fetched a batch at a time (constant memory)."""
        names = ("id", *INDEXED, "hash")
        for batch in self.batches(filters, (*names, "content")):
            for row in batch:
                record = dict(zip(names, row[:-1], strict=True))
                record["body"] = json.loads(row[-1])["body"]
                yield record

    def batches(self, filters: Filters, columns: tuple[str, ...]):
        """The named columns (`id` among them) of every matching record, newest first, as lists of
        tuples of up to BATCH records, read by keyset on a DB-API cursor (constant memory)."""
        c = audit_records.c
        key = columns.index("id")
        statement = (
            select(*(c[name] for name in columns))
            .where(*self._conditions(filters), c.id < bindparam("before"))
            .order_by(c.id.desc())
            .limit(BATCH)
        )
        query, before = _Query(self.engine.dialect, statement), 2**63 - 1  # above every id (BigInteger)
        while True:
            with self.engine.connect() as connection:  # one a batch: a slow download holds none
                rows = query.rows(connection, before=before)
            if rows:
                yield rows
            if len(rows) < BATCH:
                return
            before = rows[-1][key]

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

    def verify(self, since_anchor: bool = False) -> dict:
        """Check the whole chain, the anchors and every bound row; with `since_anchor`, only from the
        newest anchor on.

        {"ok", "records" (records checked), "first_broken" (a record id), "reason", "broken_row"
        ({"table", "id"}), "rows" (bound rows checked), "anchors" ({"file", "anchors", "newest"}, or
        None when the store has none), "from_anchor" (the anchor checking started from, or None when
        the whole chain was checked), "warnings"}: the first problem found, chain first.

        From an anchor, the anchored record is trusted as far as its hash is the anchor's: it and every
        record after it are checked as in the whole chain, then the head, the bound rows those records
        created and every unbound row; nothing before it is. With no anchor to start from, the whole
        chain is checked and a warning says so.
        """
        read = self.anchors.read() if self.anchors is not None else None
        anchored: dict[int, list[dict]] = {}
        for anchor in read[0] if read else []:
            anchored.setdefault(anchor["id"], []).append(anchor)
        newest = max((a for group in anchored.values() for a in group), key=lambda a: a["id"], default=None)
        start = newest if since_anchor else None
        result: dict = {
            "ok": True,
            "records": 0,
            "first_broken": None,
            "reason": None,
            "broken_row": None,
            "rows": 0,
            "anchors": None
            if self.anchors is None
            else {"file": str(self.anchors.path), "anchors": len(read[0]) if read else 0, "newest": newest},
            "from_anchor": start,
            "warnings": [],
        }
        if since_anchor and start is None:
            result["warnings"].append(
                "there is no anchor to check from"
                + ("" if self.anchors is None else f" in {self.anchors.path}")
                + ": the whole chain was checked"
            )

        def broken(first_broken, reason, row=None) -> dict:
            return {**result, "ok": False, "first_broken": first_broken, "reason": reason, "broken_row": row}

        first = start["id"] if start else 1
        with self.engine.connect() as connection:
            last_id, last_hash, problem = self._check_chain(connection, first, anchored)
            result["records"] = last_id - first + 1
            if problem:
                return broken(*problem)
            if start is not None and last_id < first:
                return broken(
                    first,
                    f"record {first} is not in the chain: the newest anchor, written at {start['at']}, names it "
                    "(records cut off the end, or the database emptied or replaced by an older copy)",
                )
            if newest is not None and newest["id"] > last_id:
                return broken(
                    last_id + 1,
                    f"records {last_id + 1} to {newest['id']} are missing: the anchor written at {newest['at']} "
                    f"names record {newest['id']}, and the chain ends at record {last_id} (records cut off the "
                    "end, or the database emptied or replaced by an older copy)",
                )
            head = connection.execute(select(audit_head).where(audit_head.c.id == 1)).one()
            if (head.last_id, head.last_hash) != (last_id, last_hash):
                return broken(
                    last_id + 1,
                    f"the chain head names record {head.last_id}, but the chain ends at record "
                    f"{last_id}: records at the end were removed or the head was altered",
                )
            result["rows"], bad_row = self._check_rows(connection, first)
        if bad_row is not None:
            return broken(None, f"{bad_row['table']} row {bad_row['id']}: {bad_row['problem']}", bad_row)
        if self.anchors is not None and read is None and last_id:
            result["warnings"].append(
                f"there is no anchors file ({self.anchors.path}): records cut off the end of the chain, or a "
                "database emptied, cannot be detected before the next anchor is written"
            )
        elif self.anchors is not None and read and read[1]:
            result["warnings"].append(f"{read[1]} lines of the anchors file ({self.anchors.path}) could not be read")
        return result

    def _check_chain(self, connection, first: int, anchored: dict) -> tuple[int, str, tuple[int, str] | None]:
        """Check the records from `first` on: (the last good record's id and hash, the first problem
        as (record id, reason), or None). Record `first` is taken to follow the one before it (a
        record after 1: the anchored record, trusted as far as its hash is its anchor's).

        Every record: the id after the one before, its prev_hash that record's hash, its hash the
        HMAC of its prev_hash and content, its content JSON whose id and indexed fields are its
        columns, and its hash any anchor's naming it. Rows are read as tuples of COLUMNS (id and the
        indexed columns first), and the HMAC is a copy of one keyed once.
        """
        c = audit_records.c
        query = _Query(
            connection.dialect,
            select(*(c[name] for name in COLUMNS)).where(c.id >= bindparam("next")).order_by(c.id).limit(BATCH),
        )
        fields = len(SIGNED)  # then content, prev_hash, hash
        last_id, last_hash = first - 1, GENESIS_HASH
        unlinked = first if first > 1 else 0  # the anchored record: its link to the one before is not checked
        while rows := query.rows(connection, next=last_id + 1):
            for row in rows:
                record_id, content, prev_hash, record_hash = row[0], row[fields], row[fields + 1], row[fields + 2]
                expected = last_id + 1
                if record_id != expected:
                    reason = f"record {expected} is missing (the next record is {record_id})"
                    return last_id, last_hash, (expected, reason)
                if prev_hash != last_hash and record_id != unlinked:
                    reason = "the record does not follow the one before it (records deleted, inserted or reordered)"
                    return last_id, last_hash, (record_id, reason)
                if not hmac.compare_digest(record_hash, self._hash(prev_hash, content)):
                    reason = "the record's content does not match its signature (the record was altered)"
                    return last_id, last_hash, (record_id, reason)
                try:
                    signed = _signed_fields(content)
                except ValueError:
                    return last_id, last_hash, (record_id, "the record's content is not valid JSON")
                if signed != row[:fields]:
                    reason = "the record's searchable fields differ from its signed content (the record was altered)"
                    return last_id, last_hash, (record_id, reason)
                for anchor in anchored.get(record_id, ()):
                    if anchor["hash"] != record_hash:
                        reason = (
                            f"record {record_id}'s hash differs from its anchor written at {anchor['at']}: the chain "
                            "was rewritten at or before this record, or replaced by another"
                        )
                        return last_id, last_hash, (record_id, reason)
                last_id, last_hash = record_id, record_hash
        return last_id, last_hash, None

    def _check_rows(self, connection, first: int = 1) -> tuple[int, dict | None]:
        """(bound rows checked, the first bad one as {"table", "id", "problem"} or None): every row,
        or from an anchor (`first` > 1) the rows of records from `first` on and every unbound row."""
        checked = 0
        c = audit_records.c
        for table, kinds in BOUND.items():
            scope = (
                [or_(table.c.record_id >= first, table.c.record_id.is_(None), table.c.binding.is_(None))]
                if first > 1
                else []
            )
            after = ""
            while True:
                rows = connection.execute(
                    select(table).where(table.c.id > after, *scope).order_by(table.c.id).limit(ROW_BATCH)
                ).all()
                if not rows:
                    break
                named = {row.record_id for row in rows if row.record_id is not None}
                records = {
                    r.id: r for r in connection.execute(select(c.id, c.kind, c.patient_ref_hash).where(c.id.in_(named)))
                }
                for row in rows:
                    values = dict(row._mapping)
                    problem = self._row_problem(table, kinds, values, records.get(values["record_id"]))
                    if problem:
                        return checked, {"table": table.name, "id": values["id"], "problem": problem}
                    checked += 1
                after = rows[-1].id
        return checked, None

    def _row_problem(self, table: Table, kinds: tuple[str, ...], row: dict, record) -> str | None:
        if row["binding"] is None or row["record_id"] is None:
            return (
                "it is not bound to an audit record: it was written outside the service, or before rows "
                "were bound (`formulary audit bind-existing` lists those)"
            )
        if not self.row_intact(table, row):
            return "its content does not match its binding: the row was altered, or forged"
        if record is None:
            return f"the audit record that created it ({row['record_id']}) is not in the chain"
        if record.kind not in kinds:
            return f"record {record.id}, named as the one that created it, is a {record.kind} record"
        if (
            record.kind != "rows_bound"
            and row.get("patient_ref_hash", record.patient_ref_hash) != record.patient_ref_hash
        ):
            return f"record {record.id}, named as the one that created it, is about another patient"
        return None
