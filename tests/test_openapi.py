"""The OpenAPI document describes every endpoint, and real responses match it."""

import re

import jsonschema
import pytest

from .conftest import bearer


def _validator(document: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """A validator for one schema of the document, resolving its #/components references."""
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def _conforms(document: dict, path: str, method: str, response):
    operation = document["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented, f"{method.upper()} {path} answered {response.status_code}, which the document does not list"
    content = documented["content"]
    if response.mimetype == "text/csv":
        assert "text/csv" in content
        return
    assert response.mimetype in content, f"{method.upper()} {path} answered {response.mimetype}, not documented"
    _validator(document, content[response.mimetype]["schema"]).validate(response.get_json())


def test_every_api_route_is_documented(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("console_"):  # HTML pages, not the API
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # <int:id> is documented as {id}
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"].get(path, {}), f"{method} {path} is not documented"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_real_responses_match_the_document(client, tokens):
    document = client.get("/openapi.json").get_json()
    admin, clinician = bearer(tokens["admin"]), bearer(tokens["clinician"])
    ok = client.post(
        "/v1/decisions",
        json={"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-1"}},
        headers=clinician,
    )
    decision_id, authorisation_id = ok.get_json()["decision_id"], ok.get_json()["authorisation_id"]
    review = client.post(
        "/v1/decisions", json={"diagnosis": {"code": "G61.0"}, "patient": {"ref": "MRN-2"}}, headers=admin
    ).get_json()
    calls = [
        ("/v1/decisions", "post", ok),
        (
            "/v1/decisions",
            "post",
            client.post("/v1/decisions", json={"diagnosis": {"text": "chronic fatigue"}}, headers=admin),
        ),
        ("/v1/decisions", "post", client.post("/v1/decisions", json={"diagnosis": {"code": "G61.99"}}, headers=admin)),
        ("/v1/decisions", "post", client.post("/v1/decisions", json={"diagnosis": {"code": "G61.0"}}, headers={})),
        (
            "/v1/decisions",
            "post",
            client.post("/v1/decisions", json={"diagnosis": {"code": "G61.0"}}, headers=bearer(tokens["auditor"])),
        ),
        (
            "/v1/decisions",
            "post",
            client.post("/v1/decisions", data="x", headers={**admin, "Content-Type": "text/plain"}),
        ),
        ("/v1/decisions/{decision_id}", "get", client.get(f"/v1/decisions/{decision_id}", headers=clinician)),
        ("/v1/decisions/{decision_id}", "get", client.get("/v1/decisions/none", headers=admin)),
        (
            "/v1/decisions/{decision_id}/questionnaire",
            "get",
            client.get(f"/v1/decisions/{review['decision_id']}/questionnaire", headers=admin),
        ),
        (
            "/v1/decisions/{decision_id}/questionnaire",
            "get",
            client.get(f"/v1/decisions/{decision_id}/questionnaire", headers=clinician),
        ),
        (
            "/v1/decisions/{decision_id}/questionnaire",
            "get",
            client.get("/v1/decisions/none/questionnaire", headers=admin),
        ),
        (
            "/v1/reviews/{case_id}/facts",
            "post",
            client.post(
                f"/v1/reviews/{review['review_case_id']}/facts",
                data='{"resourceType": "QuestionnaireResponse", "status": "completed", "item": [{"linkId": "x"}]}',
                headers={**admin, "Content-Type": "application/fhir+json"},
            ),
        ),
        ("/v1/rulebook", "get", client.get("/v1/rulebook", headers=clinician)),
        ("/v1/rulebook/rules/{rule_id}", "get", client.get("/v1/rulebook/rules/pi-labelled", headers=clinician)),
        ("/v1/rulebook/rules/{rule_id}", "get", client.get("/v1/rulebook/rules/none", headers=clinician)),
        ("/v1/rulebook/reload", "post", client.post("/v1/rulebook/reload", headers=admin)),
        ("/v1/rulebook/versions", "get", client.get("/v1/rulebook/versions", headers=clinician)),
        ("/v1/rulebook/versions/{version}", "get", client.get("/v1/rulebook/versions/1.0.0", headers=clinician)),
        ("/v1/rulebook/versions/{version}", "get", client.get("/v1/rulebook/versions/0.0", headers=clinician)),
        (
            "/v1/rulebook/versions/{old}/diff/{new}",
            "get",
            client.get("/v1/rulebook/versions/1.0.0/diff/1.0.0", headers=clinician),
        ),
        (
            "/v1/decisions/{decision_id}/rulebook",
            "get",
            client.get(f"/v1/decisions/{decision_id}/rulebook", headers=clinician),
        ),
        ("/v1/decisions/{decision_id}/rulebook", "get", client.get("/v1/decisions/none/rulebook", headers=clinician)),
        ("/v1/audit", "get", client.get("/v1/audit?limit=2", headers=admin)),
        ("/v1/audit", "get", client.get("/v1/audit?outcome=maybe", headers=admin)),
        ("/v1/audit.csv", "get", client.get("/v1/audit.csv", headers=admin)),
        ("/v1/audit/verify", "get", client.get("/v1/audit/verify", headers=admin)),
        ("/v1/reviews", "get", client.get("/v1/reviews?status=all", headers=admin)),
        ("/v1/reviews/{case_id}", "get", client.get(f"/v1/reviews/{review['review_case_id']}", headers=admin)),
        (
            "/v1/reviews/{case_id}/resolution",
            "post",
            client.post(
                f"/v1/reviews/{review['review_case_id']}/resolution",
                json={"resolution": "more_information", "reason": "age?"},
                headers=admin,
            ),
        ),
        (
            "/v1/reviews/{case_id}/facts",
            "post",
            client.post(
                f"/v1/reviews/{review['review_case_id']}/facts", json={"patient": {"age_years": 4}}, headers=admin
            ),
        ),
        (
            "/v1/reviews/{case_id}/resolution",
            "post",
            client.post(
                f"/v1/reviews/{review['review_case_id']}/resolution",
                json={"resolution": "denied", "reason": "x"},
                headers=admin,
            ),
        ),
        ("/v1/authorisations", "get", client.get("/v1/authorisations?patient_ref=MRN-2", headers=admin)),
        (
            "/v1/authorisations",
            "get",
            client.get("/v1/authorisations?expiring_within_days=365&include_overdue=true&limit=1", headers=admin),
        ),
        ("/v1/authorisations", "get", client.get("/v1/authorisations?expiring_within_days=0", headers=admin)),
        (
            "/v1/authorisations/{authorisation_id}/measurements",
            "post",
            client.post(
                f"/v1/authorisations/{authorisation_id}/measurements",
                json={"measure": "igg_serum", "value": 7.1, "unit": "g/L", "taken_on": "2026-01-20"},
                headers=clinician,
            ),
        ),
        (
            "/v1/authorisations/{authorisation_id}/measurements",
            "post",
            client.post(
                f"/v1/authorisations/{authorisation_id}/measurements",
                json={"measure": "igg_serum", "value": 7.1, "unit": "g/dL", "taken_on": "2026-01-20"},
                headers=clinician,
            ),
        ),
        (
            "/v1/authorisations/{authorisation_id}",
            "get",
            client.get(f"/v1/authorisations/{authorisation_id}", headers=clinician),
        ),
        ("/v1/authorisations/{authorisation_id}", "get", client.get("/v1/authorisations/none", headers=admin)),
        (
            "/v1/preapprovals",
            "post",
            client.post(
                "/v1/preapprovals",
                json={
                    "patient": {"ref": "MRN-2", "age_years": 4, "weight_kg": 16},
                    "diagnosis": {"code": "G61.0"},
                    "product": "Gamunex-C",
                    "dose": {"g_per_kg": 2.0, "interval_days": 28},
                },
                headers=admin,
            ),
        ),
        (
            "/v1/preapprovals/batch",
            "post",
            client.post("/v1/preapprovals/batch", json=[{"patient": {}}], headers=admin),
        ),
        ("/healthz", "get", client.get("/healthz")),
        ("/openapi.json", "get", client.get("/openapi.json")),
    ]
    for path, method, response in calls:
        _conforms(document, path, method, response)
    with pytest.raises(jsonschema.ValidationError):  # the schemas are strict enough to catch drift
        _conforms(document, "/v1/decisions", "post", _Fake(201, {**ok.get_json(), "surprise": 1}))
    statuses = {(path, response.status_code) for path, _, response in calls}
    assert {
        ("/v1/decisions", 201),
        ("/v1/decisions", 400),
        ("/v1/decisions", 401),
        ("/v1/decisions", 403),
        ("/v1/decisions", 415),
        ("/v1/authorisations/{authorisation_id}/measurements", 201),
        ("/v1/authorisations/{authorisation_id}/measurements", 400),
        ("/v1/authorisations", 400),
        ("/v1/decisions/{decision_id}/questionnaire", 200),
        ("/v1/decisions/{decision_id}/questionnaire", 404),
        ("/v1/decisions/{decision_id}/questionnaire", 409),
        ("/v1/reviews/{case_id}/facts", 400),
    } <= statuses


class _Fake:
    """A response-like object, to show a drifted body fails validation."""

    mimetype = "application/json"

    def __init__(self, status_code, body):
        self.status_code, self._body = status_code, body

    def get_json(self):
        return self._body
