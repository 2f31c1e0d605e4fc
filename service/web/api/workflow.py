"""The v1 API for what follows a decision: review cases, authorisations, pharmacy pre-approvals."""
from flask import Blueprint, g, jsonify, request

from service.workflow import cases

from service.workflow import preapproval
from service.web.api.decisions import active_rulebook, current_instance, json_body, requires
from service.store.database import utc_today
from service.web.errors import error_response
from service.decide.request import RequestError

blueprint = Blueprint("workflow", __name__)


@blueprint.app_errorhandler(cases.Conflict)
def _conflict(error):
    return error_response(409, "conflict", str(error))


@blueprint.app_errorhandler(cases.NotFound)
def _no_case(error):
    return error_response(404, "not_found", f"no review case {error}")


@blueprint.get("/v1/reviews")
@requires("pharmacist", "admin")
def list_reviews():
    status = request.args.get("status", "open")
    if status not in (*cases.STATUSES, "all"):
        raise RequestError("unknown_value", f"status must be one of {', '.join(cases.STATUSES)} or all", "status")
    return jsonify({"cases": cases.list_cases(current_instance(), None if status == "all" else status)})


@blueprint.get("/v1/reviews/<case_id>")
@requires("clinician", "pharmacist", "admin")
def get_review(case_id):
    case = cases.get_case(current_instance(), case_id)
    if g.principal[1] == "clinician" and case["requester"] != g.principal[0]:
        return error_response(403, "forbidden", "a clinician may read only the cases of their own requests")
    return jsonify(case)


@blueprint.post("/v1/reviews/<case_id>/resolution")
@requires("pharmacist", "admin")
def resolve_review(case_id):
    body = json_body()
    with active_rulebook().use() as formulary:
        case = cases.resolve(current_instance(), formulary, case_id, body, g.principal[0])
    return jsonify(case), 201


@blueprint.post("/v1/reviews/<case_id>/facts")
@requires("clinician", "pharmacist", "admin")
def add_facts(case_id):
    body = json_body()
    if g.principal[1] == "clinician" and cases.get_case(current_instance(), case_id)["requester"] != g.principal[0]:
        return error_response(403, "forbidden", "a clinician may add facts only to the cases of their own requests")
    with active_rulebook().use() as formulary:
        decision = cases.attach_facts(current_instance(), formulary, case_id, body, g.principal[0])
    return jsonify(decision), 201


@blueprint.get("/v1/authorisations")
@requires("clinician", "pharmacist", "auditor", "admin")
def list_authorisations():
    ref = request.args.get("patient_ref")
    if not ref:
        raise RequestError("missing_field", "give patient_ref: authorisations are listed one patient at a time", "patient_ref")
    audit = current_instance().audit
    return jsonify({"authorisations": cases.authorisations_for(current_instance(), audit.patient_hash(ref))})


@blueprint.post("/v1/preapprovals")
@requires("pharmacist", "admin")
def preapprove():
    order = json_body()
    with active_rulebook().use() as formulary:
        result = preapproval.check(current_instance(), formulary, order, g.principal[0], utc_today())
    return jsonify(result)


@blueprint.post("/v1/preapprovals/batch")
@requires("pharmacist", "admin")
def preapprove_batch():
    """A JSON list of orders, or a CSV infusion list (text/csv body, or a multipart `file`)."""
    if request.mimetype == "text/csv":
        orders = preapproval.orders_from_csv(request.get_data(as_text=True))
    elif request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise RequestError("missing_field", "upload the infusion list as the form field 'file'", "file")
        orders = preapproval.orders_from_upload(upload)
    else:
        body = json_body()
        if not isinstance(body, list):
            raise RequestError("wrong_type", "send a JSON list of orders, or a CSV infusion list", "")
        orders = list(enumerate(body, start=1))
    preapproval.limit_batch(orders, "")
    with active_rulebook().use() as formulary:
        results = preapproval.check_batch(current_instance(), formulary, orders, g.principal[0], utc_today())
    dispensable = sum(1 for r in results if r.get("dispense"))
    return jsonify({"results": results, "summary": {"orders": len(results), "dispense": dispensable,
                                                    "hold": sum(1 for r in results if r.get("dispense") is False),
                                                    "errors": sum(1 for r in results if "error" in r)}})
