"""The console's Administrations page: record what was given against an authorisation (and see
the discrepancies its checks found), and resolve open discrepancies. The form's fields are the
columns of a pharmacy export (`formulary administrations import`), made into the API's body."""

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from service.decide.request import RequestError
from service.web.console.auth import page
from service.web.context import active_rulebook, current_instance, current_principal
from service.workflow import administrations

blueprint = Blueprint("console_administrations", __name__, url_prefix="/console")
FIELDS = tuple(c for c in administrations.CSV_COLUMNS if c != "dispense_id")


def _page(values=None, errors=None, recorded=None, resolve_errors=None, status=200):
    rulebook = active_rulebook().current.rulebook
    return render_template(
        "console/administrations.html",
        values=values or {},
        errors=errors or {},
        recorded=recorded,
        resolve_errors=resolve_errors or {},
        products=[(name, name) for name in sorted(rulebook.products)],
        open_discrepancies=administrations.list_discrepancies(
            current_instance(), administrations.DiscrepancyQuery("open", administrations.MAX_PAGE)
        )["discrepancies"],
    ), status


def _refused(error: RequestError) -> dict:
    g.refusal = error.to_dict()
    return {administrations.column_of(error.field): error.message}


@blueprint.get("/administrations")
@page("read_discrepancies")
def administrations_page():
    return _page()


@blueprint.post("/administrations")
@page("record_administration")
def record_administration():
    values = {name: request.form.get(name, "") for name in FIELDS}
    try:
        with active_rulebook().use() as formulary:
            recorded = administrations.record(
                current_instance(), formulary, administrations.body_from_fields(values), current_principal().name
            )
    except RequestError as error:
        values.pop("patient_ref")  # typed again, never sent back in the page
        return _page(values, _refused(error), status=400)
    return _page(recorded=recorded)


@blueprint.post("/discrepancies/<discrepancy_id>/resolution")
@page("resolve_discrepancy")
def resolve_discrepancy(discrepancy_id):
    try:
        administrations.resolve(
            current_instance(), discrepancy_id, {"reason": request.form.get("reason", "")}, current_principal().name
        )
    except RequestError as error:
        g.refusal = error.to_dict()
        return _page(resolve_errors={discrepancy_id: error.message}, status=400)
    except administrations.AlreadyResolved as error:
        g.refusal = {"code": "already_resolved", "message": str(error)}
        return _page(resolve_errors={discrepancy_id: str(error)}, status=409)
    flash("Discrepancy resolved.")
    return redirect(url_for("console_administrations.administrations_page"))
