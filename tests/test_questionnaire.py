"""Missing facts as a FHIR R4 Questionnaire (issue 16), and a QuestionnaireResponse as the facts of a case.

Decided on the test rulebook (tests/rulebook/ivig-test.yaml): `cll-low-igg` misses an IgG observation
with a window, `evans-criteria` the qualifying criteria and a failed therapy's weeks,
`stiff-person-criteria` the patient facts. Every resource is checked with fhir.resources' R4B models
(R4B is R4 for Questionnaire, QuestionnaireResponse and OperationOutcome). The app fixtures run on
SQLite and, when it is reachable, PostgreSQL (tests/conftest.py skips it saying why when not).
"""

import datetime
import json

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from service import clock
from service.rulebook.facts import describe_fact, fact_of, failed_weeks_fact, observation_fact

from .conftest import bearer, sign_in

FHIR = "application/fhir+json"
TODAY = datetime.date(2026, 12, 1)
UNIT_OPTION = "http://hl7.org/fhir/StructureDefinition/questionnaire-unitOption"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
CLL = {"diagnosis": {"code": "C91.10"}, "patient": {"age_years": 70, "ref": "MRN-Q-0001"}}
EVANS = {"diagnosis": {"code": "D69.41"}, "patient": {"ref": "MRN-Q-0002"}, "therapies": {"failed": ["prednisone"]}}
STIFF = {"diagnosis": {"code": "G25.82"}, "patient": {"ref": "MRN-Q-0003"}}


@pytest.fixture(autouse=True)
def _on_2026_12_01(monkeypatch):
    moment = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(clock, "now", lambda: moment)


def decide(client, token, body) -> dict:
    response = client.post("/v1/decisions", json=body, headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def questionnaire(client, token, decision_id) -> dict:
    response = client.get(f"/v1/decisions/{decision_id}/questionnaire", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == FHIR
    resource = json.loads(response.get_data())
    Questionnaire.model_validate(resource)  # a valid R4 Questionnaire, or this raises
    return resource


def items(resource: dict) -> dict[str, dict]:
    return {item["linkId"]: item for item in resource["item"]}


def answered(questionnaire_url: str, answers: list[dict]) -> dict:
    response = {"resourceType": "QuestionnaireResponse", "questionnaire": questionnaire_url, "status": "completed"}
    response["item"] = answers
    QuestionnaireResponse.model_validate(response)
    return response


def answer(link: str, **value) -> dict:
    return {"linkId": link, "answer": [value]}


def code(word: str) -> dict:
    return {"valueCoding": {"code": word}}


def send(client, token, case_id, resource, content_type=FHIR):
    data = resource if isinstance(resource, str) else json.dumps(resource)
    return client.post(
        f"/v1/reviews/{case_id}/facts", data=data, headers={**bearer(token), "Content-Type": content_type}
    )


# --- The fact names the Questionnaire's linkIds are ------------------------------------------------


@pytest.mark.parametrize(
    "fact",
    [
        "patient.age_years",
        "patient.sex",
        "therapies.failed",
        "course",
        observation_fact("igg_serum", 90),
        observation_fact("igg_serum", 0),
        observation_fact("platelets", None),
        failed_weeks_fact("corticosteroids"),
    ],
)
def test_a_missing_entry_reads_back_as_the_fact_it_describes(fact):
    assert fact_of(describe_fact(fact, TODAY), TODAY) == fact


# --- GET /v1/decisions/<id>/questionnaire -----------------------------------------------------------


def test_a_missing_observation_is_a_group_of_a_quantity_in_its_units_and_the_date_it_needs(client, tokens):
    decision = decide(client, tokens["clinician"], CLL)
    assert decision["missing"] == ["igg_serum taken on or after 2026-09-02"]
    resource = questionnaire(client, tokens["clinician"], decision["decision_id"])
    assert resource["status"] == "active" and resource["url"] == f"urn:uuid:{decision['decision_id']}"
    assert decision["review_case_id"] in resource["description"]
    [group] = resource["item"]
    assert (group["linkId"], group["type"], group["required"]) == ("observation:igg_serum@90", "group", True)
    value, taken_on = group["item"]
    assert (value["linkId"], value["type"]) == ("observation:igg_serum@90.value", "quantity")
    units = [e["valueCoding"]["code"] for e in value["extension"] if e["url"] == UNIT_OPTION]
    assert units == ["g/L", "mg/dL"]  # data/measures.yaml's units, the canonical one first
    assert (taken_on["linkId"], taken_on["type"]) == ("observation:igg_serum@90.taken_on", "date")
    assert taken_on["extension"] == [{"url": MIN_VALUE, "valueDate": "2026-09-02"}]
    assert "2026-09-02" in group["text"]


def test_missing_patient_facts_are_choices_with_answer_options_and_typed_items(client, tokens):
    decision = decide(client, tokens["clinician"], STIFF)
    assert decision["rule"]["id"] == "stiff-person-criteria"
    asked = items(questionnaire(client, tokens["clinician"], decision["decision_id"]))
    assert list(asked) == ["patient.age_years", "patient.sex", "patient.pregnant", "severity", "therapies.concurrent"]
    sex = asked["patient.sex"]
    assert sex["type"] == "choice" and "repeats" not in sex
    assert [o["valueCoding"]["code"] for o in sex["answerOption"]] == ["female", "male", "other", "unknown"]
    assert asked["patient.age_years"]["type"] == "decimal"
    assert asked["patient.pregnant"]["type"] == "boolean"
    assert [o["valueCoding"]["code"] for o in asked["severity"]["answerOption"]] == ["mild", "moderate", "severe"]
    concurrent = asked["therapies.concurrent"]
    assert concurrent["type"] == "choice" and concurrent["repeats"] is True
    options = {o["valueCoding"]["code"]: o["valueCoding"]["display"] for o in concurrent["answerOption"]}
    assert options["corticosteroids"] == "Corticosteroids (systemic)"  # the test rulebook's therapies


def test_missing_criteria_are_choices_from_the_reference_data_and_weeks_an_integer(client, tokens, app):
    decision = decide(client, tokens["clinician"], EVANS)
    assert decision["missing"][0] == "therapies.failed[corticosteroids].weeks"
    asked = items(questionnaire(client, tokens["clinician"], decision["decision_id"]))
    assert asked["failed_weeks:corticosteroids"]["type"] == "integer"
    rulebook = app.extensions["active_rulebook"].current.rulebook
    for link, vocabulary in (
        ("diagnosis.confirmed_by", rulebook.specialties),
        ("prescriber.specialty", rulebook.specialties),
        ("diagnosis.phase", rulebook.phases),
    ):
        assert [o["valueCoding"]["code"] for o in asked[link]["answerOption"]] == list(vocabulary)
    assert [o["valueCoding"]["code"] for o in asked["course"]["answerOption"]] == [
        "initial",
        "continuation",
        "one_off",
    ]
    assert asked["observation:platelets@30"]["type"] == "group"


def test_a_decision_missing_nothing_has_no_questionnaire_409(client, tokens):
    decision = decide(client, tokens["clinician"], {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}})
    assert decision["outcome"] == "off_label_with_evidence"
    response = client.get(f"/v1/decisions/{decision['decision_id']}/questionnaire", headers=bearer(tokens["admin"]))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "no_missing_facts"


def test_an_unknown_decision_is_404(client, tokens):
    response = client.get("/v1/decisions/no-such-decision/questionnaire", headers=bearer(tokens["pharmacist"]))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_the_questionnaire_is_read_by_the_roles_that_read_the_decision(app, client, tokens):
    decision_id = decide(client, tokens["clinician"], CLL)["decision_id"]
    path = f"/v1/decisions/{decision_id}/questionnaire"
    for role in ("clinician", "pharmacist", "auditor", "admin"):
        assert client.get(path, headers=bearer(tokens[role])).status_code == 200, role
    assert client.get(path).status_code == 401
    from service.store.tokens import create_token

    other = create_token(app.extensions["instance"].database, "other-clinician", "clinician")
    refused = client.get(path, headers=bearer(other))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == "a clinician may read only the decisions they submitted"


# --- POST /v1/reviews/<id>/facts with a QuestionnaireResponse -------------------------------------------


def test_answering_the_questionnaire_decides_the_case_again_with_those_facts(client, tokens):
    clinician = tokens["clinician"]
    decision = decide(client, clinician, STIFF)
    resource = questionnaire(client, clinician, decision["decision_id"])
    response = answered(
        resource["url"],
        [
            answer("patient.age_years", valueDecimal=42.5),
            answer("patient.sex", valueCoding={"code": "female", "display": "Female"}),
            answer("patient.pregnant", valueBoolean=False),
            answer("severity", valueString="severe"),
            {"linkId": "therapies.concurrent", "answer": [code("corticosteroids"), code("rituximab")]},
        ],
    )
    sent = send(client, clinician, decision["review_case_id"], response)
    assert sent.status_code == 201, sent.get_data(as_text=True)
    again = sent.get_json()
    assert (again["outcome"], again["rule"]["id"]) == ("off_label_with_evidence", "stiff-person-criteria")
    case = client.get(f"/v1/reviews/{decision['review_case_id']}", headers=bearer(tokens["admin"])).get_json()
    assert case["status"] == "closed_by_rules" and case["decision"]["decision_id"] == again["decision_id"]


def test_an_observation_and_therapy_weeks_answered_join_what_the_case_has(client, tokens, app):
    clinician = tokens["clinician"]
    decision = decide(client, clinician, EVANS)
    resource = questionnaire(client, clinician, decision["decision_id"])
    response = answered(
        resource["url"],
        [
            answer("failed_weeks:corticosteroids", valueInteger=12),
            {
                "linkId": "observation:platelets@30",
                "item": [
                    answer(
                        "observation:platelets@30.value",
                        valueQuantity={"value": 25000, "unit": "/uL", "code": "/uL"},
                    ),
                    answer("observation:platelets@30.taken_on", valueDate="2026-11-20"),
                ],
            },
            answer("diagnosis.confirmed_by", **code("haematologist")),
            answer("prescriber.specialty", **code("immunologist")),
            answer("diagnosis.phase", **code("chronic")),
            answer("course", **code("initial")),
        ],
    )
    sent = send(client, clinician, decision["review_case_id"], response)
    assert sent.status_code == 201, sent.get_data(as_text=True)
    assert (sent.get_json()["outcome"], sent.get_json()["rule"]["id"]) == ("off_label_with_evidence", "evans-criteria")
    kept = app.extensions["instance"].audit.decision(sent.get_json()["decision_id"])["body"]["request"]
    assert kept["therapies"] == {"failed": [{"name": "prednisone", "weeks": 12}]}  # as the requester wrote it
    assert kept["observations"] == [{"measure": "platelets", "value": 25000, "unit": "/uL", "taken_on": "2026-11-20"}]
    assert kept["diagnosis"]["phase"] == "chronic" and kept["prescriber"] == {"specialty": "immunologist"}


def test_a_partial_answer_decides_again_and_still_names_what_is_missing(client, tokens):
    decision = decide(client, tokens["clinician"], STIFF)
    sent = send(
        client,
        tokens["clinician"],
        decision["review_case_id"],
        answered("urn:uuid:x", [answer("patient.sex", **code("male"))]),
    )
    assert sent.status_code == 201
    assert (sent.get_json()["outcome"], sent.get_json()["rule"]["id"]) == ("needs_review", "stiff-person-review")


def test_a_plain_json_body_is_still_the_request_fields(client, tokens):
    decision = decide(client, tokens["clinician"], CLL)
    facts = {"observations": [{"measure": "igg_serum", "value": 3.1, "unit": "g/L", "taken_on": "2026-11-01"}]}
    sent = send(client, tokens["clinician"], decision["review_case_id"], facts, content_type="application/json")
    assert sent.status_code == 201 and sent.get_json()["outcome"] == "off_label_with_evidence"


IGG = "observation:igg_serum@90"


def igg(value=None, taken_on=None) -> dict:
    children = []
    if value is not None:
        children.append({"linkId": f"{IGG}.value", "answer": [{"valueQuantity": value}]})
    if taken_on is not None:
        children.append({"linkId": f"{IGG}.taken_on", "answer": [{"valueDate": taken_on}]})
    return {"linkId": IGG, "item": children}


def response_of(*answers) -> dict:
    return {"resourceType": "QuestionnaireResponse", "status": "completed", "item": list(answers)}


@pytest.mark.parametrize(
    "body, issue, names",
    [
        ('{"resourceType": "QuestionnaireResponse", "status": ', "structure", "not valid JSON"),
        ({"resourceType": "Questionnaire", "status": "active"}, "structure", "QuestionnaireResponse"),
        ({"resourceType": "QuestionnaireResponse", "item": []}, "value", "status"),
        (response_of(answer("patient.ref", valueString="MRN-Q-0001")), "not-found", "'patient.ref'"),
        (response_of(answer("patient.age_years", valueString="MRN-Q-0001")), "structure", "patient.age_years"),
        (response_of(answer("patient.age_years", valueDecimal=131)), "value", "patient.age_years"),
        (response_of(answer("patient.pregnant", valueInteger=1)), "structure", "patient.pregnant"),
        (response_of(answer("patient.sex", **code("MRN-Q-0001"))), "code-invalid", "patient.sex"),
        (response_of(answer("failed_weeks:corticosteroids", valueInteger=600)), "value", "failed_weeks"),
        (response_of(igg({"value": 3.2, "unit": "g/dL"}, "2026-11-01")), "code-invalid", f"{IGG}.unit"),
        (response_of(igg({"value": 300, "unit": "g/L"}, "2026-11-01")), "value", f"{IGG}.value"),
        (response_of(igg({"value": 3.2, "unit": "g/L"}, "2026-12-24")), "value", f"{IGG}.taken_on"),
        (response_of(igg({"value": 3.2, "unit": "g/L"})), "required", f"{IGG}.taken_on"),
        (response_of(igg({"value": 3.2, "unit": "g/L"}, "2026-13-01")), "value", f"{IGG}.taken_on"),
        (response_of({"linkId": "patient.sex", "answer": [{"valueDecimal": True}]}), "value", "patient.sex"),
        (response_of({"linkId": "severity"}), "required", "answers no question"),
    ],
)
def test_an_invalid_response_is_a_400_operation_outcome_naming_the_item(client, tokens, app, body, issue, names):
    decision = decide(client, tokens["clinician"], CLL)
    sent = send(client, tokens["clinician"], decision["review_case_id"], body)
    assert sent.status_code == 400, sent.get_data(as_text=True)
    assert sent.mimetype == FHIR
    outcome = json.loads(sent.get_data())
    OperationOutcome.model_validate(outcome)
    [problem] = outcome["issue"]
    assert (problem["severity"], problem["code"]) == ("error", issue), problem
    assert names in problem["diagnostics"]
    assert "MRN-Q-0001" not in sent.get_data(as_text=True)
    from service.store.audit import Filters

    [refusal] = [r for r in app.extensions["instance"].audit.stream(Filters()) if r["kind"] == "refusal"]
    assert refusal["body"]["error"]["message"] == problem["diagnostics"]  # on the record as any refusal
    case = client.get(f"/v1/reviews/{decision['review_case_id']}", headers=bearer(tokens["admin"])).get_json()
    assert case["decision"]["decision_id"] == decision["decision_id"]  # nothing was decided


def test_a_response_to_someone_elses_case_is_refused_403(app, client, tokens):
    from service.store.tokens import create_token

    decision = decide(client, tokens["clinician"], STIFF)
    other = create_token(app.extensions["instance"].database, "other-clinician", "clinician")
    sent = send(client, other, decision["review_case_id"], response_of(answer("patient.sex", **code("female"))))
    assert sent.status_code == 403
    assert sent.get_json()["error"]["code"] == "forbidden"


def test_a_response_to_an_unknown_case_is_404(client, tokens):
    sent = send(client, tokens["pharmacist"], "no-such-case", response_of(answer("patient.sex", **code("female"))))
    assert sent.status_code == 404


# --- The console -----------------------------------------------------------------------------------------


def test_the_case_page_links_the_questionnaire_to_download(client, tokens):
    decision = decide(client, tokens["clinician"], CLL)
    sign_in(client, tokens["pharmacist"])
    page = client.get(f"/console/reviews/{decision['review_case_id']}").get_data(as_text=True)
    link = f"/console/decisions/{decision['decision_id']}/questionnaire"
    assert link in page
    download = client.get(link)
    assert download.status_code == 200 and download.mimetype == FHIR
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert Questionnaire.model_validate(json.loads(download.get_data())).item[0].linkId == IGG
