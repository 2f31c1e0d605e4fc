"""`formulary serve` as `make run` starts it: granian workers on a fresh instance."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from service.rulebook.reader import load_rulebook

from .conftest import TEST_RULEBOOK
from .service_process import FORMULARY, admin_token, running_service, service_env


@pytest.mark.slow
def test_serve_creates_the_instance_prints_a_token_once_and_answers(tmp_path):
    env = service_env(tmp_path / "instance")
    with running_service(env) as service:
        token = admin_token(service.banner)
        assert f"Bearer {token}" in service.banner and "curl" in service.banner
        status, decision = service.call(
            "POST", "/v1/decisions", token, {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}}
        )
        assert status == 201 and decision["outcome"] == "off_label_with_evidence"
        assert decision["rulebook"]["name"] == load_rulebook(TEST_RULEBOOK).name  # service_env names it
    assert (tmp_path / "instance" / "formulary.db").exists()
    assert (tmp_path / "instance" / "secret").stat().st_mode & 0o777 == 0o600
    instance = tmp_path / "instance"  # the database, its -wal and -shm, the secret, the log: owner-only
    modes = {path: path.stat().st_mode & 0o777 for path in [instance, *instance.rglob("*")]}
    assert instance / "logs" / "service.log" in modes
    assert {path: oct(mode) for path, mode in modes.items() if mode != (0o700 if path.is_dir() else 0o600)} == {}
    with running_service(env) as again:
        assert "ivig_" not in again.banner  # the token is printed only once
    listed = subprocess.run([str(FORMULARY), "tokens", "list"], env=env, capture_output=True, text=True).stdout
    assert listed.count("admin") == 2  # one token, named admin with role admin


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_until(condition, seconds: float = 60) -> bool:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_a_killed_server_leaves_no_worker_serving(tmp_path):
    env = service_env(tmp_path / "instance")
    with running_service(env) as service:
        token = admin_token(service.banner)
        first, second = service.worker_pids()
        os.kill(first, signal.SIGKILL)
        service.replaced(first, [first, second])
        service.wait_healthy()
        assert service.call("POST", "/v1/decisions", token, {"diagnosis": {"code": "G61.0"}})[0] == 201
        workers = service.worker_pids()
        os.kill(service.process.pid, signal.SIGKILL)  # the main process alone dies, and cannot stop its workers
        service.process.wait(30)
        assert _wait_until(lambda: not any(_running(pid) for pid in workers), 30), "workers outlived their server"
        with pytest.raises(OSError):
            service.call("GET", "/healthz", timeout=2)
