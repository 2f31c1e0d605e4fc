"""The audit log at 1,000,000 records: filtered queries, CSV export (time and peak memory), verify.

    .venv/bin/python bench/audit_scale.py [--records 1000000] [--database-url URL]

Builds a valid signed chain directly in a fresh database (SQLite in a temporary folder by default,
bulk inserts of 20,000 records a transaction; a PostgreSQL URL, an empty schema, to measure there), anchored as the service anchors it (`Anchors.write`) every 100,000 records and 10,000
records before its end, then measures through the HTTP API (Flask test client, as auditor): the
queries, the CSV exports, verify of the whole chain and verify from the newest anchor (the last
10,000 records).
"""

import argparse
import datetime
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text  # noqa: E402

from service.store.audit import canonical  # noqa: E402
from service.store.tables import audit_records  # noqa: E402
from service.store.tokens import create_token  # noqa: E402
from service.web.app import create_app  # noqa: E402

CODES = ["G610", "M3320", "D839", "G309", "D6861", "G6181", "L120", "M303"]
OUTCOMES = ["approved", "off_label_with_evidence", "needs_review", "not_supported"]


ANCHOR_EVERY = 100_000
SINCE_ANCHOR = 10_000  # records after the newest anchor


def build_chain(app, count: int):
    instance = app.extensions["instance"]
    audit, anchors, engine = instance.audit, instance.audit.anchors, instance.sql_engine
    rng = random.Random(1)
    start = datetime.datetime(2025, 11, 22, tzinfo=datetime.UTC)
    last_hash, rows = "0" * 64, []
    for record_id in range(1, count + 1):
        moment = start + datetime.timedelta(seconds=record_id * 365 * 86400 / count)
        patient = f"MRN-{rng.randrange(50_000):05d}"
        code = rng.choice(CODES)
        fields = {
            "kind": "decision",
            "created_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "requester": f"clinician-{rng.randrange(20)}",
            "status": 201,
            "decision_id": f"{record_id:036d}",
            "outcome": rng.choice(OUTCOMES),
            "rule_id": f"rule-{code.lower()}",
            "code": code,
            "matched_by": "code",
            "patient_ref_hash": audit.patient_hash(patient),
            "rulebook_version": "2026.11.0",
            "rulebook_digest": "d" * 64,
        }
        body = {
            "request": {"diagnosis": {"code": code}, "patient": {"age_years": rng.randrange(90)}},
            "decision": {"outcome": fields["outcome"]},
        }
        content = canonical({"id": record_id, **fields, "body": body})
        record_hash = audit._hash(last_hash, content)
        rows.append({"id": record_id, **fields, "content": content, "prev_hash": last_hash, "hash": record_hash})
        last_hash = record_hash
        if len(rows) == 20_000:
            _insert(engine, rows)
            rows = []
        if record_id == count - SINCE_ANCHOR or record_id % ANCHOR_EVERY == 0 and record_id < count - SINCE_ANCHOR:
            anchors.write(record_id, record_hash)  # as the service anchors its head
    _insert(engine, rows)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_head SET last_id = :id, last_hash = :hash WHERE id = 1"),
            {"id": count, "hash": last_hash},
        )
        connection.execute(text("ANALYZE"))


def _insert(engine, rows: list[dict]):
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(audit_records), rows)


def _drain(response) -> tuple[int, int]:
    """Read a streamed response chunk by chunk: (lines, bytes)."""
    size = rows = 0
    for chunk in response.response:
        size += len(chunk)
        rows += chunk.count("\n") if isinstance(chunk, str) else chunk.count(b"\n")
    return rows, size


def timed(label: str, action):
    """Run action, printing its wall time and the CPU time of this process (the service runs in it)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = action()
    print(
        f"{label:<62} {(time.perf_counter() - started) * 1000:9.1f} ms  CPU {(time.process_time() - cpu) * 1000:9.1f} ms"
    )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url", help="a PostgreSQL URL (an empty schema); default: SQLite in a temporary folder"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        # The bench writes the anchors; the service's own (of the access records the queries add) would
        # move the newest past the last 10,000 records.
        config = {"INSTANCE_PATH": folder, "WARM": False, "ANCHOR_EVERY": 10**9, "ANCHOR_MINUTES": 10**6}
        if args.database_url:
            config["DATABASE_URL"] = args.database_url
        app = create_app(config)
        print(f"database: {app.extensions['instance'].sql_engine.dialect.name}")
        token = create_token(app.extensions["instance"].sql_engine, "auditor", "auditor")
        headers = {"Authorization": f"Bearer {token}"}
        timed(f"build a signed chain of {args.records:,} records", lambda: build_chain(app, args.records))
        client = app.test_client()
        for query in (
            "limit=50",
            "outcome=needs_review&limit=50",
            "code=G61&limit=50",
            "code=G61.81&limit=50",
            "rule=rule-m3320&limit=50",
            "requester=clinician-7&limit=50",
            "patient_ref=MRN-04242&limit=50",
            "since=2026-06-01&until=2026-06-02&limit=50",
            "outcome=approved&code=D83.9&since=2026-01-01&limit=50",
        ):
            response = timed(f"query /v1/audit?{query}", lambda q=query: client.get(f"/v1/audit?{q}", headers=headers))
            assert response.status_code == 200, response.get_json()
        page = client.get("/v1/audit?limit=50", headers=headers).get_json()
        timed(
            "query, next page by cursor",
            lambda: client.get(f"/v1/audit?limit=50&cursor={page['next_cursor']}", headers=headers),
        )
        for query, label in (
            ("code=G61.0", "CSV export, one code (~1/8 of the log)"),
            ("", "CSV export, the whole log"),
        ):
            started, cpu = time.perf_counter(), time.process_time()
            rows, size = _drain(client.get(f"/v1/audit.csv?{query}", headers=headers))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            tracemalloc.start()  # a second pass, traced: tracing slows Python, so it is not timed
            _drain(client.get(f"/v1/audit.csv?{query}", headers=headers))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(
                f"{label:<62} {elapsed * 1000:9.1f} ms  CPU {cpu * 1000:9.1f} ms  {rows - 1:,} rows, {size / 1e6:.0f} MB, "
                f"peak Python memory {peak / 1e6:.1f} MB"
            )
        result = timed("verify the whole chain", lambda: client.get("/v1/audit/verify", headers=headers).get_json())
        assert result["ok"] and result["records"] >= args.records, result  # and the access records of the queries
        result = timed(
            f"verify from the newest anchor (the last {SINCE_ANCHOR:,} records)",
            lambda: client.get("/v1/audit/verify?since_anchor=true", headers=headers).get_json(),
        )
        anchored = args.records - SINCE_ANCHOR
        assert result["ok"] and result["from_anchor"]["id"] == anchored, result
        assert result["records"] > SINCE_ANCHOR, result  # the anchored record and those after it
        app.extensions["active_rulebook"].close()


if __name__ == "__main__":
    main()
