"""API tokens: created and revoked from the CLI, presented as `Authorization: Bearer <token>`.

Only a SHA-256 of each token is stored (tokens are 256 random bits, so no salt or slow hash is
needed); the token itself is shown once, when it is created.
"""
import hashlib
import re
import secrets

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .db import utc_now, writing
from .schema import api_tokens

ROLES = ("clinician", "pharmacist", "auditor", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenError(ValueError):
    """A token request that cannot be carried out; the message says why."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str, role: str) -> str:
    """Store a new token for `name` with `role` and return it (the only time it is visible)."""
    if not _NAME.match(name):
        raise TokenError(f"token name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    if role not in ROLES:
        raise TokenError(f"role {role!r} is not one of {', '.join(ROLES)}")
    token = "ivig_" + secrets.token_urlsafe(32)
    try:
        with writing(engine) as connection:
            connection.execute(insert(api_tokens).values(
                name=name, role=role, token_hash=digest(token), created_at=utc_now()))
    except IntegrityError:
        raise TokenError(f"a token named {name!r} exists already; revoke it first or pick another name") from None
    return token


def revoke_token(engine: Engine, name: str) -> None:
    with writing(engine) as connection:
        result = connection.execute(update(api_tokens).where(
            api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)).values(revoked_at=utc_now()))
    if result.rowcount == 0:
        raise TokenError(f"no active token named {name!r}")


def principal_for(engine: Engine, token: str) -> tuple[str, str] | None:
    """(name, role) of the active token, or None for an unknown or revoked one."""
    return principal_for_digest(engine, digest(token))


def principal_for_digest(engine: Engine, token_digest: str) -> tuple[str, str] | None:
    """As principal_for, from the digest the console's session keeps instead of the token."""
    with engine.connect() as connection:
        row = connection.execute(select(api_tokens.c.name, api_tokens.c.role).where(
            api_tokens.c.token_hash == token_digest, api_tokens.c.revoked_at.is_(None))).first()
    return None if row is None else (row.name, row.role)


def any_token(engine: Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(select(api_tokens.c.id).limit(1)).first() is not None


def list_tokens(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(api_tokens).order_by(api_tokens.c.id)).all()
    return [{"name": r.name, "role": r.role, "created_at": r.created_at, "revoked_at": r.revoked_at} for r in rows]
