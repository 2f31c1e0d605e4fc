"""What follows a decision: review cases, authorisations, pharmacy pre-approvals."""

from flask import Blueprint, jsonify, request

from service import clock
from service.decide.request import RequestError, patient_ref
from service.web import roles
from service.web.api.guard import requires
from service.web.context import active_rulebook, current_instance, current_principal, json_body
from service.web.errors import FHIR_JSON
from service.workflow import authorisations, cases, preapproval

blueprint = Blueprint("api_workflow", __name__)


@blueprint.get("/v1/reviews")
@requires("list_reviews")
def list_reviews():
    return jsonify(cases.list_cases(current_instance(), cases.queue_from(request.args)))


@blueprint.get("/v1/reviews/<case_id>")
@requires("read_case")
def get_review(case_id):
    case = cases.get_case(current_instance(), case_id)
    roles.check_owner(current_principal(), "read_case", case["requester"])
    return jsonify(case)


@blueprint.post("/v1/reviews/<case_id>/resolution")
@requires("resolve_case")
def resolve_review(case_id):
    body = json_body()
    with active_rulebook().use() as formulary:
        case = cases.resolve(current_instance(), formulary, case_id, body, current_principal().name)
    return jsonify(case), 201


@blueprint.post("/v1/reviews/<case_id>/facts")
@requires("add_facts")
def add_facts(case_id):
    """The request fields to add as JSON, or a FHIR QuestionnaireResponse (application/fhir+json)
    answering the decision's Questionnaire."""
    body = json_body()
    roles.check_owner(current_principal(), "add_facts", cases.get_case(current_instance(), case_id)["requester"])
    attach = cases.attach_answers if request.mimetype == FHIR_JSON else cases.attach_facts
    with active_rulebook().use() as formulary:
        decision = attach(current_instance(), formulary, case_id, body, current_principal().name)
    return jsonify(decision), 201


@blueprint.get("/v1/authorisations")
@requires("read_authorisations")
def list_authorisations():
    ref = patient_ref(request.args.get("patient_ref"), "patient_ref")
    instance = current_instance()
    patient_hash = instance.audit.patient_hash(ref) if ref else None
    if "expiring_within_days" in request.args:
        # A clinician sees only the authorisations their own requests were granted.
        due = authorisations.due_from(
            request.args, patient_hash, roles.own_only(current_principal(), "read_authorisation")
        )
        with active_rulebook().use() as formulary:
            criteria = formulary.rulebook.continuation_measures()
        return jsonify(authorisations.due_for_review(instance, due, criteria))
    if patient_hash is None:
        raise RequestError(
            "missing_field",
            "give patient_ref (or expiring_within_days): authorisations are listed one patient at a time",
            "patient_ref",
        )
    return jsonify({"authorisations": authorisations.authorisations_for(instance, patient_hash)})


@blueprint.get("/v1/authorisations/<authorisation_id>")
@requires("read_authorisation")
def get_authorisation(authorisation_id):
    detail = authorisations.authorisation_detail(current_instance(), authorisation_id)
    roles.check_owner(current_principal(), "read_authorisation", detail.pop("requester") or "")
    return jsonify(detail)


@blueprint.post("/v1/authorisations/<authorisation_id>/measurements")
@requires("record_measurement")
def record_measurement(authorisation_id):
    body = json_body()
    instance = current_instance()
    roles.check_owner(
        current_principal(), "record_measurement", authorisations.requester_of(instance, authorisation_id) or ""
    )
    with active_rulebook().use() as formulary:
        measurement = authorisations.record_measurement(
            instance, formulary.vocabulary, authorisation_id, body, current_principal().name
        )
    return jsonify(measurement), 201


@blueprint.post("/v1/authorisations/<authorisation_id>/continuation")
@requires("continue_authorisation")
def continue_authorisation(authorisation_id):
    """Decide a continuation on the current rulebook; the body (optional) adds request facts."""
    body = json_body() if request.get_data() else {}
    instance = current_instance()
    roles.check_owner(
        current_principal(), "continue_authorisation", authorisations.requester_of(instance, authorisation_id) or ""
    )
    with active_rulebook().use() as formulary:
        decision = cases.continue_authorisation(instance, formulary, authorisation_id, body, current_principal().name)
    return jsonify(decision), 201, {"Location": f"/v1/decisions/{decision['decision_id']}"}


@blueprint.post("/v1/preapprovals")
@requires("preapprove")
def preapprove():
    order = json_body()
    with active_rulebook().use() as formulary:
        result = preapproval.check(current_instance(), formulary, order, current_principal().name, clock.utc_today())
    return jsonify(result)


@blueprint.post("/v1/preapprovals/batch")
@requires("preapprove")
def preapprove_batch():
    """A JSON list of orders, or a CSV infusion list (text/csv body, or a multipart `file`)."""
    if request.mimetype == "text/csv":
        orders = preapproval.orders_from_bytes(request.get_data(), "")
    elif request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise RequestError("missing_field", "upload the infusion list as the form field 'file'", "file")
        orders = preapproval.orders_from_bytes(upload.read(), "file")
    else:
        body = json_body()
        if not isinstance(body, list):
            raise RequestError("wrong_type", "send a JSON list of orders, or a CSV infusion list", "")
        orders = list(enumerate(body, start=1))
    preapproval.limit_batch(orders, "")
    with active_rulebook().use() as formulary:
        results = preapproval.check_batch(
            current_instance(), formulary, orders, current_principal().name, clock.utc_today()
        )
    return jsonify(
        {
            "results": results,
            "summary": {
                "orders": len(results),
                "dispense": sum(1 for r in results if r.get("dispense")),
                "hold": sum(1 for r in results if r.get("dispense") is False),
                "errors": sum(1 for r in results if "error" in r),
            },
        }
    )
