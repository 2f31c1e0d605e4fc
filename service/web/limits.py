"""Anonymous refusals: a limit per client address, and one summary record per client and window.

A refusal (4xx) of a request with no known requester (no credentials, an unknown or revoked
token, a failed console sign-in, a path that is no endpoint) counts against its client address in
fixed windows of ANON_WINDOW seconds (FORMULARY_ANON_WINDOW, default 60), aligned to the clock.
The window's first refusal of an address is an audit record of its own, at once; the others are
counted, and when the window has closed they become one chained `refusals_summary` record: the
address, the window, the counts by status and by error code, the first and last method and path.
After ANON_LIMIT refusals (FORMULARY_ANON_LIMIT, default 60) in a window, the address's requests
without valid credentials are answered 429 with Retry-After (the rest of the window), counted
the same way; a request with a valid API token or console session is never limited, and /healthz
and /openapi.json never are. A blocked address cannot sign in to the console until its window ends.

The client address is the connection's (request.remote_addr); X-Forwarded-For is trusted only for
as many proxies as FORMULARY_TRUSTED_PROXIES says (default 0: behind a proxy that is not
declared, every client shares the proxy's address). IPv6 addresses count by their /64.

Each worker process keeps its own counts, so with W workers an address gets at most W x the limit
of refusals a window and the log at most 2 x W records an address a window. A summary is written
by the first request after its window (any client's), by a thread in a served worker while
requests are few, and when the worker stops; a worker killed outright loses the counts of its
open window (its first refusal per address is already on file). Past MAX_CLIENTS addresses in one
window, further new addresses are counted together under the client "other addresses".
"""

import datetime
import ipaddress
import logging
import math
import threading
from collections import Counter
from dataclasses import dataclass, field

from flask import request

from service import clock
from service.store.audit import AuditStore
from service.store.tokens import principal_for
from service.web.api.guard import bearer_token
from service.web.console import auth as console_auth
from service.web.context import current_instance
from service.web.errors import Refusal, is_console

MAX_CLIENTS = 10_000  # addresses counted apart in one window, per worker
OTHER_CLIENTS = "other addresses"
log = logging.getLogger("service")


@dataclass
class _Window:
    """One address's anonymous refusals in one window."""

    start: float
    refused: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_code: Counter = field(default_factory=Counter)
    first: dict | None = None
    last: dict | None = None
    recorded: int = 0  # of them on the record on their own


class AnonymousRefusals:
    def __init__(self, audit: AuditStore, limit: int, window_seconds: int):
        self.audit, self.limit, self.window = audit, limit, window_seconds
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._flushed_before: float | None = None  # every window that started earlier is written
        self._thread: threading.Thread | None = None

    def _start_of_window(self, now: float) -> float:
        return math.floor(now / self.window) * self.window

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client`'s window ends when it has used up its limit, else None."""
        now = clock.now().timestamp()
        with self._lock:
            window = self._windows.get(client) or self._windows.get(OTHER_CLIENTS)
            if window is None or window.start != self._start_of_window(now) or window.refused < self.limit:
                return None
        return max(math.ceil(window.start + self.window - now), 1)

    def note(self, client: str, status: int, code: str | None, method: str, path: str) -> bool:
        """Count one anonymous refusal; True when it is the first of its address in this window,
        to be recorded on its own. Summaries of windows that have closed are written first."""
        self.flush()
        moment = clock.now()
        start = self._start_of_window(moment.timestamp())
        seen = {"at": clock.stamp(moment), "method": method, "path": path}
        with self._lock:
            window = self._windows.get(client)
            if window is None and len(self._windows) >= MAX_CLIENTS:
                client = OTHER_CLIENTS
                window = self._windows.get(client)
            if window is None or window.start != start:
                window = self._windows[client] = _Window(start, first=seen, recorded=int(client != OTHER_CLIENTS))
            window.refused += 1
            window.by_status[str(status)] += 1
            window.by_code[code or "none"] += 1
            window.last = seen
            return window.refused == 1 and window.recorded == 1

    def flush(self, closing: bool = False):
        """Write the summaries of the windows that have closed (every window when `closing`).
        A summary that cannot be written stays, to be written at the next flush."""
        start = self._start_of_window(clock.now().timestamp())
        with self._lock:
            if not closing and self._flushed_before == start:
                return
            self._flushed_before = start
            done = [(c, w) for c, w in self._windows.items() if closing or w.start < start]
            for client, _ in done:
                del self._windows[client]
        for number, (client, window) in enumerate(done):
            if window.refused == window.recorded:
                continue  # the one refusal is on the record already
            try:
                self.audit.append("refusals_summary", self._summary(client, window))
            except Exception as error:
                log.error("refusal summaries not written yet (%s); kept to try again", type(error).__name__)
                with self._lock:
                    self._flushed_before = None
                    for later_client, later in done[number:]:
                        self._windows.setdefault(later_client, later)
                return

    def _summary(self, client: str, window: _Window) -> dict:
        end = window.start + self.window
        return {
            "client": client,
            "window": {"start": _stamp(window.start), "end": _stamp(end)},
            "limit": self.limit,
            "refused": window.refused,
            "recorded_individually": window.recorded,
            "by_status": dict(window.by_status),
            "by_code": dict(window.by_code),
            "first": window.first,
            "last": window.last,
        }

    def flush_in_background(self):
        """In a served worker: a thread writes closed windows' summaries while requests are few,
        and all of them once the worker's main thread has ended (the thread is not a daemon, so
        the worker's exit waits for it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="refusal-summaries")
            self._thread.start()

    def _run(self):
        main = threading.main_thread()
        while main.is_alive():
            main.join(min(self.window, 5))
            if main.is_alive():
                self.flush()
        self.flush(closing=True)


def _stamp(seconds: float) -> str:
    return clock.stamp(datetime.datetime.fromtimestamp(seconds, datetime.UTC))


def client_address() -> str:
    """The address a request's refusals count against (IPv6 by its /64)."""
    address = request.remote_addr or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


def _has_valid_credentials() -> bool:
    """A valid API token, or a console session of one (the sign-in form's token is not looked at)."""
    token = bearer_token()
    if token is not None:
        return principal_for(current_instance().sql_engine, token) is not None
    return is_console(request.path) and console_auth.signed_in_principal() is not None


def refuse_if_limited(limiter: AnonymousRefusals):
    """Before a request to the API or the console: 429 when its address is over its limit and
    the request has no valid credentials."""
    if not (request.path.startswith("/v1/") or is_console(request.path)):
        return
    seconds = limiter.retry_after(client_address())
    if seconds is not None and not _has_valid_credentials():
        raise Refusal(
            429,
            "rate_limited",
            f"too many refused requests from your address; try again in {seconds} seconds",
            headers={"Retry-After": str(seconds)},
        )
