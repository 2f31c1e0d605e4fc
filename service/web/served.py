"""The Flask app behind granian's RSGI interface, so that a slow client holds no thread.

Under granian's WSGI interface the app reads the request body on its own thread, as the bytes
arrive, with no time limit (granian has none for bodies: its issue 728, closed as wontfix). 64
clients trickling a form body a byte a second held all 64 threads, and nothing else was answered.
Here granian's event loop receives each request's whole body first, within `body_timeout` seconds
and the app's MAX_CONTENT_LENGTH; only then does one of `threads` threads run the Flask app on it.
A body not in by the deadline is answered 408 and its connection closed, without a thread or an
audit record. A body longer than the limit is not read past it: the app answers 413 as it always
did, from the length declared or, for a chunked body, the length received (the cut body's
length is past the limit, so it is refused, never read short).

Answers with a Content-Length go back whole; the others (the audit CSV download) stream from the
thread that made them, chunk by chunk, as they did under WSGI.
"""

import asyncio
import io
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

log = logging.getLogger("service")
_TIMED_OUT = json.dumps(
    {"error": {"code": "body_timeout", "message": "the request body did not arrive in time", "field": None}}
).encode()
_SPECIAL_HEADERS = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}


class BufferedApp:
    """An RSGI application serving a WSGI (Flask) app from whole, bounded request bodies."""

    def __init__(self, app: Flask, threads: int, body_timeout: float):
        self.app, self.body_timeout = app, body_timeout
        self.max_body: int = app.config["MAX_CONTENT_LENGTH"]
        self.larger_bodies: dict[str, int] = app.config.get("LARGER_BODIES", {})
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="request")

    def __rsgi_del__(self, loop) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def __rsgi__(self, scope, protocol) -> None:
        if scope.proto != "http":  # `formulary serve` turns websockets off
            return
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await self._body(scope, protocol)
        except TimeoutError:
            # not the path: it is the caller's, and could carry a forged log line
            log.warning("408 body not received within %gs: %s from %s", self.body_timeout, scope.method, scope.client)
            protocol.response_bytes(408, [("content-type", "application/json"), ("connection", "close")], _TIMED_OUT)
            return
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self.pool, self._run, wsgi_environ(scope, body), protocol, loop)
        if answer is not None:
            protocol.response_bytes(*answer)

    async def _body(self, scope, protocol) -> bytes:
        limit = self.larger_bodies.get(scope.path, self.max_body) if scope.method == "POST" else self.max_body
        declared = scope.headers.get("content-length")
        if declared is not None:  # granian has checked it is a number, and stops at it
            return b"" if int(declared) > limit else await protocol()
        chunks, size = [], 0
        async for chunk in protocol:  # chunked, or HTTP/2 without a length
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # enough for the app to refuse it
                break
        return b"".join(chunks)

    def _run(self, environ: dict, protocol, loop: asyncio.AbstractEventLoop) -> tuple[int, list, bytes] | None:
        """On a pool thread: the app's answer whole (status, headers, body), or None once streamed."""
        started: list[Any] = []

        def start_response(status: str, headers: list, exc_info=None):
            started[:] = [int(status.split(" ", 1)[0]), headers]
            return _no_write

        result = self.app(environ, start_response)  # Flask calls start_response before returning
        try:
            status, headers = started
            if any(name.lower() == "content-length" for name, _ in headers):
                return status, headers, b"".join(result)
            transport = asyncio.run_coroutine_threadsafe(_start_stream(protocol, status, headers), loop).result()
            for chunk in result:  # on this thread: a streamed answer keeps its app context here
                if chunk:
                    asyncio.run_coroutine_threadsafe(transport.send_bytes(chunk), loop).result()
            return None
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


async def _start_stream(protocol, status: int, headers: list):
    return protocol.response_stream(status, headers)


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the WSGI write() callable is not supported: return an iterable")


def wsgi_environ(scope, body: bytes) -> dict:
    """The WSGI environ of an RSGI request scope, as granian's WSGI interface builds it."""
    server, _, server_port = scope.server.rpartition(":")
    environ = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        # granian decodes the path as UTF-8; WSGI carries its bytes as latin-1
        "PATH_INFO": scope.path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": server.strip("[]"),
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": scope.client.rpartition(":")[0].strip("[]"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in scope.headers.items():
        key = _SPECIAL_HEADERS.get(name) or "HTTP_" + name.upper().replace("-", "_")
        if key in environ:  # a repeated header: cookies join with "; ", the others with ","
            environ[key] += ("; " if name == "cookie" else ",") + value
        else:
            environ[key] = value
    if body and "CONTENT_LENGTH" not in environ:  # chunked: its length as received, past the limit if cut there
        environ["CONTENT_LENGTH"] = str(len(body))
    if "HTTP_HOST" not in environ and scope.authority:
        environ["HTTP_HOST"] = scope.authority
    return environ
