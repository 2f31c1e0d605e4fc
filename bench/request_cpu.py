"""CPU time per audited decision, in process: what POST /v1/decisions costs and where.

    .venv/bin/python bench/request_cpu.py [--count 3000] [--threads 8] [--profile FILE] 2>/dev/null

Builds the service on a fresh SQLite instance (WAL, synchronous=FULL, as `formulary serve` runs
it) and measures process CPU time (time.process_time: every thread, user + system) per operation,
which moves far less than wall-clock time when other work shares the machine:
- token:   tokens.principal_for, one bearer-token lookup (warm: the same token again and again);
- append:  AuditStore.append of a decision-sized record with an effects callback, from N threads
           (so group commit batches them as under load);
- request: POST /v1/decisions through Flask's test client from N threads with the request mix of
           bench/decisions.lua, end to end (token, decision, audit record, logging, JSON).
The server's own logging goes to stderr as in `formulary serve`; send it to /dev/null.
To compare two versions of the service, run this script once per version, alternately, with
PYTHONPATH pointing at each tree.
"""

import argparse
import cProfile
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BODIES = [
    {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-1001"}},
    {"diagnosis": {"code": "M33.20"}, "patient": {"age_years": 50}, "therapies": {"concurrent": ["corticosteroids"]}},
    {"diagnosis": {"code": "D83.9"}, "patient": {"age_years": 30, "sex": "female"}, "product": "Privigen"},
    {"diagnosis": {"text": "Kawasaki disease"}, "patient": {"age_years": 3}},
    {"diagnosis": {"code": "G30.9"}, "patient": {"age_years": 80}},
    {"diagnosis": {"text": "wegeners granulomatosis"}, "patient": {"age_years": 52}},
    {"diagnosis": {"code": "D68.61"}, "patient": {"age_years": 31, "sex": "female", "pregnant": True}},
    {"diagnosis": {"code": "G61.81"}, "patient": {"age_years": 12}, "product": "Gamunex-C"},
]


def in_threads(threads: int, count: int, work) -> float:
    """Run work(i) for i in range(count) spread over `threads` threads; CPU seconds per call."""

    def run(start):
        for i in range(start, count, threads):
            work(i)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    cpu = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.process_time() - cpu) / count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--profile", help="write a cProfile of the request phase (run in one thread) here")
    args = parser.parse_args()
    os.environ.pop("FORMULARY_DATABASE_URL", None)
    os.environ.pop("FORMULARY_SECRET", None)

    from service.store.tokens import create_token, principal_for
    from service.web.app import create_app

    folder = tempfile.mkdtemp()
    app = create_app({"INSTANCE_PATH": folder + "/instance"})
    instance = app.extensions["instance"]
    token = create_token(instance.database, "bench", "pharmacist")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for body in BODIES * 4:  # warm: caches, compiled statements, the writer thread
        assert client.post("/v1/decisions", json=body, headers=headers).status_code == 201

    results = {}
    count = args.count
    assert principal_for(instance.sql_engine, token) == ("bench", "pharmacist")
    results["token"] = in_threads(1, count, lambda i: principal_for(instance.sql_engine, token))

    record = json.loads(client.post("/v1/decisions", json=BODIES[0], headers=headers).data)
    audit = instance.audit
    results["append"] = in_threads(
        args.threads,
        count,
        lambda i: audit.append(
            "decision",
            {"request": BODIES[i % 8], "decision": record},
            then=lambda connection: None,
            requester="bench",
            status=201,
            decision_id=f"bench-{i}",
            outcome=record["outcome"],
            code="G610",
        ),
    )

    def post(i):
        response = client.post("/v1/decisions", json=BODIES[i % 8], headers=headers)
        assert response.status_code == 201, response.data

    if args.profile:  # in this thread, one request at a time (cProfile sees one thread)
        profiler = cProfile.Profile()
        cpu = time.process_time()
        profiler.enable()
        for i in range(count):
            post(i)
        profiler.disable()
        results["request"] = (time.process_time() - cpu) / count
        profiler.dump_stats(args.profile)
    else:
        results["request"] = in_threads(args.threads, count, post)
    verified = instance.audit.verify()
    assert verified["ok"], verified

    print(
        f"python {sys.version.split()[0]}; {os.cpu_count()} cores; SQLite (WAL, synchronous=FULL); "
        f"{count} operations each, {args.threads} threads for append and request; "
        f"service from {Path(sys.modules['service'].__file__).parent}"
    )
    for name, seconds in results.items():
        print(f"{name:<8} {seconds * 1e6:9.0f} us CPU per call   ({1 / seconds:8,.0f} per CPU second)")
    print(f"chain verified: {verified['records']} records")
    app.extensions["active_rulebook"].close()


if __name__ == "__main__":
    main()
