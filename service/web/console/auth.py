"""Console sign-in: an API token in; the signed session cookie holds the id of a session kept on
the server (sign-out deletes it) and the token's digest, never the token. What a role may open is
the role table's (service/web/roles.py), as for the API."""

import re
from functools import wraps

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for

from service import clock
from service.store.tokens import Principal, close_session, digest, open_session, principal_for_digest, session_principal
from service.web import access, roles
from service.web.context import current_instance

blueprint = Blueprint("console_auth", __name__, url_prefix="/console")
# Where sign-in may send you back to: a console path (and query) of URL characters only, so no
# newline, quote or backslash reaches the Location header or the form.
_CONSOLE_TARGET = re.compile(r"^/console/[A-Za-z0-9/_.~%?=&;:@!$*()+,-]*$")


def signed_in_principal() -> Principal | None:
    """The signed-in Principal, or None; a signed-out session, a revoked token or an old session
    signs out (the session is looked up on the server: a cookie kept after sign-out opens nothing)."""
    session_id, since = session.get("session_id"), session.get("signed_in_at", 0)
    if not session_id:
        return None
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    principal = session_principal(current_instance().sql_engine, session_id)
    if principal is None or clock.now().timestamp() - since > lifetime:
        session.clear()
        return None
    return principal


def page(action: str):
    """Open the view to the roles the role table allows for `action`; others sign in, or see 403."""

    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            g.principal = signed_in_principal()
            if g.principal is None:
                return redirect(url_for("console_auth.sign_in", next=request.full_path.rstrip("?")))
            if not roles.may(g.principal, action):
                g.refusal = {"code": "forbidden", "message": f"the role '{g.principal.role}' may not open this page"}
                return render_template("console/forbidden.html"), 403
            return access.answer(action, view, args, kwargs)

        return guarded

    return decorate


def allowed(action: str) -> bool:
    """May the signed-in person do `action` (for the navigation and links)?"""
    return roles.may(g.get("principal"), action)


@blueprint.app_context_processor
def _navigation():
    return {"allowed": allowed, "principal": g.get("principal")}


@blueprint.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    target = request.values.get("next", "")
    if not _CONSOLE_TARGET.match(target) or ".." in target:  # only back into the console, never off-site
        target = url_for("console_pages.home")
    if request.method == "GET":
        return render_template("console/sign_in.html", next=target, error=None)
    token = request.form.get("token", "").strip()
    token_digest = digest(token)
    principal = principal_for_digest(current_instance().sql_engine, token_digest) if token else None
    if principal is None:
        g.refusal = {
            "code": "invalid_token",
            "message": "console sign-in with an unknown or revoked token",
            "field": "token",
        }
        message = "Enter your API token." if not token else "That token is unknown or has been revoked."
        return render_template("console/sign_in.html", next=target, error=message), 401
    signed_in_at = clock.now()
    expired_before = clock.stamp(signed_in_at - current_app.permanent_session_lifetime)
    session.clear()
    session["session_id"] = open_session(current_instance().audit, principal, token_digest, expired_before)
    session["signed_in_at"] = signed_in_at.timestamp()
    g.principal = principal
    return redirect(target)


@blueprint.post("/sign-out")
def sign_out():
    principal = signed_in_principal()
    if principal is not None:
        close_session(current_instance().audit, principal, session["session_id"])
    session.clear()
    return redirect(url_for("console_auth.sign_in"))
