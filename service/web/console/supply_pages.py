"""The supply page: the phase in force and why, what each phase does with each tier, the active
authorisations by tier (what a phase would touch) and every setting; an admin sets the phase.
While the phase is a shortage, every console page shows it and its reason in a banner.

The same data as GET /v1/supply, from the same function, and the same setting as POST /v1/supply.
"""

import logging

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from sqlalchemy.exc import SQLAlchemyError

from service.decide import supply as phases
from service.decide.request import RequestError
from service.web.console.auth import page
from service.web.context import active_rulebook, current_instance, current_principal
from service.workflow import supply
from service.workflow.cases import Conflict

log = logging.getLogger(__name__)
blueprint = Blueprint("console_supply", __name__, url_prefix="/console")


@blueprint.app_context_processor
def _supply_banner():
    """The shortage phase in force, for the banner every signed-in page shows (None: none)."""
    if g.get("principal") is None:
        return {"supply_banner": None}
    rulebook = active_rulebook().current.rulebook
    try:
        setting = current_instance().supply_phase.current() if rulebook.supply is not None else None
    except SQLAlchemyError:  # the page still shows; the decisions read the phase themselves
        log.exception("the supply phase could not be read for the banner")
        return {"supply_banner": None}
    if setting is None or not phases.is_shortage(rulebook.supply, setting["phase"]):
        return {"supply_banner": None}
    return {"supply_banner": setting}


@blueprint.get("/supply")
@page("read_supply")
def supply_page(error: str | None = None, status: int = 200):
    overview = supply.overview(current_instance(), active_rulebook().current.rulebook)
    return render_template("console/supply.html", overview=overview, error=error, form=request.form), status


@blueprint.post("/supply")
@page("set_supply_phase")
def set_supply_phase():
    body = {"phase": request.form.get("phase", ""), "reason": request.form.get("reason", "")}
    try:
        with active_rulebook().use() as formulary:
            overview = supply.set_phase(current_instance(), formulary.rulebook, body, current_principal().name)
    except (RequestError, Conflict) as error:
        message = error.message if isinstance(error, RequestError) else str(error)
        g.refusal = {"code": getattr(error, "code", "refused"), "message": message}
        return supply_page(error=message, status=400 if isinstance(error, RequestError) else 409)
    flash(f"Supply phase {overview['phase']} is in force: {overview['reason']}")
    return redirect(url_for("console_supply.supply_page"))
