"""The role table is the one source of who may do what: the API, the console and the API
document follow a change to it without another edit."""

from service.store.tokens import ROLES, Principal
from service.web import roles
from service.web.errors import Refusal
from service.web.openapi import DOCUMENT

from .conftest import bearer, sign_in


def test_a_role_given_an_action_in_the_table_gets_it_in_the_api_and_the_console(client, tokens, monkeypatch):
    assert client.get("/v1/audit", headers=bearer(tokens["clinician"])).status_code == 403
    widened = roles.Permission(("clinician", "auditor", "admin"))
    monkeypatch.setitem(roles.PERMISSIONS, "read_audit", widened)
    assert client.get("/v1/audit", headers=bearer(tokens["clinician"])).status_code == 200
    sign_in(client, tokens["clinician"])
    assert client.get("/console/audit").status_code == 200
    assert "Audit log" in client.get("/console/formulary").get_data(as_text=True)  # and the menu offers it


def test_every_role_the_table_names_is_a_role_a_token_can_carry():
    named = {role for permission in roles.PERMISSIONS.values() for role in (*permission.roles, *permission.own_only)}
    assert named <= set(ROLES)


def test_a_role_limited_to_its_own_records_is_refused_anothers_with_the_actions_reason():
    clinician = Principal("ward-7", "clinician")
    roles.check_owner(clinician, "read_case", "ward-7")
    roles.check_owner(Principal("pharmacy", "pharmacist"), "read_case", "ward-7")
    try:
        roles.check_owner(clinician, "read_case", "ward-9")
    except Refusal as refusal:
        assert (refusal.status, refusal.message) == (403, "a clinician may read only the cases of their own requests")
    else:
        raise AssertionError("a clinician read another clinician's case")


def test_the_api_document_says_who_may_call_each_endpoint_as_the_table_does():
    operation = DOCUMENT["paths"]["/v1/decisions/{decision_id}"]["get"]
    assert operation["description"] == "Roles: clinician (own decisions), pharmacist, auditor, admin."
