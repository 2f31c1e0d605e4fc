"""Liveness for load balancers and the engineer on call: no token, no patient data.

`/healthz` is 200 while the audit log can be written, 503 when it cannot. It also says
"degraded" (still 200, so a balancer keeps sending requests; monitoring reads the status) when
the file system the database writes to has less free space than FORMULARY_MIN_FREE_MB (default
512): the database file's folder for SQLite; for PostgreSQL, whose disk this process cannot see,
the instance folder (its logs and anchors), so watch the database server's disk there.
"""

import shutil
from pathlib import Path

from flask import Blueprint, current_app, jsonify

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
    health = {"status": "ok", "rulebook": rulebook_ref(rulebook), "audit_records": head["id"], "disk": _disk()}
    if health["disk"]["free_bytes"] < health["disk"]["min_free_bytes"]:
        health["status"] = "degraded"
        health["reason"] = (
            "the database's file system has less free space than FORMULARY_MIN_FREE_MB: free some, or the "
            "audit log, and with it every decision, stops when it is full"
        )
    return jsonify(health)


def _disk() -> dict:
    """Free bytes of the file system the database writes to, and the threshold."""
    instance = current_instance()
    url = instance.sql_engine.url
    folder = instance.path
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        folder = Path(url.database).resolve().parent
    return {
        "free_bytes": shutil.disk_usage(folder).free,
        "min_free_bytes": current_app.config["MIN_FREE_MB"] * 1024 * 1024,
    }
