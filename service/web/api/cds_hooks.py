"""CDS Hooks 2.0 for EHR order entry: discovery, the two IVIG services, and feedback. Every call
carries the EHR's signed JWT (service/workflow/order_entry.py verifies it); a refused JWT is 401
with the reason, and on the audit record as every refusal is (service/web/middleware.py)."""

from flask import Blueprint, current_app, g, jsonify, request

from service.decide import order_entry as reading
from service.store.tokens import Principal
from service.web.api.guard import bearer_token
from service.web.context import active_rulebook, current_instance, json_body
from service.web.errors import Refusal
from service.workflow import order_entry

blueprint = Blueprint("cds_hooks", __name__)
PREFIX = "/cds-services"


def service_url() -> str:
    """This endpoint's exact URL, as the JWT's aud must name it: FORMULARY_PUBLIC_URL (the URL the
    EHR is given) + the path; without it, the URL the request came to."""
    base = (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")
    return base + request.path


def public_base() -> str:
    return (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")


def _caller() -> order_entry.Caller:
    try:
        caller = order_entry.verify(current_instance().sql_engine, bearer_token(), service_url())
    except order_entry.Refused as refused:
        raise Refusal(
            401, refused.code, refused.message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    g.principal = Principal(caller.iss, "cds_client")  # the refusals that follow are on record by the client
    return caller


@blueprint.get(PREFIX)
def discovery():
    _caller()
    with active_rulebook().use() as formulary:
        return jsonify(reading.discovery(formulary.rulebook))


@blueprint.post(f"{PREFIX}/<service_id>")
def call(service_id):
    if service_id not in reading.SERVICES:
        raise Refusal(404, "not_found", f"no CDS service {service_id!r}")
    caller = _caller()
    body = json_body()
    with active_rulebook().use() as formulary:
        hook_call = reading.read_call(service_id, body)
        return jsonify(order_entry.answer(current_instance(), formulary, hook_call, caller, public_base()))


@blueprint.post(f"{PREFIX}/<service_id>/feedback")
def feedback(service_id):
    if service_id not in reading.SERVICES:
        raise Refusal(404, "not_found", f"no CDS service {service_id!r}")
    caller = _caller()
    items = reading.read_feedback(json_body())
    return jsonify({"recorded": order_entry.record_feedback(current_instance(), service_id, items, caller)})
