"""Decisions: submit a request and get the rules' decision, recorded in the audit log before the
caller sees it; read a recorded decision back."""

from flask import Blueprint, jsonify

from service.web import roles
from service.web.api.guard import requires
from service.web.context import active_rulebook, current_instance, current_principal, json_body
from service.web.errors import Refusal
from service.workflow.cases import record_decision

blueprint = Blueprint("api_decisions", __name__)


@blueprint.post("/v1/decisions")
@requires("decide")
def submit_decision():
    payload = json_body()
    with active_rulebook().use() as formulary:
        response = record_decision(current_instance(), formulary, payload, current_principal().name)
    return jsonify(response), 201, {"Location": f"/v1/decisions/{response['decision_id']}"}


@blueprint.get("/v1/decisions/<decision_id>")
@requires("read_decision")
def get_decision(decision_id):
    record = current_instance().audit.decision(decision_id)
    if record is None:
        raise Refusal(404, "not_found", f"no decision {decision_id!r}")
    roles.check_owner(current_principal(), "read_decision", record["requester"])
    return jsonify(record["body"]["decision"])
