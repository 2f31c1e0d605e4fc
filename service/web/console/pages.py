"""Console pages for the daily work: new requests, the review queue, cases and pre-approvals.

Each form posts flat fields (service/order_fields.py), which become the same JSON the API takes and go
through the same casework functions; a refused form comes back with the API's message beside
the field and what the user typed still in it.
"""

import csv
import io
from typing import Any
from urllib.parse import quote

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from service import clock
from service.decide.decision import OUTCOME_WORDS
from service.decide.request import RequestError, patient_ref, visible
from service.rulebook.model import COURSES, ROUTES, SEVERITIES, SEXES
from service.web import roles
from service.web.api.decisions import questionnaire_of
from service.web.console.auth import allowed, page
from service.web.context import active_rulebook, current_instance, current_principal
from service.workflow import authorisations as authorisation_rows
from service.workflow import cases, csv_out, order_fields, preapproval

blueprint = Blueprint("console_pages", __name__, url_prefix="/console")
DUE_DAYS = 30  # the due-for-review page: ending within, or ended within and not continued


def _refused(error: RequestError, rows: list[int] | None = None) -> dict:
    """Form errors by field name, and the refusal noted for the audit log."""
    g.refusal = error.to_dict()
    return {order_fields.name_of(error.field, rows) or "form": error.message}


@blueprint.app_context_processor
def _decision_words():
    sources = active_rulebook().current.rulebook.sources
    return {
        "outcome_words": OUTCOME_WORDS,
        "source_title": lambda source: sources[source].title if source in sources else source,
    }


@blueprint.get("/")
@page("read_rulebook")
def home():
    for action, endpoint in (
        ("decide", "console_pages.new_request"),
        ("list_reviews", "console_pages.reviews"),
        ("read_audit", "console_audit.audit_log"),
        ("propose_rulebook", "console_formulary.rulebook_versions"),
    ):
        if allowed(action):
            return redirect(url_for(endpoint))
    return redirect(url_for("console_formulary.formulary"))


def _form_fields() -> dict:
    """The posted form as flat fields: each group of therapy checkboxes as one ';' list, as in a CSV."""
    fields = request.form.to_dict()
    for name in ("failed_therapies", "concurrent_therapies"):
        fields[name] = ";".join(request.form.getlist(name))
    return fields


def _choices() -> dict:
    """Options for the request and order forms, as (value, label) pairs from the rulebook."""
    rulebook = active_rulebook().current.rulebook
    return {
        "therapies": sorted(rulebook.therapies.values(), key=lambda t: t.name),
        "products": [(name, name) for name in sorted(rulebook.products)],
        "sexes": [(sex, sex.capitalize()) for sex in SEXES],
        "severities": [(severity, severity.capitalize()) for severity in SEVERITIES],
        "routes": [(route, route.capitalize()) for route in ROUTES],
        "specialties": [(s.id, s.name) for s in sorted(rulebook.specialties.values(), key=lambda s: s.name)],
        "phases": [(p.id, p.name) for p in rulebook.phases.values()],
        "courses": [(course, course.replace("_", "-").capitalize()) for course in COURSES],
        "measures": [(m.id, m.name) for m in sorted(rulebook.measures.values(), key=lambda m: m.name)],
        "units": sorted({(unit, unit) for m in rulebook.measures.values() for unit in m.units}),
        "observation_rows": range(order_fields.OBSERVATION_ROWS),
    }


@blueprint.route("/request", methods=["GET", "POST"])
@page("decide")
def new_request():
    values, errors, decision = _form_fields(), {}, None
    rows: list[int] = []
    if request.method == "POST":
        picked = request.form.get("pick_code")
        if picked:  # a candidate chosen for an unclear text: decide again with its code, the text checked against it
            values.update(diagnosis_code=picked)
        try:
            payload = order_fields.from_fields(values)
            rows = order_fields.add_criteria(payload, values)
            with active_rulebook().use() as formulary:
                if picked and request.form.get("case_id"):
                    case_id = _own_case(request.form["case_id"], "add_facts")["id"]
                    decision = cases.attach_facts(
                        current_instance(),
                        formulary,
                        case_id,
                        {"diagnosis": {"code": picked, "text": values.get("diagnosis_text") or None}},
                        current_principal().name,
                    )
                else:
                    decision = cases.record_decision(current_instance(), formulary, payload, current_principal().name)
        except RequestError as error:
            errors = _refused(error, rows)
        except cases.Conflict as conflict:
            g.refusal = {"code": conflict.code, "message": str(conflict)}
            errors = {"form": str(conflict)}
    status = (409 if "form" in errors else 400) if errors else 201 if decision else 200
    return render_template(
        "console/request.html", values=values, errors=errors, decision=decision, **_choices()
    ), status


@blueprint.get("/decisions/<decision_id>")
@page("read_decision")
def decision(decision_id):
    record = _recorded(decision_id)
    roles.check_owner(current_principal(), "read_decision", record["requester"])
    return render_template(
        "console/decision.html",
        decision=record["body"]["decision"],
        requested=record["body"]["request"],
        requester=record["requester"],
        origin=record["body"].get("origin"),
    )


@blueprint.get("/decisions/<decision_id>/questionnaire")
@page("read_decision")
def questionnaire(decision_id):
    """The decision's missing facts as a FHIR Questionnaire to download (as GET /v1/decisions/<id>/questionnaire)."""
    record = _recorded(decision_id)
    roles.check_owner(current_principal(), "read_decision", record["requester"])
    response = questionnaire_of(record["body"]["decision"])
    response.headers["Content-Disposition"] = f'attachment; filename="questionnaire-{decision_id[:36]}.json"'
    return response


@blueprint.get("/reviews")
@page("list_reviews")
def reviews():
    """The review queue a page at a time, filtered and sorted as the API's GET /v1/reviews."""
    instance = current_instance()
    given = {key: value.strip() for key, value in request.args.items() if value.strip()}
    errors = {}
    try:
        queue = cases.queue_from(given)
    except RequestError as error:
        g.refusal, errors = error.to_dict(), {error.field or "form": error.message}
        queue = cases.queue_from({key: value for key, value in given.items() if key not in (error.field, "cursor")})
    found = cases.list_cases(instance, queue)
    if queue.status == "pending_information":  # the table shows what was asked, from the resolutions
        found["cases"] = [cases.get_case(instance, case["id"]) for case in found["cases"]]
    filters: dict[str, Any] = {key: value for key, value in given.items() if key not in ("cursor", "limit")}
    return render_template(
        "console/reviews.html",
        queue=queue,
        found=found,
        values=given,
        errors=errors,
        reasons=[(reason, reason.replace("_", " ")) for reason in cases.REVIEW_REASONS],
        sorts=[
            ("due", "retrospective reviews due first"),
            ("oldest", "oldest first"),
            ("newest", "newest first"),
            ("diagnosis", "by diagnosis code"),
        ],
        next_url=url_for("console_pages.reviews", **filters, cursor=found["next_cursor"])
        if found["next_cursor"]
        else None,
        first_url=url_for("console_pages.reviews", **filters) if queue.cursor else None,
        status_url=lambda status: url_for("console_pages.reviews", **{**filters, "status": status}),
    ), 400 if errors else 200


def _recorded(decision_id: str) -> dict:
    """The decision's audit record, or the page's 404."""
    record = current_instance().audit.decision(decision_id)
    if record is None:
        abort(404)
    return record


def _own_case(case_id: str, action: str = "read_case") -> dict:
    """The case, if the signed-in person may see it (a clinician sees only their own)."""
    case = cases.get_case(current_instance(), case_id)
    roles.check_owner(current_principal(), action, case["requester"])
    return case


def _case_page(
    case_id: str,
    errors: dict | None = None,
    values: dict | None = None,
    status: int = 200,
    fact_errors: dict | None = None,
    facts: dict | None = None,
):
    case = _own_case(case_id)
    requested = _recorded(case["decision"]["decision_id"])["body"]["request"]
    final = next((r for r in reversed(case["resolutions"]) if r["resolution"] != "more_information"), None)
    return render_template(
        "console/case.html",
        case=case,
        requested=requested,
        final=final,
        errors=errors or {},
        values=values or {},
        fact_errors=fact_errors or {},
        facts=facts or {},
        **_choices(),
    ), status


@blueprint.get("/reviews/<case_id>")
@page("read_case")
def case(case_id):
    return _case_page(case_id)


@blueprint.post("/reviews/<case_id>/facts")
@page("add_facts")
def add_facts(case_id):
    """Decide the case again with what the requester adds (what a pended case asked for)."""
    _own_case(case_id, "add_facts")
    facts = _form_fields()
    try:
        added = order_fields.from_fields(facts)
        if not added:
            raise RequestError("missing_field", "fill in at least one fact to add", "form")
        if "diagnosis" in added:  # a code given now replaces the words the request had
            added["diagnosis"].setdefault("text", None)
        with active_rulebook().use() as formulary:
            decision = cases.attach_facts(current_instance(), formulary, case_id, added, current_principal().name)
    except RequestError as error:
        return _case_page(case_id, fact_errors=_refused(error), facts=facts, status=400)
    except cases.Conflict as conflict:
        g.refusal = {"code": conflict.code, "message": str(conflict)}
        return _case_page(case_id, fact_errors={"form": str(conflict)}, facts=facts, status=409)
    flash(f"Decided again with the added facts: {OUTCOME_WORDS[decision['outcome']]}.")
    return redirect(url_for("console_pages.case", case_id=case_id))


@blueprint.post("/reviews/<case_id>/resolution")
@page("resolve_case")
def resolve(case_id):
    _own_case(case_id)
    values = request.form.to_dict()
    body: dict = {"resolution": values.get("resolution"), "reason": values.get("reason", "")}
    if values.get("references"):
        body["references"] = values["references"]
    try:
        if values.get("valid_days", "").strip():
            try:
                body["valid_days"] = int(values["valid_days"])
            except ValueError:
                raise RequestError(
                    "wrong_type", f"valid_days must be a whole number, found {values['valid_days']!r}", "valid_days"
                ) from None
        with active_rulebook().use() as formulary:
            cases.resolve(current_instance(), formulary, case_id, body, current_principal().name)
    except RequestError as error:
        return _case_page(case_id, _refused(error), values, 400)
    except cases.Conflict as conflict:
        g.refusal = {"code": conflict.code, "message": str(conflict)}
        return _case_page(case_id, {"form": str(conflict)}, values, 409)
    flash(f"Resolution recorded: {body['resolution'].replace('_', ' ')}.")
    return redirect(url_for("console_pages.case", case_id=case_id))


@blueprint.get("/authorisations")
@page("read_authorisations")
def authorisations():
    """A patient's authorisations, newest ending first: what may be dispensed, until when."""
    typed = request.args.get("patient_ref", "")
    found, errors = None, {}
    try:
        ref = patient_ref(typed) if visible(typed) else None
    except RequestError as error:
        ref, errors = None, _refused(error)
    if ref is not None:
        instance = current_instance()
        found = authorisation_rows.authorisations_for(instance, instance.audit.patient_hash(ref))
    return render_template(
        "console/authorisations.html", values={"patient_ref": typed.strip()}, errors=errors, authorisations=found
    ), 400 if errors else 200


@blueprint.get("/authorisations/due")
@page("read_authorisations")
def due_for_review():
    """Authorisations ending within 30 days, and those ended within 30 days and not continued, soonest first."""
    due = authorisation_rows.Due(
        DUE_DAYS,
        include_overdue=True,
        limit=authorisation_rows.MAX_PAGE,
        cursor=request.args.get("cursor") or None,
        requester=roles.own_only(current_principal(), "read_authorisation"),
    )
    criteria = active_rulebook().current.rulebook.continuation_measures()
    found = authorisation_rows.due_for_review(current_instance(), due, criteria)  # a bad cursor: the 400 page
    return render_template("console/due.html", days=DUE_DAYS, due=found)


def _authorisation_page(
    authorisation_id: str,
    errors: dict | None = None,
    values: dict | None = None,
    status=200,
    continuation_errors: dict | None = None,
):
    detail = authorisation_rows.authorisation_detail(current_instance(), authorisation_id)
    roles.check_owner(current_principal(), "read_authorisation", detail.pop("requester") or "")
    return render_template(
        "console/authorisation.html",
        detail=detail,
        errors=errors or {},
        values=values or {},
        continuation_errors=continuation_errors or {},
        **_choices(),
    ), status


@blueprint.get("/authorisations/<authorisation_id>")
@page("read_authorisation")
def authorisation(authorisation_id):
    return _authorisation_page(authorisation_id)


@blueprint.post("/authorisations/<authorisation_id>/measurements")
@page("record_measurement")
def record_measurement(authorisation_id):
    instance = current_instance()
    roles.check_owner(
        current_principal(), "record_measurement", authorisation_rows.requester_of(instance, authorisation_id) or ""
    )
    values = request.form.to_dict()
    try:
        with active_rulebook().use() as formulary:
            measurement = authorisation_rows.record_measurement(
                instance,
                formulary.vocabulary,
                authorisation_id,
                order_fields.measurement_from_fields(values),
                current_principal().name,
            )
    except RequestError as error:
        return _authorisation_page(authorisation_id, _refused(error), values, 400)
    flash(f"Measurement recorded: {measurement['measure']} {measurement['value']:g} {measurement['unit']}.")
    return redirect(url_for("console_pages.authorisation", authorisation_id=authorisation_id))


@blueprint.post("/authorisations/<authorisation_id>/continuation")
@page("continue_authorisation")
def continue_authorisation(authorisation_id):
    """Decide the continuation, then show its decision (with the measures compared)."""
    instance = current_instance()
    roles.check_owner(
        current_principal(), "continue_authorisation", authorisation_rows.requester_of(instance, authorisation_id) or ""
    )
    try:
        with active_rulebook().use() as formulary:
            decided = cases.continue_authorisation(instance, formulary, authorisation_id, {}, current_principal().name)
    except (authorisation_rows.AlreadyContinued, authorisation_rows.Tampered, cases.Conflict) as error:
        message = (
            str(error)
            if not isinstance(error, authorisation_rows.Tampered)
            else ("this authorisation fails its integrity check: an administrator must look before it is continued")
        )
        g.refusal = {"code": "conflict", "message": message}
        return _authorisation_page(authorisation_id, status=409, continuation_errors={"form": message})
    return redirect(url_for("console_pages.decision", decision_id=decided["decision_id"]))


@blueprint.route("/preapproval", methods=["GET", "POST"])
@page("preapprove")
def preapproval_order():
    values, errors, result = _form_fields(), {}, None
    if request.method == "POST":
        try:
            order = order_fields.from_fields(values)
            with active_rulebook().use() as formulary:
                result = preapproval.check(
                    current_instance(), formulary, order, current_principal().name, clock.utc_today()
                )
        except RequestError as error:
            errors = _refused(error)
    return render_template(
        "console/preapproval.html",
        values=values,
        errors=errors,
        result=result,
        columns=order_fields.NAMES,
        **_choices(),
    ), 400 if errors else 200


@blueprint.post("/preapproval/batch")
@page("preapprove")
def preapproval_batch():
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise RequestError("missing_field", "choose the infusion list (a CSV file) to upload", "file")
        orders = preapproval.limit_batch(preapproval.orders_from_bytes(upload.read(), "file"), "file")
    except RequestError as error:
        return render_template(
            "console/preapproval.html",
            values={},
            errors=_refused(error),
            result=None,
            columns=order_fields.NAMES,
            **_choices(),
        ), 400
    with active_rulebook().use() as formulary:
        results = preapproval.check_batch(
            current_instance(), formulary, orders, current_principal().name, clock.utc_today()
        )
    # A row that could not be read still shows whose it was (the file read as UTF-8 above).
    upload.seek(0)
    refs = {
        number: (row.get("patient_ref") or "").strip()
        for number, row in enumerate(
            csv.DictReader(io.StringIO(upload.read().decode("utf-8-sig"), newline="")), start=2
        )
    }
    rows = [
        _result_row(result, order, refs.get(number, ""))
        for result, (number, order) in zip(results, orders, strict=True)
    ]
    return render_template(
        "console/preapproval_results.html",
        rows=rows,
        filename=upload.filename,
        download=_csv_data_uri(rows),
        dispense=sum(1 for r in rows if r["dispense"] == "yes"),
    )


def _result_row(result: dict, order, patient_ref: str) -> dict:
    """One line of the results table: whose order, dispense yes/no (or error), every reason against."""
    order = order if isinstance(order, dict) else {}
    line = {
        "row": result["row"],
        "patient": patient_ref,
        "order": " ".join(filter(None, [*(order.get("diagnosis") or {}).values(), order.get("product")])),
    }
    if "error" in result:
        return {**line, "dispense": "error", "reasons": [result["error"]["message"]], "decision": None}
    failed = [r["message"] for r in result["reasons"] if not r["ok"]]
    return {
        **line,
        "dispense": "yes" if result["dispense"] else "no",
        "reasons": failed or ["every check passed"],
        "decision": result["decision"],
        "grams": result["dose"]["rounded_grams"] if result["dose"] else None,
    }


def _csv_data_uri(rows: list[dict]) -> str:
    """The results table as a CSV link target, so the download needs no second trip to the server."""
    buffer = io.StringIO()
    writer = csv_out.Writer(buffer)
    writer.writerow(("row", "patient_ref", "order", "dispense", "grams", "decision_id", "reasons"))
    for row in rows:
        writer.writerow(
            (
                row["row"],
                row["patient"],
                row["order"],
                row["dispense"],
                row.get("grams") or "",
                row["decision"]["decision_id"] if row["decision"] else "",
                "; ".join(row["reasons"]),
            )
        )
    return "data:text/csv;charset=utf-8," + quote(buffer.getvalue())
