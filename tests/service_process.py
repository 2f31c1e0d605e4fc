"""Running `formulary serve` as a real process (granian workers) for end-to-end tests."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from .conftest import TEST_RULEBOOK

FORMULARY = Path(sys.executable).with_name("formulary")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(instance: Path, database_url: str | None = None) -> dict:
    """The environment of a `formulary` child process: this instance, serving the test rulebook."""
    env = {**os.environ, "FORMULARY_INSTANCE_PATH": str(instance), "FORMULARY_RULEBOOK": str(TEST_RULEBOOK)}
    env.pop("FORMULARY_SECRET", None)
    env.pop("FORMULARY_DATABASE_URL", None)
    if database_url:
        env["FORMULARY_DATABASE_URL"] = database_url
    return env


class Service:
    def __init__(self, process: subprocess.Popen, port: int, banner: str):
        self.process, self.port, self.banner = process, port, banner
        self.url = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, token: str | None = None, body=None, timeout: float = 30):
        """(status, parsed JSON body) of one request; connection failures raise OSError."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def wait_healthy(self, seconds: float = 120):
        deadline = time.time() + seconds
        while True:
            try:
                if self.call("GET", "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"formulary serve exited with {self.process.returncode}:\n{self.banner}")
            if time.time() > deadline:
                raise TimeoutError("the service did not become healthy")
            time.sleep(0.3)

    def replaced(self, killed: int, workers: list[int], seconds: float = 60) -> int:
        """The worker granian started in place of `killed` (one of `workers`), once the server
        runs as many workers as before."""
        deadline = time.time() + seconds
        while True:
            current = set(self.worker_pids()) - {killed}  # a killed worker shows until it is reaped
            new = current - set(workers)
            if new and len(current) == len(workers):
                return new.pop()
            if time.time() > deadline:
                raise AssertionError(f"worker {killed} was not replaced within {seconds:.0f} s")
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


@contextmanager
def running_service(env: dict, workers: int = 2, command_prefix: Sequence[str] = ()):
    """Start `formulary serve` on a free port (after `command_prefix`, e.g. setpriv); yields a
    Service; kills the process group and closes its output pipe after (an unclosed pipe is a
    ResourceWarning, an error under the suite's warning filter)."""
    port = free_port()
    process = subprocess.Popen(
        [*command_prefix, str(FORMULARY), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    banner = ""
    drain = None
    try:
        # The token banner (first start only) comes before granian's own start-up lines.
        while "Listening at" not in banner:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"formulary serve stopped:\n{banner}")
            banner += line
        drain = threading.Thread(target=process.stdout.read, daemon=True)  # keep the pipe drained
        drain.start()
        service = Service(process, port, banner)
        service.wait_healthy()
        yield service
    finally:
        kill(process)
        if drain is not None:
            drain.join(30)  # the pipe ends once every process of the group has exited
        if drain is None or not drain.is_alive():  # closing under a blocked reader would hang
            process.stdout.close()


def kill(process: subprocess.Popen, sig=signal.SIGTERM):
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


def admin_token(banner: str) -> str:
    match = re.search(r"(ivig_[A-Za-z0-9_-]+)", banner)
    assert match, f"no admin token in the start-up banner:\n{banner}"
    return match.group(1)
