"""Decisions: submit a request and get the rules' decision, recorded in the audit log before the
caller sees it; read a recorded decision back, and its missing facts as a FHIR Questionnaire."""

from flask import Blueprint, Response, jsonify

from service.decide import questionnaire
from service.store.rulebook_versions import version_with_digest
from service.web import roles
from service.web.api.guard import requires
from service.web.api.rulebook import stored_version
from service.web.context import active_rulebook, current_instance, current_principal, json_body
from service.web.errors import FHIR_JSON, Refusal
from service.workflow.cases import record_decision

blueprint = Blueprint("api_decisions", __name__)


@blueprint.post("/v1/decisions")
@requires("decide")
def submit_decision():
    payload = json_body()
    with active_rulebook().use() as formulary:
        response = record_decision(current_instance(), formulary, payload, current_principal().name)
    return jsonify(response), 201, {"Location": f"/v1/decisions/{response['decision_id']}"}


def readable_decision(decision_id: str, action: str = "read_decision") -> dict:
    """The recorded decision, if the caller may `action` it (404, 403)."""
    record = current_instance().audit.decision(decision_id)
    if record is None:
        raise Refusal(404, "not_found", f"no decision {decision_id!r}")
    roles.check_owner(current_principal(), action, record["requester"])
    return record["body"]["decision"]


@blueprint.get("/v1/decisions/<decision_id>")
@requires("read_decision")
def get_decision(decision_id):
    return jsonify(readable_decision(decision_id))


def questionnaire_of(decision: dict) -> Response:
    """A decision's missing facts as a FHIR Questionnaire (application/fhir+json); 409 when it
    misses none, or when the rulebook served no longer knows one (shared with the console)."""
    if not decision["missing"]:
        raise Refusal(
            409,
            "no_missing_facts",
            f"decision {decision['decision_id']} ({decision['outcome']}) names no missing facts: there is nothing "
            "to ask, so there is no Questionnaire",
        )
    with active_rulebook().use() as formulary:
        try:
            resource = questionnaire.questionnaire(decision, formulary.rulebook)
        except questionnaire.UnknownFact as unknown:
            raise Refusal(
                409,
                "not_askable",
                f"this decision misses {unknown}, which a Questionnaire cannot ask: either the rulebook served "
                "has changed since (decide the request again), or it is a continuation's baseline, which is "
                "recorded as a measurement against the initial authorisation",
            ) from None
    response = jsonify(resource)
    response.mimetype = FHIR_JSON
    return response


@blueprint.get("/v1/decisions/<decision_id>/questionnaire")
@requires("read_decision")
def get_questionnaire(decision_id):
    return questionnaire_of(readable_decision(decision_id))


@blueprint.get("/v1/decisions/<decision_id>/rulebook")
@requires("read_decision_rulebook")
def get_decision_rulebook(decision_id):
    """The stored rulebook version the decision was made on, with its texts (not patient data: no access record)."""
    made_on = readable_decision(decision_id, "read_decision_rulebook")["rulebook"]
    return jsonify(stored_version(lambda: version_with_digest(current_instance().database, made_on["digest"])))
