"""The pharmacist console: server-rendered pages over the same casework as the JSON API.

Pages call the functions the API calls (casework, preapproval, the audit store), so a decision
made in the console is the same decision, recorded the same way. People sign in with an API
token; the session cookie keeps only the token's digest (signed, HTTP-only, Secure by default),
and every request looks the token up again, so a revoked token ends its sessions. Every form
carries a CSRF token (Flask-WTF); the JSON API is exempt, as it takes bearer tokens, not cookies.
"""

import datetime

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect

from service.store.audit import subkey
from service.web.console import (
    administration_pages,
    audit_pages,
    auth,
    formulary_pages,
    pages,
    reports_pages,
    supply_pages,
)
from service.web.errors import is_console

SESSION_HOURS = 12
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
csrf = CSRFProtect()


class ConsoleSessions(SecureCookieSessionInterface):
    """Only console pages have a session. The JSON API takes bearer tokens, so its requests
    skip reading and verifying a cookie (about 5% of an audited decision's CPU), and a cookie
    sent to the API is ignored rather than trusted."""

    def open_session(self, app, request):
        if not is_console(request.path):
            return self.null_session_class()
        return super().open_session(app, request)


def register(app: Flask, instance) -> None:
    """Mount the console on `app`: its session key, cookie settings, CSRF and blueprints."""
    app.secret_key = subkey(instance.secret, "console-session-v1").hex()
    app.config.update(
        SESSION_COOKIE_NAME="formulary_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=True,  # browsers keep Secure cookies over plain HTTP on localhost only
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=SESSION_HOURS),
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session's life: a long form must not expire
    )
    app.session_interface = ConsoleSessions()
    csrf.init_app(app)
    for page_blueprint in (
        auth.blueprint,
        pages.blueprint,
        administration_pages.blueprint,
        audit_pages.blueprint,
        formulary_pages.blueprint,
        supply_pages.blueprint,
        reports_pages.blueprint,
    ):
        app.register_blueprint(page_blueprint)
    for name, blueprint in app.blueprints.items():
        if not name.startswith("console"):
            csrf.exempt(blueprint)
    app.add_template_filter(_age, "age")

    @app.after_request
    def _page_headers(response):
        """Console pages: nothing from elsewhere, no framing, and no copy left in a shared
        workstation's cache after sign-out (pages carry patient facts)."""
        if is_console(request.path):
            response.headers.update(CONSOLE_HEADERS)
        return response


def _age(seconds: int) -> str:
    """A waiting time as people say it: 45 s, 12 min, 3 h 20 min, 2 d 4 h."""
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return f"{seconds} s"
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"
