"""Flooding the audit log: bounded records, the limit on anonymous refusals and their summary
records, and /healthz's free-space warning (issue 15, item 2).

The store and service tests run on SQLite and, when it is reachable, on PostgreSQL.
"""

import datetime
import hashlib
import http.client
import json
import subprocess
import threading

import pytest

from service import clock
from service.store.audit import MAX_ITEMS, MAX_TEXT, AuditStore, Filters, _Pending, canonical
from service.store.tables import audit_records
from service.store.tokens import create_token
from service.web.app import create_app

from .conftest import TEST_RULEBOOK, bearer, csrf_token, sign_in
from .service_process import FORMULARY, running_service, service_env


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


# --- Anonymous refusals: a limit per client address, and one summary record per window. ---

START = datetime.datetime(2026, 11, 23, 10, 0, 0, tzinfo=datetime.UTC)  # the start of a window


@pytest.fixture
def moment(monkeypatch):
    """The service's clock, moved by setting `moment[0]`."""
    now = [START]
    monkeypatch.setattr(clock, "now", lambda: now[0])
    return now


def summaries(app) -> list[dict]:
    return [record for record in records(app) if record["kind"] == "refusals_summary"]


def test_anonymous_requests_beyond_the_limit_get_429_with_retry_after_then_one_summary_for_the_window(make_app, moment):
    app = make_app(ANON_LIMIT=5, ANON_WINDOW=60)
    client = app.test_client()
    moment[0] = START + datetime.timedelta(seconds=15)
    statuses = [client.get("/v1/audit").status_code for _ in range(4)]
    statuses.append(client.get("/v1/audit", headers=bearer("ivig_wrong")).status_code)
    statuses.append(client.get("/v1/audit").status_code)
    limited = client.get("/v1/nothing-here")
    assert statuses == [401] * 5 + [429] and limited.status_code == 429
    assert limited.headers["Retry-After"] == "45"  # the rest of the window
    assert limited.get_json()["error"]["code"] == "rate_limited"
    # Only the window's first refusal is on the record yet, on its own.
    [first] = records(app)
    assert (first["kind"], first["status"], first["body"]["path"]) == ("refusal", 401, "/v1/audit")
    moment[0] = START + datetime.timedelta(seconds=61)  # the window has closed: the next request writes its summary
    assert client.get("/v1/audit").status_code == 401
    [summary] = summaries(app)
    assert summary["body"] == {
        "client": "127.0.0.1",
        "window": {"start": "2026-11-23T10:00:00.000000Z", "end": "2026-11-23T10:01:00.000000Z"},
        "limit": 5,
        "refused": 7,
        "recorded_individually": 1,
        "by_status": {"401": 5, "429": 2},
        "by_code": {"unauthenticated": 4, "invalid_token": 1, "rate_limited": 2},
        "first": {"at": "2026-11-23T10:00:15.000000Z", "method": "GET", "path": "/v1/audit"},
        "last": {"at": "2026-11-23T10:00:15.000000Z", "method": "GET", "path": "/v1/nothing-here"},
    }
    assert [r["kind"] for r in records(app)] == ["refusal", "refusals_summary", "refusal"]  # the new window's first
    assert app.extensions["instance"].audit.verify()["ok"]


def test_failed_console_sign_ins_count_toward_the_limit_and_get_the_page_with_retry_after(make_app, moment):
    app = make_app(ANON_LIMIT=3, ANON_WINDOW=60)
    client = app.test_client()
    form = {"token": "ivig_guess", "csrf_token": csrf_token(client)}
    assert [client.post("/console/sign-in", data=form).status_code for _ in range(3)] == [401] * 3
    page = client.post("/console/sign-in", data=form)
    assert page.status_code == 429 and page.headers["Retry-After"] == "60"
    assert "Too many" in page.get_data(as_text=True)
    app.extensions["anonymous_refusals"].flush(closing=True)
    [summary] = summaries(app)
    assert summary["body"]["by_status"] == {"401": 3, "429": 1} and summary["body"]["recorded_individually"] == 1


def test_authenticated_requests_are_not_limited_when_their_address_is(make_app, moment):
    app = make_app(ANON_LIMIT=2, ANON_WINDOW=60)
    database = app.extensions["instance"].database
    auditor, admin = create_token(database, "auditor", "auditor"), create_token(database, "admin", "admin")
    client = app.test_client()
    assert [client.get("/v1/audit").status_code for _ in range(3)] == [401, 401, 429]
    assert client.get("/v1/audit?limit=1", headers=bearer(auditor)).status_code == 200
    assert client.post("/v1/decisions", json={}, headers=bearer(auditor)).status_code == 403
    refusals = [(r["status"], r["requester"]) for r in records(app) if r["kind"] == "refusal"]
    assert refusals == [(401, None), (403, "auditor")]  # a known requester's refusal is a record of its own
    console = app.test_client()
    moment[0] = START + datetime.timedelta(seconds=60)
    sign_in(console, admin)  # in a new window, before this address is limited again
    assert [client.get("/v1/audit").status_code for _ in range(3)] == [401, 401, 429]
    assert console.get("/console/audit").status_code == 200
    assert console.get("/console/sign-in").status_code == 200


def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(make_app, moment):
    for proxies, client_address in ((0, "127.0.0.1"), (1, "203.0.113.9")):
        app = make_app(ANON_LIMIT=5, ANON_WINDOW=60, TRUSTED_PROXIES=proxies)
        client = app.test_client()
        client.get("/v1/audit", headers={"X-Forwarded-For": "203.0.113.9"})
        client.get("/v1/audit", headers={"X-Forwarded-For": "203.0.113.9"})
        app.extensions["anonymous_refusals"].flush(closing=True)
        assert [s["body"]["client"] for s in summaries(app)][-1] == client_address


# --- /healthz warns before the disk is full. ---


def test_healthz_is_degraded_but_200_when_free_space_is_below_the_threshold(make_app):
    healthy = make_app().test_client().get("/healthz")
    assert healthy.status_code == 200 and healthy.get_json()["status"] == "ok"
    assert healthy.get_json()["disk"]["min_free_bytes"] == 512 * 1024 * 1024
    response = make_app(MIN_FREE_MB=10**12).test_client().get("/healthz")
    assert response.status_code == 200
    health = response.get_json()
    assert health["status"] == "degraded" and health["disk"]["min_free_bytes"] == 10**12 * 1024 * 1024
    assert 0 < health["disk"]["free_bytes"] < health["disk"]["min_free_bytes"]
    assert "FORMULARY_MIN_FREE_MB" in health["reason"]


# --- The flood, through `formulary serve`. ---


def flood(port: int, count: int, path: str, connections: int = 8) -> dict[int, int]:
    """Send `count` GET requests without credentials over `connections` keep-alive connections."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def run(share: int):
        seen: dict[int, int] = {}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(share):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            seen[response.status] = seen.get(response.status, 0) + 1
        connection.close()
        with lock:
            for status, n in seen.items():
                statuses[status] = statuses.get(status, 0) + n

    threads = [
        threading.Thread(target=run, args=(count // connections + (i < count % connections),))
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def database_bytes(instance) -> int:
    return sum(file.stat().st_size for file in instance.glob("formulary.db*"))


@pytest.mark.long
def test_a_flood_of_100000_anonymous_requests_grows_the_database_by_less_than_1_mb(tmp_path, monkeypatch):
    monkeypatch.delenv("FORMULARY_SECRET", raising=False)
    instance = tmp_path / "instance"
    env = service_env(instance)
    with running_service(env) as service:
        before = database_bytes(instance)
        statuses = flood(service.port, 100_000, "/v1/audit")
    # Stopped (SIGTERM): each worker wrote the summary of the window it was in before it ended.
    verify = subprocess.run([str(FORMULARY), "audit", "verify"], env=env, capture_output=True, text=True, check=True)
    grown = database_bytes(instance) - before
    assert sum(statuses.values()) == 100_000 and set(statuses) <= {401, 429}
    assert grown < 1024 * 1024, grown
    assert json.loads(verify.stdout.splitlines()[0])["ok"]
    # Nothing is lost: the individual records and the summaries count every refusal.
    app = create_app({"INSTANCE_PATH": str(instance), "WARM": False, "RULEBOOK": str(TEST_RULEBOOK)})
    try:
        kept = records(app)
    finally:
        app.extensions["active_rulebook"].close()
        app.extensions["instance"].database.dispose()
    individual = [r for r in kept if r["kind"] == "refusal"]
    summarised = [r for r in kept if r["kind"] == "refusals_summary"]
    counted = sum(r["body"]["refused"] - r["body"]["recorded_individually"] for r in summarised)
    assert len(individual) + counted == 100_000, (len(individual), counted)
    assert len(individual) + len(summarised) < 50
