"""Slow and idle clients hold a connection, never a thread: the app behind granian's RSGI
interface receives each body whole, within a deadline and the size limit, before a thread runs
the Flask app (service/web/served.py); `formulary serve` closes slow connections."""

import asyncio
import csv
import io
import json
import selectors
import socket
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest
from flask import request as flask_request

from service.web.served import BufferedApp

from .conftest import bearer
from .service_process import admin_token, running_service, service_env


class Protocol:
    """A fake RSGI HTTP protocol: the body arrives in `chunks`, `gap` seconds apart."""

    def __init__(self, chunks=(), gap=0.0):
        self.chunks, self.gap = list(chunks), gap
        self.status = self.headers = self.body = None
        self.streamed: list[bytes] = []
        self.read = False

    async def __call__(self):
        return b"".join([chunk async for chunk in self])

    async def __aiter__(self):
        self.read = True
        for chunk in self.chunks:
            await asyncio.sleep(self.gap)
            yield chunk

    def response_bytes(self, status, headers, body):
        self.status, self.headers, self.body = status, dict(headers), body

    def response_stream(self, status, headers):
        self.status, self.headers = status, dict(headers)
        return SimpleNamespace(send_bytes=self._send)

    async def _send(self, data):
        self.streamed.append(data)


def scope(method="GET", path="/healthz", headers=None, query=""):
    return SimpleNamespace(
        proto="http",
        method=method,
        path=path,
        query_string=query,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        server="127.0.0.1:8000",
        client="10.1.2.3:40000",
        scheme="http",
        http_version="1.1",
        authority=None,
    )


def serve_one(app, request_scope, protocol, body_timeout=5.0):
    served = BufferedApp(app, threads=2, body_timeout=body_timeout)
    try:
        asyncio.run(served.__rsgi__(request_scope, protocol))
    finally:
        served.pool.shutdown()
    return protocol


def decision_body() -> bytes:
    return json.dumps({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}}).encode()


def test_a_body_trickled_past_the_deadline_is_answered_408_and_closed_without_running_the_app(app):
    called = []
    app.before_request(lambda: called.append(1))
    protocol = serve_one(
        app,
        scope("POST", "/console/sign-in", {"Content-Length": "100", "Content-Type": "text/plain"}),
        Protocol([b"a"] * 100, gap=0.05),
        body_timeout=0.3,
    )
    assert protocol.status == 408 and protocol.headers["connection"] == "close"
    assert json.loads(protocol.body)["error"]["code"] == "body_timeout"
    assert called == []


def test_a_whole_body_reaches_the_app_with_headers_remote_address_and_request_id(app, tokens):
    body = decision_body()
    seen = {}
    app.before_request(lambda: seen.update(remote=flask_request.remote_addr))
    headers = {
        "Content-Length": str(len(body)),
        "Content-Type": "application/json",
        "X-Request-Id": "trace-1",
        **bearer(tokens["clinician"]),
    }
    protocol = serve_one(app, scope("POST", "/v1/decisions", headers), Protocol([body[:10], body[10:]], gap=0.01))
    assert protocol.status == 201 and protocol.headers["X-Request-Id"] == "trace-1"
    assert json.loads(protocol.body)["outcome"] == "off_label_with_evidence"
    assert seen["remote"] == "10.1.2.3"


def test_a_declared_length_over_the_limit_is_413_without_reading_the_body(app, tokens):
    protocol = Protocol([b"x"] * 10)
    headers = {"Content-Length": str(10**9), "Content-Type": "application/json", **bearer(tokens["clinician"])}
    serve_one(app, scope("POST", "/v1/decisions", headers), protocol)
    assert protocol.status == 413 and not protocol.read


def test_a_chunked_body_over_the_limit_is_read_only_past_the_limit_and_refused_413(app, tokens):
    limit = app.config["MAX_CONTENT_LENGTH"]
    protocol = Protocol([b"x" * 1024] * (limit // 1024 + 100))  # no Content-Length: chunked
    serve_one(
        app,
        scope("POST", "/v1/decisions", {"Content-Type": "application/json", **bearer(tokens["clinician"])}),
        protocol,
    )
    assert protocol.status == 413 and len(protocol.chunks) == limit // 1024 + 100


def test_the_audit_csv_is_streamed_chunk_by_chunk(app, tokens, client):
    for _ in range(3):
        client.post("/v1/decisions", json={"diagnosis": {"code": "G61.0"}}, headers=bearer(tokens["clinician"]))
    protocol = serve_one(app, scope("GET", "/v1/audit.csv", bearer(tokens["auditor"])), Protocol())
    assert protocol.status == 200 and protocol.body is None and "Content-Length" not in protocol.headers
    streamed = list(csv.DictReader(io.StringIO(b"".join(protocol.streamed).decode())))
    whole = list(csv.DictReader(io.StringIO(client.get("/v1/audit.csv", headers=bearer(tokens["auditor"])).text)))
    decisions = [row for row in streamed if row["kind"] == "decision"]
    assert len(decisions) == 3 and decisions == [row for row in whole if row["kind"] == "decision"]


SLOW = 256  # connections: bodies trickled to the sign-in form and the API, half-sent headers, silent ones


@pytest.mark.long
def test_with_256_slow_or_idle_connections_open_healthz_and_a_decision_answer_within_a_second(tmp_path):
    with running_service(service_env(tmp_path / "instance")) as service:  # default timeouts: 10 s each
        token = admin_token(service.banner)
        kinds = [
            "POST /console/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 60000\r\n\r\n",
            f"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: x\r\n",  # headers never finished
            "",  # connected, silent: granian closes these only once they send a byte (not asserted)
        ]
        connections = []
        for i in range(SLOW):
            kind = kinds[i % 4 if i < 64 else i % 3]  # 16 silent ones, 240 that send something slowly
            connection = socket.create_connection(("127.0.0.1", service.port))
            connection.sendall(kind.encode())
            connections.append((kind, connection))
        opened = time.time()
        closed: dict[socket.socket, float] = {}
        stop = threading.Event()

        def trickle():  # one byte a second on each that sends, and note when the server closes one
            selector = selectors.DefaultSelector()
            for _, connection in connections:
                selector.register(connection, selectors.EVENT_READ)
            next_byte = 0.0
            while not stop.is_set():
                if time.time() >= next_byte:
                    next_byte = time.time() + 1
                    for kind, connection in connections:
                        if kind and connection not in closed:
                            try:
                                connection.send(b"a")
                            except OSError:
                                closed[connection] = time.time()
                for key, _ in selector.select(0.2):
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        closed.setdefault(key.fileobj, time.time())
                        selector.unregister(key.fileobj)

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            time.sleep(2)  # every slow connection is in, and has sent a byte or two more
            for path, body in (("/healthz", None), ("/v1/decisions", {"diagnosis": {"code": "G61.0"}})):
                request = urllib.request.Request(
                    service.url + path,
                    data=body and json.dumps(body).encode(),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                )
                started = time.time()
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status in (200, 201)
                assert time.time() - started < 1, f"{path} took {time.time() - started:.1f} s"
            sending = [c for kind, c in connections if kind]
            deadline = opened + 10 + 5  # the body and header timeouts, and some grace
            while time.time() < deadline and not all(c in closed for c in sending):
                time.sleep(0.2)
            assert all(c in closed for c in sending), f"{sum(c in closed for c in sending)} of {len(sending)} closed"
            assert max(closed[c] for c in sending) - opened < 10 + 5
        finally:
            stop.set()
            trickler.join(5)
            for _, connection in connections:
                connection.close()
