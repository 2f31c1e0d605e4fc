"""`formulary serve` as `make run` starts it: gunicorn workers on a fresh instance."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

FORMULARY = Path(sys.executable).with_name("formulary")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_serve_creates_the_instance_prints_a_token_once_and_answers(tmp_path):
    port = _free_port()
    env = {**os.environ, "FORMULARY_INSTANCE_PATH": str(tmp_path / "instance")}
    env.pop("FORMULARY_DATABASE_URL", None)
    env.pop("FORMULARY_SECRET", None)
    server = subprocess.Popen([str(FORMULARY), "serve", "--port", str(port), "--workers", "2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        banner = ""
        while "curl" not in banner:
            line = server.stdout.readline()
            assert line, f"serve stopped before printing its token:\n{banner}"
            banner += line
        token = re.search(r"(ivig_[A-Za-z0-9_-]+)", banner).group(1)
        assert f"Bearer {token}" in banner
        threading.Thread(target=server.stdout.read, daemon=True).start()   # keep the pipe drained
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert json.load(response)["status"] == "ok"
                break
            except OSError:
                assert time.time() < deadline, "the service did not come up"
                time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/decisions", method="POST",
            data=json.dumps({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201 and json.load(response)["outcome"] == "off_label_with_evidence"
        assert (tmp_path / "instance" / "formulary.db").exists()
        assert (tmp_path / "instance" / "secret").stat().st_mode & 0o777 == 0o600
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    again = subprocess.run([str(FORMULARY), "tokens", "list"], env=env, capture_output=True, text=True)
    assert again.stdout.count("admin") == 2   # one token, named admin, role admin: not created twice
