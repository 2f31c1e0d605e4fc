"""The instance's supply phase: what it is, its history and what it touches; an admin sets it."""

from flask import Blueprint, jsonify

from service.web.api.guard import requires
from service.web.context import active_rulebook, current_instance, current_principal, json_body
from service.workflow import supply

blueprint = Blueprint("api_supply", __name__)


@blueprint.get("/v1/supply")
@requires("read_supply")
def get_supply():
    return jsonify(supply.overview(current_instance(), active_rulebook().current.rulebook))


@blueprint.post("/v1/supply")
@requires("set_supply_phase")
def set_supply():
    body = json_body()
    with active_rulebook().use() as formulary:
        overview = supply.set_phase(current_instance(), formulary.rulebook, body, current_principal().name)
    return jsonify(overview), 201
