"""Liveness for load balancers and the engineer on call: no token, no patient data."""

from flask import Blueprint, jsonify

from service.rulebook.as_data import rulebook_ref
from service.web.context import active_rulebook, current_instance

blueprint = Blueprint("api_health", __name__)


@blueprint.get("/healthz")
def healthz():
    rulebook = active_rulebook().current.rulebook
    audit = current_instance().audit
    try:
        head = audit.head()
        audit.check_writable()
    except Exception:
        return jsonify({"status": "unavailable", "reason": "the database does not answer or cannot be written"}), 503
    return jsonify({"status": "ok", "rulebook": rulebook_ref(rulebook), "audit_records": head["id"]})
