"""The API's guard: a bearer token whose role the role table allows for the endpoint's action."""

from functools import wraps

from flask import g, request

from service.store.tokens import principal_for
from service.web import access, roles
from service.web.context import current_instance
from service.web.errors import Refusal


def bearer_token() -> str | None:
    """The token of the request's 'Authorization: Bearer <token>' header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def requires(action: str):
    """Only a valid bearer token whose role may do `action` may call the endpoint (401 / 403)."""

    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            token = bearer_token()
            if token is None:
                raise Refusal(
                    401,
                    "unauthenticated",
                    "send an API token as 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            g.principal = principal_for(current_instance().sql_engine, token)
            if g.principal is None:
                raise Refusal(
                    401,
                    "invalid_token",
                    "the API token is unknown or revoked",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            if not roles.may(g.principal, action):
                raise Refusal(403, "forbidden", f"the role '{g.principal.role}' may not do this")
            return access.answer(action, view, args, kwargs)

        return guarded

    return decorate
