"""The formulary as the service serves it: the rulebook, one rule, and reloading the file."""

from flask import Blueprint, jsonify

from service.rulebook.as_data import rule_as_data, rulebook_as_data
from service.rulebook.model import RulebookError
from service.web.api.guard import requires
from service.web.context import active_rulebook, current_instance, current_principal
from service.web.errors import Refusal

blueprint = Blueprint("api_rulebook", __name__)


@blueprint.get("/v1/rulebook")
@requires("read_rulebook")
def get_rulebook():
    return jsonify(rulebook_as_data(active_rulebook().current.rulebook))


@blueprint.get("/v1/rulebook/rules/<rule_id>")
@requires("read_rulebook")
def get_rule(rule_id):
    rulebook = active_rulebook().current.rulebook
    rule = rulebook.rule(rule_id)
    if rule is None:
        raise Refusal(404, "not_found", f"no rule {rule_id!r} in rulebook {rulebook.version}")
    return jsonify(rule_as_data(rulebook, rule))


@blueprint.post("/v1/rulebook/reload")
@requires("reload_rulebook")
def reload_rulebook():
    try:
        summary = active_rulebook().reload(current_instance().audit, requested_by=current_principal().name)
    except RulebookError as error:
        current = active_rulebook().current.rulebook
        raise Refusal(
            422,
            "rulebook_invalid",
            f"the rulebook has {len(error.problems)} problem(s); still serving {current.version}",
            problems=error.problems,
        ) from None
    return jsonify(summary)
