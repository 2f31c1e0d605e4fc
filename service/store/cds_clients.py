"""CDS Hooks clients: the EHRs allowed to call the CDS Hooks service, each with its JWK Set, and
the jti of every JWT accepted until it expires.

Adding and removing a client is an audit record (`cds_client_added`, `cds_client_removed`),
committed with the change. A client is found by its `iss`; its keys are its inline JWK Set, and
its `jku` (if any) is the one URL its keys may also be fetched from.

The jti store is a nonce table, not a record of a fact: each accepted JWT's (iss, jti) is
inserted in its own transaction, so a second use anywhere (another worker, another host on the
same PostgreSQL) violates the primary key and is refused. Rows past their expiry are deleted.
"""

import json
import time
import weakref
from urllib.parse import urlsplit

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from service import clock
from service.store.audit import AuditStore
from service.store.database import writing
from service.store.tables import cds_clients, cds_jtis

MAX_KEYS = 20
PRUNE_SECONDS = 60
_pruned: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()  # when each engine last pruned
_INSERT_JTI = insert(cds_jtis)
_CLIENT = select(cds_clients).where(cds_clients.c.iss == bindparam("iss"))  # built once: read on every hook call


class ClientError(ValueError):
    """A client request that cannot be carried out; the message says why."""


def checked_jwks(text: str) -> dict:
    """A JWK Set of public keys, as JSON text: refused when it is not one, or holds a private or symmetric key."""
    try:
        jwks = json.loads(text)
    except ValueError:
        raise ClientError("the JWK Set is not JSON") from None
    return checked_jwks_value(jwks)


def checked_jwks_value(jwks) -> dict:
    """checked_jwks for a JWK Set already read from JSON (one fetched from a client's jku)."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > MAX_KEYS:
        raise ClientError(f'a JWK Set is {{"keys": [...]}} with 1 to {MAX_KEYS} keys')
    for i, key in enumerate(keys):
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ClientError(f"keys[{i}]: only RSA and EC public keys are accepted (kty)")
        if "d" in key:
            raise ClientError(f"keys[{i}] is a private key: give the client's public keys only")
        if not isinstance(key.get("kid"), str):
            raise ClientError(f"keys[{i}] has no kid: the JWT header names its key by kid")
    return {"keys": keys}


def _checked_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ClientError(f"{what} must be an http(s) URL, found {url!r}")
    return url


def add_client(
    engine: Engine, audit: AuditStore, iss: str, jwks_text: str, jku: str | None, fhir_servers: list[str], by: str
) -> dict:
    if not iss or len(iss) > 256:
        raise ClientError("iss must be 1 to 256 characters")
    jwks = checked_jwks(jwks_text)
    if jku is not None:
        _checked_url(jku, "jku")
    servers = [_checked_url(url, "fhir server").rstrip("/") for url in fhir_servers]
    row = {
        "iss": iss,
        "jwks": json.dumps(jwks, sort_keys=True),
        "jku": jku,
        "fhir_servers": json.dumps(servers),
        "added_at": clock.utc_now(),
        "added_by": by,
    }

    def store(connection):
        try:
            connection.execute(insert(cds_clients).values(**row))
        except IntegrityError:
            raise ClientError(f"a client with iss {iss!r} exists already: remove it first") from None

    kids = [key["kid"] for key in jwks["keys"]]
    added = {"iss": iss, "kids": kids, "jku": jku, "fhir_servers": servers}
    audit.append("cds_client_added", added, then=store, requester=by)
    return added


def remove_client(engine: Engine, audit: AuditStore, iss: str, by: str) -> None:
    def store(connection):
        if connection.execute(delete(cds_clients).where(cds_clients.c.iss == iss)).rowcount != 1:
            raise ClientError(f"no client with iss {iss!r}")

    audit.append("cds_client_removed", {"iss": iss}, then=store, requester=by)


def list_clients(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(cds_clients).order_by(cds_clients.c.id)).all()
    return [
        {
            "iss": r.iss,
            "kids": [k["kid"] for k in json.loads(r.jwks)["keys"]],
            "jku": r.jku,
            "fhir_servers": json.loads(r.fhir_servers),
            "added_at": r.added_at,
            "added_by": r.added_by,
        }
        for r in rows
    ]


def client(engine: Engine, iss: str) -> dict | None:
    """The client with this iss: {iss, jwks, jku}, or None."""
    with engine.connect() as connection:
        row = connection.execute(_CLIENT, {"iss": iss}).first()
    if row is None:
        return None
    return {"iss": row.iss, "jwks": json.loads(row.jwks), "jku": row.jku, "fhir_servers": json.loads(row.fhir_servers)}


def first_use(engine: Engine, iss: str, jti: str, expires_at: str) -> bool:
    """Remember (iss, jti) until `expires_at` (ISO UTC text); False when it was seen before.

    The jtis past their time are deleted at most once every PRUNE_SECONDS per process, not with
    every call: a JWT that old is refused for its exp before its jti is looked at."""
    now = time.monotonic()
    prune = now - _pruned.get(engine, -PRUNE_SECONDS) >= PRUNE_SECONDS
    try:
        with writing(engine) as connection:
            if prune:
                connection.execute(delete(cds_jtis).where(cds_jtis.c.expires_at < clock.utc_now()))
            connection.execute(_INSERT_JTI, {"iss": iss, "jti": jti, "expires_at": expires_at})
    except IntegrityError:
        return False
    if prune:
        _pruned[engine] = now
    return True
