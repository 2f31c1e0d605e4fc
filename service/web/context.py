"""What a request handler reaches for: the app's instance and served rulebook, who is asking,
and the JSON body, read once and checked."""

import json

from flask import current_app, g, request

from service.store.instance import Instance
from service.store.tokens import Principal
from service.web.errors import Refusal
from service.workflow.active_rulebook import ActiveRulebook


def current_instance() -> Instance:
    """The app's Instance (database, audit log, secret); the API and the console share it."""
    return current_app.extensions["instance"]


def active_rulebook() -> ActiveRulebook:
    """The app's ActiveRulebook: the version served now, and `use()` to hold one for a request."""
    return current_app.extensions["active_rulebook"]


def current_principal() -> Principal:
    """Who the guarded view was opened by (set by the API's and the console's guards)."""
    return g.principal


def json_body():
    """The request's JSON value; refused (415, 400) when it is not JSON or not valid Unicode."""
    if not request.is_json:
        raise Refusal(415, "unsupported_media_type", "send the request as JSON (Content-Type: application/json)")
    payload = request.get_json(silent=True)
    if payload is None:
        raise Refusal(400, "invalid_json", "the request body is not valid JSON")
    body = request.get_data(cache=True)
    if body.isascii() and b"\\u" not in body:
        return payload  # no escapes and no bytes beyond ASCII: no unpaired surrogate can be in it
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Refusal(
            400,
            "invalid_json",
            "the request body contains text that is not valid Unicode (an unpaired surrogate escape)",
        ) from None
    return payload
