"""Reliability of the running service under concurrency, crashes and database faults.

Long runs (`pytest -m long`, run by .ci/run): each starts `formulary serve` (granian).
"""

import multiprocessing
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy

from service.store.audit import Filters
from service.store.instance import Instance

from .conftest import POSTGRES_URL
from .service_process import FORMULARY, admin_token, free_port, kill, running_service, service_env

pytestmark = pytest.mark.long

CODES = ["G61.0", "M33.20", "D83.9", "G30.9", "D68.61", "G61.81", "L12.0", "G35.D"]


def _instance(path: Path, monkeypatch, url: str | None = None) -> Instance:
    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", str(path))
    if url:
        monkeypatch.setenv("FORMULARY_DATABASE_URL", url)
    else:
        monkeypatch.delenv("FORMULARY_DATABASE_URL", raising=False)
    monkeypatch.delenv("FORMULARY_SECRET", raising=False)
    return Instance.from_env()


def _decision_records(instance: Instance) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for record in instance.audit.stream(Filters()):
        if record["kind"] == "decision":
            found.setdefault(record["decision_id"], []).append(record)
    return found


def _client_process(url, token, process_index, threads, per_thread, results):
    """One client process: `threads` threads, each sending `per_thread` distinct requests."""
    from .service_process import Service

    service = Service(None, int(url.rsplit(":", 1)[1]), "")
    sent = []
    lock = threading.Lock()

    def work(thread_index):
        for i in range(per_thread):
            ref = f"P-{process_index}-{thread_index}-{i}"
            code = CODES[(process_index + thread_index + i) % len(CODES)]
            age = (process_index * 7 + thread_index * 3 + i) % 90
            status, body = service.call(
                "POST",
                "/v1/decisions",
                token,
                {"diagnosis": {"code": code}, "patient": {"age_years": age, "sex": "female", "ref": ref}},
            )
            with lock:
                sent.append((ref, code, age, status, body.get("decision_id"), body.get("diagnosis", {}).get("input")))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(sent)


def test_8_client_processes_of_8_threads_lose_duplicate_or_misattribute_nothing(tmp_path, monkeypatch):
    instance = _instance(tmp_path / "instance", monkeypatch)
    with running_service(service_env(instance.path)) as service:
        token = admin_token(service.banner)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        clients = [
            context.Process(target=_client_process, args=(service.url, token, p, 8, 25, results)) for p in range(8)
        ]
        for client in clients:
            client.start()
        sent = [row for _ in clients for row in results.get(timeout=600)]
        for client in clients:
            client.join(60)
    assert len(sent) == 8 * 8 * 25
    assert all(status == 201 for *_, status, _, _ in sent), {row[3] for row in sent}
    assert all(echo == code for _, code, _, _, _, echo in sent)  # each response answers its own request
    records = _decision_records(instance)
    ids = [row[4] for row in sent]
    assert len(set(ids)) == len(ids)
    assert all(len(records[decision_id]) == 1 for decision_id in ids)  # each on file exactly once
    for ref, code, age, _, decision_id, _ in sent:  # and attributed to its patient
        record = records[decision_id][0]
        assert record["patient_ref_hash"] == instance.audit.patient_hash(ref)
        assert record["body"]["request"]["patient"]["age_years"] == age and record["code"] == code.replace(".", "")
    assert instance.audit.verify()["ok"]


def _load(service, token, acknowledged, stop):
    i = 0
    while not stop.is_set():
        i += 1
        try:
            status, body = service.call(
                "POST",
                "/v1/decisions",
                token,
                {"diagnosis": {"code": CODES[i % len(CODES)]}, "patient": {"age_years": i % 80}},
                timeout=10,
            )
        except OSError:
            time.sleep(0.05)
            continue
        if status == 201:
            acknowledged.append(body["decision_id"])


def test_kill_9_of_a_worker_then_the_server_loses_no_acknowledged_decision(tmp_path, monkeypatch):
    instance = _instance(tmp_path / "instance", monkeypatch)
    env = service_env(instance.path)
    acknowledged, stop = [], threading.Event()
    with running_service(env) as service:
        token = admin_token(service.banner)
        loaders = [threading.Thread(target=_load, args=(service, token, acknowledged, stop)) for _ in range(6)]
        for loader in loaders:
            loader.start()
        time.sleep(3)
        os.kill(service.worker_pids()[0], signal.SIGKILL)  # one worker dies mid-load; granian replaces it
        time.sleep(3)
        before_crash = len(acknowledged)
        kill(service.process, signal.SIGKILL)  # then the whole server
        stop.set()
        for loader in loaders:
            loader.join(30)
    assert before_crash > 50
    records = _decision_records(instance)
    missing = [d for d in acknowledged if d not in records]
    assert missing == [], f"{len(missing)} acknowledged decisions are not on the record"
    assert instance.audit.verify()["ok"]
    with running_service(env) as again:
        status, _ = again.call("POST", "/v1/decisions", token, {"diagnosis": {"code": "G61.0"}})
        assert status == 201


def _mount_tmpfs(path: Path, megabytes: int):
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to inject disk faults: {result.stderr.strip()}")


def _acknowledged_are_recorded(instance, acknowledged):
    records = _decision_records(instance)
    assert [d for d in acknowledged if d not in records] == []
    assert instance.audit.verify()["ok"]


def _decider(service, token: str, acknowledged: list):
    """decide(): POST one decision, (status, answer); each 201's decision id joins `acknowledged`."""

    def decide():
        status, answer = service.call(
            "POST", "/v1/decisions", token, {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 5}}
        )
        if status == 201:
            acknowledged.append(answer["decision_id"])
        return status, answer

    return decide


def test_sqlite_disk_full_gives_503_and_recovers(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 16)
    try:
        instance = _instance(disk / "instance", monkeypatch)
        acknowledged = []
        with running_service(service_env(instance.path)) as service:
            decide = _decider(service, admin_token(service.banner), acknowledged)
            assert decide()[0] == 201
            filler = disk / "filler"
            subprocess.run(
                ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True
            )  # until the disk is full
            answers = [decide() for _ in range(30)]
            statuses = {status for status, _ in answers}
            assert 503 in statuses and statuses <= {201, 503}, statuses
            assert all("outcome" not in answer for status, answer in answers if status == 503)
            filler.unlink()
            assert decide()[0] == 201
        _acknowledged_are_recorded(instance, acknowledged)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


FILE_CAPABILITIES = "-dac_override,-dac_read_search,-fowner"


def _with_file_permissions() -> list[str]:
    """A command prefix under which file permissions apply. Root ignores them, so a root test
    run drops the capabilities that let it (setpriv), as a service not run as root never had."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
    return ["setpriv", f"--bounding-set={FILE_CAPABILITIES}", f"--inh-caps={FILE_CAPABILITIES}"]


def _make_writable(instance_path: Path, writable: bool):
    """The instance folder and the database's files (database, WAL, shared memory, writers' lock)."""
    for path in [instance_path, *instance_path.glob("formulary.db*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


def _has_open(pid: int, path: Path) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except FileNotFoundError:  # closed since the listing
            continue
    return False


def test_sqlite_read_only_gives_503_and_recovers_without_a_restart(tmp_path, monkeypatch):
    instance = _instance(tmp_path / "instance", monkeypatch)
    prefix = _with_file_permissions()
    env = service_env(instance.path)
    acknowledged = []
    try:
        with running_service(env, command_prefix=prefix) as service:
            decide = _decider(service, admin_token(service.banner), acknowledged)
            assert decide()[0] == 201
            _make_writable(instance.path, False)
            refused = [decide() for _ in range(10)]
            assert {status for status, _ in refused} == {503}
            assert all(
                answer["error"]["code"] == "audit_unavailable" and "outcome" not in answer for _, answer in refused
            )
            assert service.call("GET", "/healthz")[0] == 503
            # A worker started during the fault opens the database read-only (on its first read),
            # and SQLite keeps such a connection read-only after the fault is gone.
            workers = service.worker_pids()
            os.kill(workers[0], signal.SIGKILL)
            fresh = service.replaced(workers[0], workers)
            deadline = time.time() + 60
            while not _has_open(fresh, instance.path / "formulary.db"):
                try:
                    assert service.call("GET", "/healthz", timeout=10)[0] == 503
                except OSError:  # once, a connection was refused while granian replaced the worker
                    time.sleep(0.2)
                assert time.time() < deadline, "the new worker never opened the database"
            _make_writable(instance.path, True)
            # Which worker takes a request is up to granian, so decide until the new worker's
            # access log line shows it recorded one. A worker's first write on a connection
            # opened read-only fails (503) and drops it: at most one 503 a worker.
            answered_by_fresh = f" {fresh} INFO service POST /v1/decisions 201 "
            statuses = []
            while answered_by_fresh not in (instance.path / "logs" / "service.log").read_text():
                assert len(statuses) < 400, f"the worker started during the fault never recorded a decision: {statuses}"
                statuses.append(decide()[0])
            assert statuses.count(503) <= 2, statuses
            assert service.call("GET", "/healthz")[0] == 200
        _acknowledged_are_recorded(instance, acknowledged)
        _make_writable(instance.path, False)  # the server refuses to start, naming the file it cannot write
        started = subprocess.run(
            [*prefix, str(FORMULARY), "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 1, started.stdout
        assert "cannot be opened and migrated" in started.stderr and "formulary.db" in started.stderr, started.stderr
        assert "Traceback" not in started.stderr
    finally:
        _make_writable(instance.path, True)


def _postgres_cluster(action: str):
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True, capture_output=True
    )


def test_postgresql_stopped_mid_run_gives_503_and_recovers(tmp_path, monkeypatch):
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL)
        schema = f"rel_{os.getpid()}"
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        engine.dispose()
    except Exception as error:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432: {type(error).__name__}")
    if not os.path.isdir("/etc/postgresql"):
        pytest.skip("no local PostgreSQL cluster to stop and start")
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    instance = _instance(tmp_path / "instance", monkeypatch, url)
    acknowledged = []
    try:
        with running_service(service_env(instance.path, url)) as service:
            decide = _decider(service, admin_token(service.banner), acknowledged)
            assert decide()[0] == 201
            _postgres_cluster("stop")
            status, answer = decide()
            assert status == 503 and answer["error"]["code"] in ("database_unavailable", "audit_unavailable")
            assert service.call("GET", "/healthz")[0] == 503
            _postgres_cluster("start")
            deadline = time.time() + 60
            while decide()[0] != 201:
                assert time.time() < deadline, "no decision succeeded within 60 s of PostgreSQL's start"
                time.sleep(1)
        _acknowledged_are_recorded(instance, acknowledged)
    finally:
        _postgres_cluster("start") if subprocess.run(
            ["pg_isready", "-h", "127.0.0.1"], capture_output=True
        ).returncode else None
        instance.sql_engine.dispose()  # its pooled connections, closed now rather than whenever they are collected
