"""Order entry from the EHR (CDS Hooks): who is calling (the client's signed JWT, verified with
PyJWT against its keys), what the call lacks (fetched from the EHR's FHIR server when it allows),
and the decision of each IVIG order, recorded as any decision is (service/workflow/cases.py)
with the requester `<client iss>/<userId>`; feedback on the cards, recorded against their decisions.

The reading of the call and the cards are service/decide/order_entry.py.
"""

import datetime
import functools
import json
import logging
import threading
import time
from dataclasses import dataclass

import jwt

from service import clock
from service.decide import order_entry
from service.decide.formulary import Formulary
from service.decide.request import RequestError
from service.store import cds_clients
from service.workflow.cases import record_decision
from service.workflow.outbound import FetchError, get_json

log = logging.getLogger(__name__)
ALGORITHMS = ("ES384", "RS384", "ES256", "RS256")  # asymmetric only: never `none` or HMAC
SKEW_SECONDS = 60  # clocks may differ this much for exp and iat
MAX_LIFETIME_SECONDS = 3600  # a JWT valid longer than this (exp - iat) is refused
JKU_TIMEOUT, JKU_MAX_BYTES, JKU_CACHE_SECONDS = 2.0, 64 * 1024, 300
FHIR_TIMEOUT, FHIR_MAX_BYTES = 2.0, 1024 * 1024


class Refused(Exception):
    """A JWT that is not accepted; `code` is machine-readable, the message says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Caller:
    """A verified CDS Client."""

    iss: str
    client: dict
    claims: dict


_jku_cache: dict[str, tuple[float, dict]] = {}
_jku_lock = threading.Lock()


def _keys_at(jku: str) -> list[dict]:
    now = time.monotonic()
    with _jku_lock:
        cached = _jku_cache.get(jku)
    if cached and now - cached[0] < JKU_CACHE_SECONDS:
        return cached[1]["keys"]
    try:
        jwks = cds_clients.checked_jwks_value(get_json(jku, JKU_TIMEOUT, JKU_MAX_BYTES))
    except (FetchError, cds_clients.ClientError) as error:
        raise Refused("jwks_unavailable", f"the JWK Set at the client's jku could not be used: {error}") from None
    with _jku_lock:
        _jku_cache[jku] = (now, jwks)
    return jwks["keys"]


@functools.lru_cache(maxsize=64)
def _parsed_key(jwk_text: str, alg: str) -> jwt.PyJWK:
    return jwt.PyJWK(json.loads(jwk_text), algorithm=alg)


def _key(jwk: dict, alg: str) -> jwt.PyJWK:
    """The client's key as PyJWT uses it, parsed once per key and algorithm (keyed by the JWK's
    whole text, so a key changed or replaced is parsed anew) rather than on every call."""
    return _parsed_key(json.dumps(jwk, sort_keys=True), alg)


def verify(engine, token: str | None, audience: str) -> Caller:
    """The CDS Client a bearer JWT speaks for, or Refused with the reason (CDS Hooks "Trusting CDS Clients")."""
    if token is None:
        raise Refused("missing_token", "every call carries the client's signed JWT as 'Authorization: Bearer <JWT>'")
    try:
        unverified_jws = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        header, unverified = unverified_jws["header"], unverified_jws["payload"]
    except jwt.PyJWTError:
        raise Refused("malformed_token", "the bearer token is not a JWT (JWS compact serialisation)") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise Refused("algorithm_refused", f"alg {alg!r} is refused: use one of {', '.join(ALGORITHMS)}")
    if header.get("typ") != "JWT":
        raise Refused("malformed_token", "the JWT header's typ must be 'JWT'")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise Refused("malformed_token", "the JWT header names no kid")
    iss = unverified.get("iss")
    client = cds_clients.client(engine, iss) if isinstance(iss, str) and iss else None
    if client is None or not isinstance(iss, str):
        raise Refused("unknown_issuer", "the JWT's iss is not an allowed CDS client")
    jku = header.get("jku")
    if jku is not None and jku != client["jku"]:
        raise Refused("jku_refused", "the JWT header's jku is not the one allowed for this client")
    keys = [k for k in client["jwks"]["keys"] if k.get("kid") == kid]
    if not keys and client["jku"]:
        keys = [k for k in _keys_at(client["jku"]) if k.get("kid") == kid]
    if not keys:
        raise Refused("unknown_key", f"no key {kid!r} in the client's JWK Set")
    try:
        key = _key(keys[0], alg)
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=iss,
            leeway=SKEW_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise Refused("expired_token", "the JWT has expired (exp)") from None
    except jwt.InvalidAudienceError:
        raise Refused("wrong_audience", f"the JWT's aud is not this service's URL ({audience})") from None
    except jwt.ImmatureSignatureError:
        raise Refused("future_token", "the JWT is issued in the future (iat)") from None
    except jwt.MissingRequiredClaimError as error:
        raise Refused("missing_claim", f"the JWT lacks the {error.claim} claim") from None
    except jwt.InvalidSignatureError:
        raise Refused("bad_signature", "the JWT's signature does not verify with the client's key") from None
    except (jwt.PyJWTError, ValueError) as error:
        raise Refused("invalid_token", f"the JWT is not valid ({type(error).__name__})") from None
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 256:
        raise Refused("missing_claim", "the JWT's jti must be text of 1 to 256 characters")
    if claims["exp"] - claims["iat"] > MAX_LIFETIME_SECONDS:
        raise Refused("lifetime_too_long", f"the JWT is valid for more than {MAX_LIFETIME_SECONDS} seconds (exp - iat)")
    expires = clock.stamp(datetime.datetime.fromtimestamp(claims["exp"] + SKEW_SECONDS, datetime.UTC))
    if not cds_clients.first_use(engine, iss, claims["jti"], expires):
        raise Refused("replayed_token", "this JWT (its jti) was used before: each call carries a new one")
    return Caller(iss, client, claims)


# --- a hook call ------------------------------------------------------------------------------


def _allowed_server(url: str, client: dict) -> bool:
    return url.rstrip("/") in client["fhir_servers"]


def chart_for(call: order_entry.HookCall, templates: dict[str, str], caller: Caller) -> order_entry.Chart:
    """The prefetch, and what it lacks fetched from the EHR's FHIR server when the call allows it."""
    chart = order_entry.Chart()
    for key, value in call.prefetch.items():
        chart.resources[key] = order_entry.resources_of(value)
    missing = order_entry.missing_keys(call, templates)
    if not missing:
        return chart
    if call.fhir_server is None or call.access_token is None:
        for key in missing:
            chart.unavailable[key] = "not in prefetch, and the call gives no fhirServer and fhirAuthorization"
        return chart
    if not _allowed_server(call.fhir_server, caller.client):
        for key in missing:
            chart.unavailable[key] = "not in prefetch, and the call's fhirServer is not one allowed for this client"
        return chart
    headers = {"Authorization": f"Bearer {call.access_token}", "Accept": "application/fhir+json"}
    for key in missing:
        url = f"{call.fhir_server.rstrip('/')}/{order_entry.rendered(templates[key], call)}"
        try:
            chart.resources[key] = order_entry.resources_of(get_json(url, FHIR_TIMEOUT, FHIR_MAX_BYTES, headers))
        except FetchError as error:
            chart.unavailable[key] = f"not in prefetch, and fetching it failed: {error}"
    return chart


def answer(instance, formulary: Formulary, call: order_entry.HookCall, caller: Caller, base: str) -> dict:
    """The cards for a hook call: one per IVIG order, each decided and recorded."""
    rulebook = formulary.rulebook
    orders = order_entry.ivig_orders(call, rulebook)
    if not orders:
        return {"cards": []}
    templates = order_entry.prefetch_templates(rulebook.order_entry)
    chart = chart_for(call, templates, caller)
    requester = f"{caller.iss}/{call.user_id}"
    cards = []
    for order in orders:
        built = order_entry.build_request(order, call, chart, rulebook, formulary.vocabulary)
        origin = {
            "via": "cds-hooks",
            "service": call.service_id,
            "hook": call.hook,
            "hookInstance": call.hook_instance,
            "client": caller.iss,
            "userId": call.user_id,
            "order": order.reference,
            "not_available": built.not_read,
        }
        decision = problem = None
        if built.payload is None:
            problem = "The order does not say what IVIG is for (its indication), so the rules cannot decide it."
        else:
            try:
                decision = record_decision(instance, formulary, built.payload, requester, origin=origin)
            except RequestError as error:
                problem = f"The order's facts could not be used: {error.message}."
        alternatives = order_entry.labelled_alternatives(formulary, built.payload, decision)
        result = order_entry.card(decision, order, built, rulebook, base, problem, alternatives)
        if decision is None:
            instance.audit.append(
                "cds_order_undecided",
                {"origin": origin, "card": result["uuid"], "problem": problem, "request": built.payload},
                requester=requester,
                status=200,
            )
        cards.append(result)
    return {"cards": cards}


def record_feedback(instance, call_service: str, items: list[dict], caller: Caller) -> list[dict]:
    """Each feedback item as an audit record, linked to the decision its card was (card uuid = decision id)."""
    recorded = []
    for item in items:
        decision = instance.audit.decision(item["card"])
        decision_id = item["card"] if decision is not None else None
        body = {"service": call_service, "client": caller.iss, "feedback": item, "decision_id": decision_id}
        record = instance.audit.append(
            "cds_feedback",
            body,
            requester=caller.iss,
            status=200,
            outcome=decision["body"]["decision"]["outcome"] if decision else None,
            rule_id=decision["rule_id"] if decision else None,
            code=decision["code"] if decision else None,
            patient_ref_hash=decision["patient_ref_hash"] if decision else None,
        )
        recorded.append({"card": item["card"], "decision_id": decision_id, "record_id": record["id"]})
    return recorded
