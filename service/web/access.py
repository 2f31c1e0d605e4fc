"""Reads of patient data on the record (access logging, as hospital audit controls require).

Every successful answer (2xx) to an action the role table marks `reads_patient_data` (a decision,
a case, the review queue, a patient's authorisations, the audit log) is an `access` record: who
(the requester), what (the action, the method and path, which name the record read, and the
names of the query's parameters, never their values), the patient as the keyed hash when the
query names one, and when. The record commits before the answer is sent; when it cannot be
written the caller gets 503 instead, as for a decision. Pre-approvals are on the record already
(one `preapproval` record an order), as are decisions, resolutions and refusals.
"""

from flask import current_app, g, request

from service.decide.request import patient_ref
from service.web.context import current_instance
from service.web.roles import PERMISSIONS


def answer(action: str, view, args, kwargs):
    """The view's response, after the access record when the action reads patient data."""
    response = current_app.make_response(view(*args, **kwargs))
    if PERMISSIONS[action].reads_patient_data and 200 <= response.status_code < 300:
        audit = current_instance().audit
        ref = patient_ref(request.args.get("patient_ref") or None, "patient_ref")  # as the view read it
        audit.append(
            "access",
            {"action": action, "method": request.method, "path": request.path, "query": sorted(request.args)},
            requester=g.principal.name,
            status=response.status_code,
            patient_ref_hash=audit.patient_hash(ref) if ref else None,
        )
    return response
