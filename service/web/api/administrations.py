"""What was given: administrations checked against their authorisations, and the discrepancies found."""

from flask import Blueprint, jsonify, request

from service.decide.request import RequestError, known_arguments
from service.web import roles
from service.web.api.guard import requires
from service.web.context import active_rulebook, current_instance, current_principal, json_body
from service.workflow import administrations, authorisations

blueprint = Blueprint("api_administrations", __name__)


@blueprint.post("/v1/administrations")
@requires("record_administration")
def record_administration():
    body = json_body()
    with active_rulebook().use() as formulary:
        recorded = administrations.record(current_instance(), formulary, body, current_principal().name)
    return jsonify(recorded), 201, {"Location": f"/v1/administrations/{recorded['id']}"}


def _check_owner(authorisation_id: str | None) -> None:
    """A clinician reads only what was given under the authorisations of their own requests."""
    if roles.own_only(current_principal(), "read_administrations") is None:
        return
    try:
        requester = authorisations.requester_of(current_instance(), authorisation_id) if authorisation_id else None
    except authorisations.NoSuchAuthorisation:
        requester = None
    roles.check_owner(current_principal(), "read_administrations", requester or "")


@blueprint.get("/v1/administrations")
@requires("read_administrations")
def list_administrations():
    known_arguments(request.args, ("authorisation_id",), "an argument here")
    authorisation_id = request.args.get("authorisation_id", "").strip()
    if not authorisation_id:
        raise RequestError(
            "missing_field",
            "give authorisation_id: administrations are listed one authorisation at a time",
            "authorisation_id",
        )
    _check_owner(authorisation_id)
    return jsonify({"administrations": administrations.administrations_of(current_instance(), authorisation_id)})


@blueprint.get("/v1/administrations/<administration_id>")
@requires("read_administrations")
def get_administration(administration_id):
    found = administrations.get_administration(current_instance(), administration_id)
    _check_owner(found["authorisation_id"])
    return jsonify(found)


@blueprint.get("/v1/discrepancies")
@requires("read_discrepancies")
def list_discrepancies():
    return jsonify(administrations.list_discrepancies(current_instance(), administrations.query_from(request.args)))


@blueprint.post("/v1/discrepancies/<discrepancy_id>/resolution")
@requires("resolve_discrepancy")
def resolve_discrepancy(discrepancy_id):
    body = json_body()
    return jsonify(administrations.resolve(current_instance(), discrepancy_id, body, current_principal().name)), 201
