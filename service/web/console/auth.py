"""Console sign-in: an API token in, its digest in the session cookie, roles as the API has them."""
import time
from functools import wraps

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for

from service.web.api.decisions import current_instance
from service.store.tokens import digest, principal_for_digest

blueprint = Blueprint("console_auth", __name__, url_prefix="/console")
# What each role may open, mirroring the API's role rules (service/api.py, service/api_workflow.py).
PAGES = {
    "request": ("clinician", "pharmacist", "admin"),
    "reviews": ("pharmacist", "admin"),
    "case": ("clinician", "pharmacist", "admin"),
    "resolve": ("pharmacist", "admin"),
    "preapproval": ("pharmacist", "admin"),
    "authorisations": ("clinician", "pharmacist", "auditor", "admin"),
    "audit": ("auditor", "admin"),
    "formulary": ("clinician", "pharmacist", "auditor", "admin"),
    "decision": ("clinician", "pharmacist", "auditor", "admin"),
}


def _principal() -> tuple[str, str] | None:
    """The signed-in (name, role), or None; a revoked token or an old session signs out."""
    token_digest, since = session.get("token_digest"), session.get("signed_in_at", 0)
    if not token_digest:
        return None
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    principal = principal_for_digest(current_instance().engine, token_digest)
    if principal is None or time.time() - since > lifetime:
        session.clear()
        return None
    return principal


def page(name: str):
    """Open the view to the roles that PAGES lists for `name`; others sign in, or see 403."""
    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            g.principal = _principal()
            if g.principal is None:
                return redirect(url_for("console_auth.sign_in", next=request.full_path.rstrip("?")))
            if g.principal[1] not in PAGES[name]:
                g.refusal = {"code": "forbidden", "message": f"the role '{g.principal[1]}' may not open this page"}
                return render_template("console/forbidden.html"), 403
            return view(*args, **kwargs)
        return guarded
    return decorate


def allowed(name: str) -> bool:
    """May the signed-in person open page `name` (for the navigation and links)?"""
    principal = g.get("principal")
    return principal is not None and principal[1] in PAGES[name]


@blueprint.app_context_processor
def _navigation():
    return {"allowed": allowed, "principal": g.get("principal")}


@blueprint.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    target = request.values.get("next", "")
    if not target.startswith("/console/"):          # only back into the console, never off-site
        target = url_for("console_pages.home")
    if request.method == "GET":
        return render_template("console/sign_in.html", next=target, error=None)
    token = request.form.get("token", "").strip()
    token_digest = digest(token)
    principal = principal_for_digest(current_instance().engine, token_digest) if token else None
    if principal is None:
        g.refusal = {"code": "invalid_token", "message": "console sign-in with an unknown or revoked token",
                     "field": "token"}
        message = "Enter your API token." if not token else "That token is unknown or has been revoked."
        return render_template("console/sign_in.html", next=target, error=message), 401
    session.clear()
    session["token_digest"] = token_digest
    session["signed_in_at"] = time.time()
    g.principal = principal
    return redirect(target)


@blueprint.post("/sign-out")
def sign_out():
    session.clear()
    return redirect(url_for("console_auth.sign_in"))
