"""CDS Hooks order entry (issue 19): discovery, order-select and order-sign on the test rulebook
(MINI_RULES), every JWT refusal, missing prefetch and fetch-on-miss from a local FHIR stub, feedback.
Every response is validated against tests/schemas/cds_hooks_response.schema.json."""

import copy
import http.server
import json
import threading
import time
import uuid
from pathlib import Path

import jsonschema
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.task import Task

from service.store import cds_clients
from tests.conftest import MINI_DATA, write_rulebook

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "cds_hooks_response.schema.json").read_text())
ISS = "https://ehr.example.org"
BASE = "http://localhost"

ORDER_ENTRY = {
    "generic_names": ["immune globulin", "IVIG"],
    "observations": [
        {"loinc": "29463-7", "field": "patient.weight_kg"},
        {"loinc": "8302-2", "field": "patient.height_cm"},
        {"loinc": "82810-3", "field": "patient.pregnant", "pregnant": ["77386006"], "not_pregnant": ["60001007"]},
    ],
    "override_reasons": {"system": "urn:test:override", "codes": {"urgent": "Urgent", "other": "Other"}},
}


def _data():
    data = copy.deepcopy(MINI_DATA)
    data["products.yaml"]["products"][0]["rxnorm"] = ["9000001"]  # Alpha, by a fixture code
    data["order_entry.yaml"] = ORDER_ENTRY
    return data


class Keys:
    def __init__(self, kid="k1", algorithm="ES384"):
        self.kid, self.algorithm = kid, algorithm
        self.private = (
            ec.generate_private_key(ec.SECP384R1())
            if algorithm.startswith("ES")
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        algo = jwt.algorithms.ECAlgorithm if algorithm.startswith("ES") else jwt.algorithms.RSAAlgorithm
        self.public_jwk = {**json.loads(algo.to_jwk(self.private.public_key())), "kid": kid, "alg": algorithm}

    def jwks(self) -> str:
        return json.dumps({"keys": [self.public_jwk]})

    def token(self, path, **changes) -> str:
        now = int(time.time())
        claims = {"iss": ISS, "aud": BASE + path, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
        headers = {"kid": self.kid, "typ": "JWT", **changes.pop("headers", {})}
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=changes.pop("algorithm", self.algorithm), headers=headers)


@pytest.fixture
def ehr(make_app, tmp_path):
    app = make_app(RULEBOOK=str(write_rulebook(tmp_path / "rb", data=_data())))
    instance = app.extensions["instance"]
    keys = Keys()
    cds_clients.add_client(instance.database, instance.audit, ISS, keys.jwks(), None, ["http://127.0.0.1"], "test")
    return app, app.test_client(), keys


def _medication_request(rid="mr1", text="Alpha 10% solution", codes=(), icd="G61.81", dose=(137, "g"), **extra):
    concept = {"text": text}
    if codes:
        concept["coding"] = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": c} for c in codes]
    resource = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2026-11-30",
        "medicationCodeableConcept": concept,
        **({"reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd}]}]} if icd else {}),
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": dose[0],
                            "unit": dose[1],
                            "system": "http://unitsofmeasure.org",
                            "code": dose[1],
                        }
                    }
                ],
            }
        ],
        **extra,
    }
    return MedicationRequest.model_validate(resource).model_dump(mode="json", exclude_none=True)


def _observation(loinc, value, unit):
    return Observation.model_validate(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
            "effectiveDateTime": "2026-11-01",
        }
    ).model_dump(mode="json", exclude_none=True)


def _searchset(*resources):
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _prefetch(birth="1976-05-01", gender="male", weight=70, height=175, medications=()):
    return {
        "patient": Patient.model_validate(
            {"resourceType": "Patient", "id": "p1", "birthDate": birth, "gender": gender}
        ).model_dump(mode="json", exclude_none=True),
        "conditions": None,
        "medications": _searchset(*medications) if medications else None,
        "weight": _searchset(_observation("29463-7", weight, "kg")),
        "height": _searchset(_observation("8302-2", height, "cm")),
        "pregnancy": None,
    }


def _call(hook="order-sign", orders=(), prefetch=None, **extra):
    context = {
        "userId": "Practitioner/dr-1",
        "patientId": "p1",
        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": o} for o in orders]},
    }
    if hook == "order-select":
        context["selections"] = [
            f"MedicationRequest/{o['id']}" for o in orders if o["resourceType"] == "MedicationRequest"
        ]
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, **extra}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _post(ehr, body, service="ivig-order-sign", token=None):
    app, client, keys = ehr
    path = f"/cds-services/{service}"
    token = token if token is not None else keys.token(path)
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def _cards(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    jsonschema.validate(response.get_json(), SCHEMA)
    return response.get_json()["cards"]


def _records(app, kind):
    with app.extensions["instance"].sql_engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT requester, content FROM audit_records WHERE kind = ? ORDER BY id".replace(
                "?", "%s" if connection.dialect.name == "postgresql" else "?"
            ),
            (kind,),
        ).all()
    return [(r.requester, json.loads(r.content)["body"]) for r in rows]


def test_discovery_lists_both_services_with_their_prefetch_templates(ehr):
    app, client, keys = ehr
    response = client.get("/cds-services", headers={"Authorization": f"Bearer {keys.token('/cds-services')}"})
    assert response.status_code == 200
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert services["ivig-order-select"]["hook"] == "order-select"
    assert services["ivig-order-sign"]["hook"] == "order-sign"
    prefetch = services["ivig-order-sign"]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert "29463-7" in prefetch["weight"] and "8302-2" in prefetch["height"]
    assert prefetch["conditions"].startswith("Condition?patient={{context.patientId}}")
    assert prefetch["medications"].startswith("MedicationRequest?patient={{context.patientId}}")
    for service in services.values():
        assert service["title"] and service["description"]


def test_labelled_order_is_approved_info_with_a_dose_suggestion_in_the_products_vials(ehr):
    app, client, keys = ehr
    cards = _cards(_post(ehr, _call(orders=[_medication_request(codes=["9000001"])], prefetch=_prefetch())))
    (card,) = cards
    assert card["indicator"] == "info" and card["summary"].startswith("Approved (FDA-labelled): IVIG (Alpha)")
    assert len(card["summary"]) < 140
    assert card["source"]["url"] == f"{BASE}/console/formulary?q=cidp-labelled#cidp-labelled"
    (suggestion,) = card["suggestions"]
    assert suggestion["label"].startswith("Change the dose to 135 g")
    resource = suggestion["actions"][0]["resource"]
    assert resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 135
    assert "overrideReasons" not in card
    ((requester, body),) = _records(app, "decision")
    assert requester == f"{ISS}/Practitioner/dr-1"
    assert body["decision"]["decision_id"] == card["uuid"]
    assert body["origin"]["hook"] == "order-sign" and body["origin"]["order"] == "MedicationRequest/mr1"


def test_a_dose_already_in_whole_vials_gets_no_suggestion(ehr):
    (card,) = _cards(_post(ehr, _call(orders=[_medication_request(dose=(2, "g/kg"))], prefetch=_prefetch())))
    assert card["indicator"] == "info" and "suggestions" not in card  # 2 g/kg x 70 kg = 140 g: 14 x 10 g


def test_off_label_with_evidence_is_info(ehr):
    order = _medication_request(icd="G61.0", dose=(2, "g/kg"))
    (card,) = _cards(_post(ehr, _call(orders=[order], prefetch=_prefetch(birth="2016-01-01", weight=30, height=130))))
    assert card["indicator"] == "info" and card["summary"].startswith("Approved off-label")


def test_needs_review_is_a_warning_with_the_review_case_and_override_reasons(ehr):
    order = _medication_request(icd="G61.0", dose=(2, "g/kg"))
    (card,) = _cards(_post(ehr, _call(orders=[order], prefetch=_prefetch())))
    assert card["indicator"] == "warning" and card["summary"].startswith("Needs pharmacist review")
    assert card["links"][0]["label"] == "Review case" and "/console/reviews/" in card["links"][0]["url"]
    assert [r["code"] for r in card["overrideReasons"]] == ["urgent", "other"]
    assert all(r["display"] for r in card["overrideReasons"])


def test_not_supported_is_critical_with_override_reasons(ehr):
    rituximab = _medication_request(rid="rx", text="rituximab 10 MG/ML", icd=None)
    rituximab["status"] = "active"
    order = _medication_request(icd="M33.10", dose=(2, "g/kg"))
    (card,) = _cards(_post(ehr, _call(orders=[order], prefetch=_prefetch(medications=[rituximab]))))
    assert card["indicator"] == "critical" and card["summary"].startswith("Not supported")
    assert "suggestions" not in card and card["overrideReasons"]


def test_missing_facts_are_in_the_card_never_an_error(ehr):
    order = _medication_request(icd="M33.10", dose=(2, "g/kg"))
    (card,) = _cards(_post(ehr, _call(orders=[order], prefetch={"patient": _prefetch()["patient"]})))
    assert card["indicator"] == "warning"
    assert "**Missing facts**" in card["detail"] and "therapies" in card["detail"]
    assert "weight (not available" in card["detail"]
    assert any("Questionnaire" in link["label"] for link in card["links"])


def test_missing_facts_come_with_a_task_that_holds_their_questionnaire(ehr):
    order = _medication_request(icd="M33.10", dose=(2, "g/kg"))
    (card,) = _cards(_post(ehr, _call(orders=[order], prefetch={"patient": _prefetch()["patient"]})))
    (suggestion,) = [s for s in card["suggestions"] if s["actions"][0]["type"] == "create"]
    task = suggestion["actions"][0]["resource"]
    Task.model_validate(task)  # a valid R4 Task
    assert task["code"]["coding"][0]["code"] == "complete-questionnaire"
    assert task["basedOn"] == [{"reference": "MedicationRequest/mr1"}] and task["for"] == {"reference": "Patient/p1"}
    (form,) = task["contained"]
    assert form["resourceType"] == "Questionnaire" and form["id"] == card["uuid"] and form["item"]
    assert task["input"][0]["valueCanonical"] == f"#{form['id']}"


def test_an_unlabelled_product_gets_a_suggestion_to_switch_to_each_labelled_one(ehr):
    order = _medication_request(text="Gamma 10%", icd="D80.0", dose=(0.4, "g/kg"))
    child = _prefetch(birth="2021-06-01", weight=18, height=110)
    (card,) = _cards(_post(ehr, _call(orders=[order], prefetch=child)))
    assert card["indicator"] == "warning"  # Gamma's label starts at 12 years: pi-other sends it to review
    assert "Gamma is not labelled for this indication for this patient; Alpha, Beta are." in card["detail"]
    switches = card["suggestions"]
    assert [s["label"].split(" instead")[0] for s in switches] == ["Order Alpha", "Order Beta"]
    assert card["selectionBehavior"] == "at-most-one"
    alpha = switches[0]["actions"][0]["resource"]["medicationCodeableConcept"]
    assert alpha == {
        "text": "Alpha",
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "9000001"}],
    }
    MedicationRequest.model_validate(switches[1]["actions"][0]["resource"])


def test_a_labelled_product_gets_no_switch_suggestion(ehr):
    order = _medication_request(text="Beta 10%", icd="D80.0", dose=(0.4, "g/kg"))
    (card,) = _cards(_post(ehr, _call(orders=[order], prefetch=_prefetch(birth="2021-06-01", weight=18, height=110))))
    assert card["indicator"] == "info"
    assert not any("instead" in s["label"] for s in card.get("suggestions", []))


def test_an_order_without_an_indication_gets_a_warning_card_on_the_record(ehr):
    app, _, _ = ehr
    (card,) = _cards(_post(ehr, _call(orders=[_medication_request(icd=None)], prefetch=_prefetch())))
    assert card["indicator"] == "warning" and "indication" in card["detail"]
    ((_, body),) = _records(app, "cds_order_undecided")
    assert body["card"] == card["uuid"]


def test_non_ivig_orders_get_no_cards_as_in_the_specifications_example(ehr):
    # The order-sign R4 example of the CDS Hooks specification (hooks/order-sign.md), abridged.
    example = {
        "context": {
            "userId": "PractitionerRole/123",
            "patientId": "1288992",
            "encounterId": "89284",
            "draftOrders": {
                "resourceType": "Bundle",
                "entry": [
                    {"resource": {"resourceType": "NutritionOrder", "id": "pureeddiet-simple", "status": "draft"}},
                    {
                        "resource": {
                            "resourceType": "MedicationRequest",
                            "id": "smart-MedicationRequest-103",
                            "status": "draft",
                            "intent": "order",
                            "medicationCodeableConcept": {
                                "coding": [
                                    {
                                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                        "code": "617993",
                                        "display": "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension",
                                    }
                                ]
                            },
                            "subject": {"reference": "Patient/1288992"},
                        }
                    },
                ],
            },
        },
        "hook": "order-sign",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    }
    assert _cards(_post(ehr, example)) == []


def test_several_orders_in_one_bundle_get_one_card_each(ehr):
    orders = [
        _medication_request(rid="a", dose=(2, "g/kg")),
        _medication_request(rid="b", text="Paracetamol 500 MG", icd="G61.0"),
        _medication_request(rid="c", text="immune globulin intravenous 10%", icd="G61.0", dose=(2, "g/kg")),
    ]
    cards = _cards(_post(ehr, _call(orders=orders, prefetch=_prefetch())))
    refs = [c["extension"]["davinci-crd.associated-resource"][0]["reference"] for c in cards]
    assert refs == ["MedicationRequest/a", "MedicationRequest/c"]
    assert [c["indicator"] for c in cards] == ["info", "warning"]


def test_order_select_decides_only_the_selected_orders(ehr):
    orders = [_medication_request(rid="a", dose=(2, "g/kg")), _medication_request(rid="b", dose=(2, "g/kg"))]
    body = _call(hook="order-select", orders=orders, prefetch=_prefetch())
    body["context"]["selections"] = ["MedicationRequest/b"]
    cards = _cards(_post(ehr, body, service="ivig-order-select"))
    assert [c["extension"]["davinci-crd.associated-resource"][0]["reference"] for c in cards] == ["MedicationRequest/b"]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.update(hook="patient-view"), "hook"),
        (lambda b: b["context"].pop("draftOrders"), "context.draftOrders"),
        (lambda b: b["context"].pop("userId"), "context.userId"),
        (lambda b: b.update(prefetch={"patient": "Patient/1"}), "prefetch.patient"),
        (
            lambda b: b.update(
                fhirAuthorization={
                    "access_token": "t",
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "s",
                    "subject": "x",
                }
            ),
            "fhirServer",
        ),
        (
            lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].update(status=5),
            "context.draftOrders.entry[0].resource.status",
        ),
    ],
)
def test_a_request_that_is_not_valid_cds_hooks_is_400_naming_the_field(ehr, change, field):
    body = _call(orders=[_medication_request()], prefetch=_prefetch())
    change(body)
    response = _post(ehr, body)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


SPEC_JWKS = {
    "keys": [
        {
            "kty": "EC",
            "use": "sig",
            "crv": "P-384",
            "kid": "example-kid",
            "x": "46SDH7Znh821wblCBglA61sNE9ZrHYKKt3qRtRTmSXyOI_FIGBLWrWa0GPUkDCEk",
            "y": "XMcRuuoGW7CXjQdy-F5i3FeBE0x9hPLdeFdSoDd3ELmx404tLX0VRRcqzAsPhXcI",
            "alg": "ES384",
        }
    ]
}
# The JWT of the specification's example ("Trusting CDS Clients"), signed by the key above; expired in 2015.
SPEC_JWT = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9qd2tfdXJpIn0"
    ".eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZXJ2aWNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNWItOGVlYzZhMzNhYzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0"
    ".d1WfLjGRKlcWB94l9do4cM8REXeYJLL6SGUBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjooZdooCSDf2L8-i4awdoUwiEb"
)


def test_the_specifications_example_jwt_verifies_and_is_refused_as_expired(ehr):
    app, client, _ = ehr
    instance = app.extensions["instance"]
    cds_clients.add_client(
        instance.database,
        instance.audit,
        "https://fhir-ehr.example.com/",
        json.dumps(SPEC_JWKS),
        "https://fhir-ehr.example.com/jwk_uri",
        [],
        "test",
    )
    response = client.get("/cds-services", headers={"Authorization": f"Bearer {SPEC_JWT}"})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "expired_token"


def _refusal(ehr, token, code, path="/cds-services/ivig-order-sign"):
    app, client, keys = ehr
    response = client.post(path, json=_call(orders=[]), headers={"Authorization": f"Bearer {token}"} if token else {})
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code
    return response


def test_every_jwt_refusal_is_401_with_the_reason(ehr):
    app, client, keys = ehr
    path = "/cds-services/ivig-order-sign"
    other = Keys(kid="k1")
    _refusal(ehr, None, "missing_token")
    _refusal(ehr, "not-a-jwt", "malformed_token")
    _refusal(
        ehr,
        jwt.encode({"iss": ISS}, "a-shared-secret-of-32-bytes-long!", algorithm="HS256", headers={"kid": "k1"}),
        "algorithm_refused",
    )
    _refusal(ehr, jwt.encode({"iss": ISS}, None, algorithm="none"), "algorithm_refused")
    _refusal(ehr, keys.token(path, headers={"typ": "JOSE"}), "malformed_token")
    _refusal(ehr, keys.token(path, iss="https://stranger.example"), "unknown_issuer")
    _refusal(ehr, keys.token(path, headers={"kid": "k9"}), "unknown_key")
    _refusal(ehr, keys.token(path, headers={"jku": "http://127.0.0.1:9/keys"}), "jku_refused")
    _refusal(ehr, other.token(path), "bad_signature")
    _refusal(ehr, keys.token(path, aud=BASE + "/cds-services/ivig-order-select"), "wrong_audience")
    _refusal(ehr, keys.token("/cds-services"), "wrong_audience")
    _refusal(ehr, keys.token(path, exp=int(time.time()) - 120), "expired_token")
    _refusal(ehr, keys.token(path, iat=int(time.time()) + 600, exp=int(time.time()) + 900), "future_token")
    _refusal(ehr, keys.token(path, jti=None), "missing_claim")
    _refusal(ehr, keys.token(path, exp=int(time.time()) + 7200), "lifetime_too_long")
    used = keys.token(path)
    assert _post(ehr, _call(orders=[]), token=used).status_code == 200
    _refusal(ehr, used, "replayed_token")


def test_a_refused_jwt_is_on_the_audit_record(ehr):
    app, client, keys = ehr
    _refusal(ehr, keys.token("/cds-services/ivig-order-sign", iss="https://stranger.example"), "unknown_issuer")
    ((_, body),) = _records(app, "refusal")
    assert body["error"]["code"] == "unknown_issuer" and body["path"] == "/cds-services/ivig-order-sign"


def test_a_replayed_jti_is_refused_by_another_process_sharing_the_database(ehr, make_app, tmp_path):
    app, client, keys = ehr
    other = make_app(RULEBOOK=str(write_rulebook(tmp_path / "rb2", data=_data()))).test_client()
    path = "/cds-services/ivig-order-sign"
    token = keys.token(path)
    assert client.post(path, json=_call(orders=[]), headers={"Authorization": f"Bearer {token}"}).status_code == 200
    response = other.post(path, json=_call(orders=[]), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "replayed_token"


class _Stub:
    """A FHIR server (and a JWK Set host) on 127.0.0.1: answers GET paths from `routes`, records requests."""

    def __init__(self, routes):
        self.routes, self.seen = routes, []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                stub.seen.append((self.path, self.headers.get("Authorization")))
                body = stub.routes.get(self.path.split("?")[0])
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fhir_stub():
    stub = _Stub({})
    yield stub
    stub.close()


def test_missing_prefetch_is_fetched_from_the_fhir_server_with_the_token(make_app, tmp_path, fhir_stub):
    app = make_app(RULEBOOK=str(write_rulebook(tmp_path / "rb", data=_data())))
    instance = app.extensions["instance"]
    keys = Keys()
    cds_clients.add_client(instance.database, instance.audit, ISS, keys.jwks(), None, [fhir_stub.url], "test")
    prefetch = _prefetch()
    fhir_stub.routes["/Patient/p1"] = prefetch.pop("patient")
    fhir_stub.routes["/Observation"] = prefetch.pop("weight")  # weight and height both ask /Observation
    fhir_stub.routes["/Condition"] = _searchset()
    body = _call(
        orders=[_medication_request(dose=(2, "g/kg"))],
        prefetch={"pregnancy": None, "medications": None},
        fhirServer=fhir_stub.url,
        fhirAuthorization={
            "access_token": "fhir-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read",
            "subject": "ivig",
        },
    )
    (card,) = _cards(_post((app, app.test_client(), keys), body))
    assert card["indicator"] == "info"
    assert {path.split("?")[0] for path, _ in fhir_stub.seen} == {"/Patient/p1", "/Observation", "/Condition"}
    assert all(auth == "Bearer fhir-token" for _, auth in fhir_stub.seen)


def test_a_fhir_server_not_allowed_for_the_client_is_never_fetched(ehr, fhir_stub):
    body = _call(
        orders=[_medication_request(icd="G61.0", dose=(2, "g/kg"))],
        prefetch={},
        fhirServer=fhir_stub.url,  # the client allows only http://127.0.0.1 (no port)
        fhirAuthorization={
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "s",
            "subject": "x",
        },
    )
    (card,) = _cards(_post(ehr, body))
    assert fhir_stub.seen == []
    assert "not one allowed for this client" in card["detail"]


def test_keys_are_fetched_from_the_clients_jku_only(make_app, tmp_path, fhir_stub):
    app = make_app(RULEBOOK=str(write_rulebook(tmp_path / "rb", data=_data())))
    instance = app.extensions["instance"]
    inline, rotated = Keys(kid="old"), Keys(kid="new")
    fhir_stub.routes["/jwks"] = json.loads(rotated.jwks())
    cds_clients.add_client(instance.database, instance.audit, ISS, inline.jwks(), fhir_stub.url + "/jwks", [], "test")
    client = app.test_client()
    path = "/cds-services"
    assert client.get(path, headers={"Authorization": f"Bearer {rotated.token(path)}"}).status_code == 200
    assert fhir_stub.seen == [("/jwks", None)]


def test_feedback_is_recorded_against_the_decision(ehr):
    app, client, keys = ehr
    (card,) = _cards(
        _post(ehr, _call(orders=[_medication_request(icd="G61.0", dose=(2, "g/kg"))], prefetch=_prefetch()))
    )
    path = "/cds-services/ivig-order-sign/feedback"
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": card["overrideReasons"][0], "userComment": "Ward round decision"},
                "outcomeTimestamp": "2026-11-30T10:05:31Z",
            }
        ]
    }
    response = client.post(path, json=feedback, headers={"Authorization": f"Bearer {keys.token(path)}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["recorded"][0]["decision_id"] == card["uuid"]
    ((requester, body),) = _records(app, "cds_feedback")
    assert requester == ISS and body["decision_id"] == card["uuid"]
    assert body["feedback"]["overrideReason"]["reason"]["code"] == "urgent"
    bad = client.post(
        path,
        json={"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "2026-11-30T10:05:31Z"}]},
        headers={"Authorization": f"Bearer {keys.token(path)}"},
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "feedback[0].outcome"


def test_cds_clients_command_adds_lists_and_removes_clients_on_the_record(shell_instance, tmp_path):
    from click.testing import CliRunner

    from service.cli import main

    keys_file = tmp_path / "jwks.json"
    keys_file.write_text(Keys().jwks())
    runner = CliRunner()
    added = runner.invoke(
        main, ["cds-clients", "add", "--iss", ISS, "--jwks", str(keys_file), "--jku", "https://ehr.example.org/jwks"]
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(main, ["cds-clients", "list"])
    assert ISS in listed.output and "k1" in listed.output
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [{**Keys().public_jwk, "d": "secret"}]}))
    refused = runner.invoke(main, ["cds-clients", "add", "--iss", "x", "--jwks", str(private)])
    assert refused.exit_code != 0 and "private key" in refused.output
    assert runner.invoke(main, ["cds-clients", "remove", "--iss", ISS]).exit_code == 0
    assert ISS not in runner.invoke(main, ["cds-clients", "list"]).output
    verified = runner.invoke(main, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output


def test_the_console_shows_a_decision_from_the_ehr_with_its_source(ehr):
    from service.store.tokens import create_token
    from tests.conftest import sign_in

    app, client, keys = ehr
    (card,) = _cards(_post(ehr, _call(orders=[_medication_request(dose=(2, "g/kg"))], prefetch=_prefetch())))
    pharmacist = create_token(app.extensions["instance"].database, "pharm", "pharmacist")
    browser = app.test_client()
    sign_in(browser, pharmacist)
    page = browser.get(f"/console/decisions/{card['uuid']}").get_data(as_text=True)
    assert f"Requested by {ISS}/Practitioner/dr-1" in page
    assert 'id="decision-origin"' in page and "order-sign" in page and "MedicationRequest/mr1" in page
