"""API tokens: created and revoked from the CLI, presented as `Authorization: Bearer <token>`.

Only a SHA-256 of each token is stored (tokens are 256 random bits, so no salt or slow hash is
needed); the token itself is shown once, when it is created.

Revocation and the lookup cache: `principal_for` (every API request) remembers a valid token's
name and role in the process for at most CACHE_SECONDS (1 s), so a request costs no query.
- A token revoked through `revoke_token` in this process is refused by this process at once
  (revoking empties the cache, and a lookup that raced the revocation is not kept).
- A token revoked anywhere else (`formulary tokens revoke`, another worker or host) is refused
  by every process at most CACHE_SECONDS after the revocation commits.
- Unknown and revoked tokens are never remembered: each such request asks the database.
`principal_for_digest` (the console's session check) always asks the database.
"""

import hashlib
import re
import secrets
import threading
import time
import weakref
from typing import NamedTuple

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from service import clock
from service.store.audit import AuditStore
from service.store.database import writing
from service.store.tables import api_tokens, console_sessions

ROLES = ("clinician", "pharmacist", "auditor", "committee", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
CACHE_SECONDS = 1.0  # the longest a process keeps accepting a token revoked by another process
_MAX_CACHED = 4096  # valid tokens remembered per database at most (only valid ones are kept)
_LOOKUP = select(api_tokens.c.name, api_tokens.c.role).where(
    api_tokens.c.token_hash == bindparam("token_hash"), api_tokens.c.revoked_at.is_(None)
)


class Principal(NamedTuple):
    """Who a valid token speaks for: the name recorded as requester, and the role that says what they may do."""

    name: str
    role: str


class TokenError(ValueError):
    """A token request that cannot be carried out; the message says why."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _written(engine: Engine, audit: AuditStore | None, kind: str, body: dict, by: str, store) -> None:
    """Run `store(connection)` in a write transaction; with `audit`, in the one that commits the
    record of it (`kind`, by `by`), so the change and its record are kept together or not at all."""
    if audit is None:
        with writing(engine) as connection:
            store(connection)
    else:
        audit.append(kind, body, then=store, requester=by)


def create_token(engine: Engine, name: str, role: str, audit: AuditStore | None = None, by: str = "cli") -> str:
    """Store a new token for `name` with `role` and return it (the only time it is visible).
    With `audit`, a `token_created` record (name, role, by whom; never the token) commits with it."""
    if not _NAME.match(name):
        raise TokenError(f"token name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    if role not in ROLES:
        raise TokenError(f"role {role!r} is not one of {', '.join(ROLES)}")
    token = "ivig_" + secrets.token_urlsafe(32)

    def store(connection):
        try:
            connection.execute(
                insert(api_tokens).values(name=name, role=role, token_hash=digest(token), created_at=clock.utc_now())
            )
        except IntegrityError:
            raise TokenError(f"a token named {name!r} exists already; revoke it first or pick another name") from None

    _written(engine, audit, "token_created", {"name": name, "role": role}, by, store)
    return token


def revoke_token(engine: Engine, name: str, audit: AuditStore | None = None, by: str = "cli") -> None:
    """Revoke the active token called `name`; with `audit`, on the record as `token_revoked`."""
    principal = active_token_named(engine, name)
    if principal is None:
        raise TokenError(f"no active token named {name!r}")

    def store(connection):
        result = connection.execute(
            update(api_tokens)
            .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=clock.utc_now())
        )
        if result.rowcount == 0:  # revoked by someone else since it was read
            raise TokenError(f"no active token named {name!r}")

    _written(engine, audit, "token_revoked", {"name": name, "role": principal.role}, by, store)
    forget_cached_principals()  # after the commit: this process refuses the token from now on


def open_session(audit: AuditStore, principal: Principal, token_digest: str, expired_before: str) -> str:
    """Open a console session for the token and put the sign-in on the record (`sign_in`, by the
    token's name), in one transaction; returns the session id, for the signed cookie only.
    Sessions created before `expired_before` (ISO UTC text) are deleted on the way."""
    session_id = secrets.token_urlsafe(32)

    def store(connection):
        connection.execute(delete(console_sessions).where(console_sessions.c.created_at < expired_before))
        connection.execute(
            insert(console_sessions).values(
                id_hash=digest(session_id), token_hash=token_digest, created_at=clock.utc_now()
            )
        )

    audit.append("sign_in", {"role": principal.role}, then=store, requester=principal.name)
    return session_id


def close_session(audit: AuditStore, principal: Principal, session_id: str) -> None:
    """End the console session (its cookie opens nothing from now on), on the record as `sign_out`."""

    def store(connection):
        connection.execute(delete(console_sessions).where(console_sessions.c.id_hash == digest(session_id)))

    audit.append("sign_out", {"role": principal.role}, then=store, requester=principal.name)


def session_principal(engine: Engine, session_id: str) -> Principal | None:
    """The Principal of an open console session whose token is still active, or None."""
    query = (
        select(api_tokens.c.name, api_tokens.c.role)
        .join(console_sessions, console_sessions.c.token_hash == api_tokens.c.token_hash)
        .where(console_sessions.c.id_hash == digest(session_id), api_tokens.c.revoked_at.is_(None))
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else Principal(row.name, row.role)


# engine -> {token digest: (monotonic time the answer expires, (name, role))}
_cache: "weakref.WeakKeyDictionary[Engine, dict[str, tuple[float, Principal]]]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
_generation = 0  # bumped by every revocation in this process; a lookup that spans one is not kept


def principal_for(engine: Engine, token: str) -> Principal | None:
    """The Principal of the active token, or None for an unknown or revoked one.

    A valid token's answer is remembered for CACHE_SECONDS (1 s), counted from before the query
    that found it: a revocation by another process takes effect here within 1 s, one by this
    process (`revoke_token`) at once. A None answer is never remembered.
    """
    token_digest = digest(token)
    entries = _cache.get(engine)
    if entries is not None:
        hit = entries.get(token_digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    generation, asked_at = _generation, time.monotonic()
    principal = principal_for_digest(engine, token_digest)
    if principal is not None:
        with _cache_lock:
            if generation == _generation:
                entries = _cache.setdefault(engine, {})
                if len(entries) >= _MAX_CACHED:
                    entries.clear()
                entries[token_digest] = (asked_at + CACHE_SECONDS, principal)
    return principal


def forget_cached_principals() -> None:
    """Empty this process's token cache: every token is looked up again at its next use."""
    global _generation
    with _cache_lock:
        _generation += 1
        _cache.clear()


def principal_for_digest(engine: Engine, token_digest: str) -> Principal | None:
    """As principal_for, from the digest the console's session keeps instead of the token."""
    with engine.connect() as connection:
        row = connection.execute(_LOOKUP, {"token_hash": token_digest}).first()
    return None if row is None else Principal(row.name, row.role)


def active_token_named(engine: Engine, name: str) -> Principal | None:
    """The Principal of the unrevoked token called `name`, or None."""
    query = select(api_tokens.c.name, api_tokens.c.role).where(
        api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else Principal(row.name, row.role)


def any_token(engine: Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(select(api_tokens.c.id).limit(1)).first() is not None


def list_tokens(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(api_tokens).order_by(api_tokens.c.id)).all()
    return [{"name": r.name, "role": r.role, "created_at": r.created_at, "revoked_at": r.revoked_at} for r in rows]
