"""What a request handler reaches for: the app's instance and served rulebook, who is asking,
and the JSON body, read once and checked."""

import json
import re

from flask import current_app, g, request

from service.store.instance import Instance
from service.store.tokens import Principal
from service.web.errors import Refusal
from service.workflow.active_rulebook import ActiveRulebook

# The deepest JSON any request needs is 4 levels (a batch: list > order > therapies > list); the
# parser recurses once a level, and past about 1,000 it fails with an error that is no answer.
MAX_JSON_DEPTH = 16
_JSON_STRUCTURE = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)  # an escape (skipped whole), a quote, a bracket


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
    if _too_deep(request.get_data(cache=True)):
        raise Refusal(400, "json_too_deep", f"the request body nests JSON more than {MAX_JSON_DEPTH} levels deep")
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


def _too_deep(body: bytes) -> bool:
    """Does the body open more than MAX_JSON_DEPTH arrays and objects inside one another? Read
    before parsing, so a body built to exhaust the parser is refused cheaply."""
    depth, in_string = 0, False
    for token in _JSON_STRUCTURE.findall(body):
        if token == b'"':
            in_string = not in_string
        elif in_string or token[0] == 0x5C:  # brackets inside a string, or an escape
            continue
        elif token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False
