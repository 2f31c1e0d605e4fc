"""Administrations and discrepancies through the HTTP API, on SQLite and PostgreSQL."""

import datetime

import pytest

from .conftest import bearer

ORDER = {
    "patient": {"ref": "MRN-0042", "age_years": 50, "sex": "male", "weight_kg": 90, "height_cm": 180},
    "diagnosis": {"code": "M33.20"},
    "therapies": {"concurrent": ["corticosteroids"]},
    "product": "Privigen",
    "dose": {"g_per_kg": 2.0, "interval_days": 28},
}
GIVEN = {
    "patient": {"ref": "MRN-0042"},
    "product": "Privigen",
    "lot": "P-2211",
    "vials": [{"size_g": 40, "count": 4}],
    "grams_given": 160,
    "grams_wasted": 0,
    "given_on": "2026-11-22",
    "site": "Day unit",
}


@pytest.fixture
def today(day):
    day.set(datetime.date(2026, 11, 22))
    return day


@pytest.fixture
def preapproved(client, tokens, today) -> dict:
    """A pre-approval that granted (and found) an authorisation: 160 g for a dosing weight of 81 kg."""
    result = client.post("/v1/preapprovals", json=ORDER, headers=bearer(tokens["pharmacist"])).get_json()
    assert result["dispense"] is True and result["dose"]["rounded_grams"] == 160.0
    return result


def _record(client, tokens, body, role="pharmacist"):
    return client.post("/v1/administrations", json=body, headers=bearer(tokens[role]))


def test_an_administration_as_pre_approved_is_recorded_without_discrepancy(client, tokens, preapproved):
    response = _record(client, tokens, GIVEN | {"preapproval_id": preapproved["preapproval_id"]})
    assert response.status_code == 201, response.get_json()
    recorded = response.get_json()
    assert recorded["discrepancies"] == [] and recorded["authorisation_id"] == preapproved["authorisation"]["id"]
    assert recorded["cost"]["amount"] is None and recorded["cost"]["note"].startswith("no price")
    assert response.headers["Location"] == f"/v1/administrations/{recorded['id']}"
    assert "patient_ref_hash" not in recorded and "MRN-0042" not in response.get_data(as_text=True)


def test_a_discrepancy_is_recorded_never_refused_then_resolved_once(client, tokens, preapproved):
    body = GIVEN | {
        "authorisation_id": preapproved["authorisation"]["id"],
        "product": "Octagam 10%",
        "vials": [{"size_g": 20, "count": 9}],
        "grams_given": 180,
    }
    response = _record(client, tokens, body)
    assert response.status_code == 201
    found = {d["kind"]: d for d in response.get_json()["discrepancies"]}
    assert set(found) == {"product", "dose", "above_preapproved"}
    assert found["product"]["expected"] == "Privigen" and found["product"]["actual"] == "Octagam 10%"
    assert found["dose"]["expected"] == "at most 162 g" and found["dose"]["status"] == "open"
    listed = client.get("/v1/discrepancies?status=open", headers=bearer(tokens["auditor"])).get_json()["discrepancies"]
    assert {d["id"] for d in listed} == {d["id"] for d in found.values()}
    assert listed[0]["product"] == "Octagam 10%" and listed[0]["given_on"] == "2026-11-22"
    target = found["product"]["id"]
    path = f"/v1/discrepancies/{target}/resolution"
    assert client.post(path, json={"reason": "  "}, headers=bearer(tokens["pharmacist"])).status_code == 400
    assert client.post(path, json={"reason": "x"}, headers=bearer(tokens["auditor"])).status_code == 403
    resolved = client.post(
        path, json={"reason": "Privigen out of stock; Octagam agreed with Dr B"}, headers=bearer(tokens["pharmacist"])
    )
    assert resolved.status_code == 201 and resolved.get_json()["status"] == "resolved"
    assert resolved.get_json()["resolution"]["resolved_by"] == "pharmacist"
    again = client.post(path, json={"reason": "again"}, headers=bearer(tokens["admin"]))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_resolved"
    still_open = client.get("/v1/discrepancies", headers=bearer(tokens["pharmacist"])).get_json()["discrepancies"]
    assert target not in {d["id"] for d in still_open} and len(still_open) == 2
    done = client.get("/v1/discrepancies?status=resolved", headers=bearer(tokens["pharmacist"])).get_json()
    assert [d["id"] for d in done["discrepancies"]] == [target]
    assert (
        client.post(
            "/v1/discrepancies/nope/resolution", json={"reason": "x"}, headers=bearer(tokens["admin"])
        ).status_code
        == 404
    )


def test_an_interval_shorter_than_the_rules_is_a_discrepancy(client, tokens, preapproved, today):
    authorisation_id = preapproved["authorisation"]["id"]
    assert _record(client, tokens, GIVEN | {"authorisation_id": authorisation_id}).get_json()["discrepancies"] == []
    today.set(datetime.date(2026, 12, 6))
    later = _record(client, tokens, GIVEN | {"authorisation_id": authorisation_id, "given_on": "2026-12-06"})
    [found] = later.get_json()["discrepancies"]
    assert found["kind"] == "interval" and (found["expected"], found["actual"]) == ("at least 21 days", "14 days")


def test_administrations_are_listed_by_authorisation_and_read_on_the_record(client, tokens, preapproved):
    authorisation_id = preapproved["authorisation"]["id"]
    recorded = _record(client, tokens, GIVEN | {"authorisation_id": authorisation_id}).get_json()
    listed = client.get(f"/v1/administrations?authorisation_id={authorisation_id}", headers=bearer(tokens["auditor"]))
    assert [a["id"] for a in listed.get_json()["administrations"]] == [recorded["id"]]
    one = client.get(f"/v1/administrations/{recorded['id']}", headers=bearer(tokens["admin"])).get_json()
    assert one["lot"] == "P-2211" and one["vials"] == [{"size_g": 40, "count": 4}]
    assert client.get("/v1/administrations/nope", headers=bearer(tokens["admin"])).status_code == 404
    assert (
        client.get("/v1/administrations", headers=bearer(tokens["admin"])).get_json()["error"]["field"]
        == "authorisation_id"
    )
    # A clinician who did not request the authorisation may not read what was given under it.
    assert client.get(f"/v1/administrations/{recorded['id']}", headers=bearer(tokens["clinician"])).status_code == 403
    records = client.get("/v1/audit?limit=20", headers=bearer(tokens["auditor"])).get_json()["records"]
    accesses = [r["body"]["action"] for r in records if r["kind"] == "access"]
    assert "read_administrations" in accesses and "administration" in {r["kind"] for r in records}


def test_a_dispense_id_is_recorded_once(client, tokens, preapproved):
    body = GIVEN | {"authorisation_id": preapproved["authorisation"]["id"], "source_id": "RX-1"}
    first = _record(client, tokens, body)
    second = _record(client, tokens, body)
    assert second.status_code == 409 and second.get_json()["error"]["administration_id"] == first.get_json()["id"]


def test_a_malformed_administration_is_a_400_naming_the_field(client, tokens, preapproved):
    for body, field in (
        (GIVEN | {"authorisation_id": preapproved["authorisation"]["id"], "grams_given": "x"}, "grams_given"),
        (GIVEN | {"authorisation_id": "no-such"}, "authorisation_id"),
        (GIVEN | {"preapproval_id": 1}, "preapproval_id"),
        (
            GIVEN | {"authorisation_id": preapproved["authorisation"]["id"], "patient": {"ref": "MRN-9"}},
            "authorisation_id",
        ),
    ):
        response = _record(client, tokens, body)
        assert response.status_code == 400 and response.get_json()["error"]["field"] == field, response.get_json()
        assert "MRN" not in response.get_json()["error"]["message"]
    assert _record(client, tokens, GIVEN, role="clinician").status_code == 403


def test_administrations_and_resolutions_are_bound_rows_that_verify(client, tokens, preapproved, app):
    body = GIVEN | {
        "authorisation_id": preapproved["authorisation"]["id"],
        "product": "Octagam 10%",
        "vials": [{"size_g": 20, "count": 8}],
    }
    [found] = _record(client, tokens, body).get_json()["discrepancies"]
    client.post(
        f"/v1/discrepancies/{found['id']}/resolution", json={"reason": "agreed"}, headers=bearer(tokens["pharmacist"])
    )
    verified = app.extensions["instance"].audit.verify()
    assert verified["ok"] and verified["rows"] >= 4, verified


def test_the_console_page_records_shows_the_discrepancies_and_names_a_bad_field(app, client, tokens, preapproved):
    from .conftest import csrf_token, sign_in

    sign_in(client, tokens["pharmacist"])
    form = {
        "csrf_token": csrf_token(client, "/console/administrations"),
        "authorisation_id": preapproved["authorisation"]["id"],
        "patient_ref": "MRN-0042",
        "product": "Privigen",
        "lot": "L9",
        "vials": "40x4",
        "grams_given": "lots",
        "grams_wasted": "0",
        "given_on": "2026-11-22",
    }
    refused = client.post("/console/administrations", data=form)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "grams_given must be a number, found &#39;lots&#39;" in page
    assert "MRN-0042" not in page
    recorded = client.post("/console/administrations", data=form | {"grams_given": "170"})
    shown = recorded.get_data(as_text=True)
    assert recorded.status_code == 200 and "8 g above the authorised dose" in shown
    assert "vial total</strong>: the vials (4 x 40 g) hold 160 g" in shown
    [found] = client.get("/v1/discrepancies", headers=bearer(tokens["pharmacist"])).get_json()["discrepancies"][:1]
    token = csrf_token(client, "/console/administrations")
    resolved = client.post(
        f"/console/discrepancies/{found['id']}/resolution", data={"csrf_token": token, "reason": "ok"}
    )
    assert resolved.status_code == 302
    again = client.post(f"/console/discrepancies/{found['id']}/resolution", data={"csrf_token": token, "reason": "ok"})
    assert again.status_code == 409


def test_the_responses_match_the_openapi_document(client, tokens, preapproved):
    from .test_openapi import _conforms

    document = client.get("/openapi.json").get_json()
    body = GIVEN | {"preapproval_id": preapproved["preapproval_id"], "product": "Octagam 10%", "source_id": "RX-9"}
    recorded = _record(client, tokens, body)
    _conforms(document, "/v1/administrations", "post", recorded)
    _conforms(document, "/v1/administrations", "post", _record(client, tokens, body))  # 409
    _conforms(document, "/v1/administrations", "post", _record(client, tokens, GIVEN))  # 400
    administration = recorded.get_json()
    pharmacist = bearer(tokens["pharmacist"])
    listed = client.get(
        f"/v1/administrations?authorisation_id={administration['authorisation_id']}", headers=pharmacist
    )
    _conforms(document, "/v1/administrations", "get", listed)
    one = client.get(f"/v1/administrations/{administration['id']}", headers=pharmacist)
    _conforms(document, "/v1/administrations/{administration_id}", "get", one)
    _conforms(document, "/v1/discrepancies", "get", client.get("/v1/discrepancies", headers=pharmacist))
    path = f"/v1/discrepancies/{administration['discrepancies'][0]['id']}/resolution"
    resolved = client.post(path, json={"reason": "agreed"}, headers=pharmacist)
    _conforms(document, "/v1/discrepancies/{discrepancy_id}/resolution", "post", resolved)
    done = client.get("/v1/discrepancies?status=resolved", headers=pharmacist)
    _conforms(document, "/v1/discrepancies", "get", done)
