"""The audit log at 1,000,000 records: filtered queries, CSV export (time and peak memory), verify.

    .venv/bin/python bench/audit_scale.py [--records 1000000]

Builds a valid signed chain directly in a fresh SQLite database (bulk inserts with fsync off,
for set-up speed only), then measures through the HTTP API (Flask test client, as auditor).
"""

import argparse
import datetime
import random
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.store.audit import canonical  # noqa: E402
from service.store.tokens import create_token  # noqa: E402
from service.web.app import create_app  # noqa: E402

CODES = ["G610", "M3320", "D839", "G309", "D6861", "G6181", "L120", "M303"]
OUTCOMES = ["approved", "off_label_with_evidence", "needs_review", "not_supported"]


def build_chain(app, count: int):
    audit = app.extensions["instance"].audit
    database = app.extensions["instance"].sql_engine.url.database
    rng = random.Random(1)
    start = datetime.datetime(2025, 11, 22, tzinfo=datetime.UTC)
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA synchronous=OFF")
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
        rows.append((record_id, content, last_hash, record_hash, *fields.values()))
        last_hash = record_hash
        if len(rows) == 20_000:
            _insert(connection, rows)
            rows = []
    _insert(connection, rows)
    connection.execute("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (count, last_hash))
    connection.commit()
    connection.close()


def _insert(connection, rows):
    columns = (
        "id, content, prev_hash, hash, kind, created_at, requester, status, decision_id, outcome, rule_id, code, "
        "matched_by, patient_ref_hash, rulebook_version, rulebook_digest"
    )
    connection.executemany(f"INSERT INTO audit_records ({columns}) VALUES ({', '.join('?' * 16)})", rows)
    connection.commit()


def _drain(response) -> tuple[int, int]:
    """Read a streamed response chunk by chunk: (lines, bytes)."""
    size = rows = 0
    for chunk in response.response:
        size += len(chunk)
        rows += chunk.count("\n") if isinstance(chunk, str) else chunk.count(b"\n")
    return rows, size


def timed(label: str, action):
    started = time.perf_counter()
    result = action()
    print(f"{label:<62} {(time.perf_counter() - started) * 1000:9.1f} ms")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"INSTANCE_PATH": folder, "WARM": False})
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
            started = time.perf_counter()
            rows, size = _drain(client.get(f"/v1/audit.csv?{query}", headers=headers))
            elapsed = time.perf_counter() - started
            tracemalloc.start()  # a second pass, traced: tracing slows Python, so it is not timed
            _drain(client.get(f"/v1/audit.csv?{query}", headers=headers))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(
                f"{label:<62} {elapsed * 1000:9.1f} ms  {rows - 1:,} rows, {size / 1e6:.0f} MB, "
                f"peak Python memory {peak / 1e6:.1f} MB"
            )
        result = timed("verify the whole chain", lambda: client.get("/v1/audit/verify", headers=headers).get_json())
        assert result["ok"] and result["records"] == args.records, result
        app.extensions["active_rulebook"].close()


if __name__ == "__main__":
    main()
