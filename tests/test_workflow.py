"""Review cases, authorisations and pharmacy pre-approvals, through the HTTP API and the CLI."""

import datetime
import io

import pytest
from click.testing import CliRunner

from service import clock
from service.cli import main

from .conftest import bearer

POLYMYOSITIS = {
    "diagnosis": {"code": "M33.20"},
    "patient": {"age_years": 50, "sex": "male", "ref": "MRN-0042", "weight_kg": 90, "height_cm": 180},
}
ORDER = {
    "patient": {"ref": "MRN-0042", "age_years": 50, "sex": "male", "weight_kg": 90, "height_cm": 180},
    "diagnosis": {"code": "M33.20"},
    "product": "Privigen",
    "dose": {"g_per_kg": 2.0, "interval_days": 28},
    "last_infusion_date": "2026-10-30",
}


@pytest.fixture
def today(monkeypatch):
    day = datetime.date(2026, 11, 22)
    monkeypatch.setattr(clock, "utc_today", lambda: day)
    return day


def _open_case(client, tokens, body=POLYMYOSITIS):
    decision = client.post("/v1/decisions", json=body, headers=bearer(tokens["clinician"])).get_json()
    assert decision["outcome"] == "needs_review" and decision["review_case_id"]
    return decision


def _resolve(client, tokens, case_id, **body):
    return client.post(f"/v1/reviews/{case_id}/resolution", json=body, headers=bearer(tokens["pharmacist"]))


def test_a_needs_review_decision_opens_a_case_listed_oldest_first(client, tokens):
    first = _open_case(client, tokens)
    second = _open_case(client, tokens, {"diagnosis": {"text": "chronic fatigue"}})
    cases = client.get("/v1/reviews?status=open", headers=bearer(tokens["pharmacist"])).get_json()["cases"]
    assert [c["id"] for c in cases] == [first["review_case_id"], second["review_case_id"]]
    assert cases[0]["missing"] == ["therapies.concurrent"] and cases[0]["age_seconds"] >= 0
    assert {c["code"] for c in cases[1]["candidates"]} >= {"G93.32", "R53.82"}


def test_the_journey_from_submission_to_resolution_to_dispensing(client, tokens, app, today):
    case_id = _open_case(client, tokens)["review_case_id"]
    pended = _resolve(client, tokens, case_id, resolution="more_information", reason="Is he on corticosteroids?")
    assert pended.status_code == 201 and pended.get_json()["status"] == "pending_information"
    redecided = client.post(
        f"/v1/reviews/{case_id}/facts",
        json={"therapies": {"concurrent": ["prednisone"]}},
        headers=bearer(tokens["clinician"]),
    )
    assert redecided.status_code == 201 and redecided.get_json()["outcome"] == "off_label_with_evidence"
    case = client.get(f"/v1/reviews/{case_id}", headers=bearer(tokens["pharmacist"])).get_json()
    assert (
        case["status"] == "closed_by_rules" and case["decision"]["decision_id"] == redecided.get_json()["decision_id"]
    )
    [authorisation] = client.get(
        "/v1/authorisations?patient_ref=MRN-0042", headers=bearer(tokens["pharmacist"])
    ).get_json()["authorisations"]
    assert (
        authorisation["valid_until"] == "2027-05-20" and authorisation["case_id"] == case_id
    )  # 180 days from 2026-11-22
    result = client.post("/v1/preapprovals", json=ORDER, headers=bearer(tokens["pharmacist"])).get_json()
    assert result["dispense"] is True and result["decision"] is None
    assert result["weight"]["dosing_kg"] == 81.0 and result["dose"]["rounded_grams"] == 160.0
    kinds = [
        r["kind"] for r in client.get("/v1/audit?limit=50", headers=bearer(tokens["auditor"])).get_json()["records"]
    ]
    assert "access" in kinds  # the reads of the case, the queue and the authorisations are on the record
    assert [kind for kind in kinds if kind != "access"] == ["preapproval", "decision", "review_resolution", "decision"]


def test_an_approved_review_authorises_for_the_days_the_reviewer_gives(client, tokens, today):
    case_id = _open_case(client, tokens)["review_case_id"]
    approved = _resolve(client, tokens, case_id, resolution="approved", reason="Committee approval", valid_days=90)
    assert approved.get_json()["status"] == "approved"
    [authorisation] = client.get(
        "/v1/authorisations?patient_ref=MRN-0042", headers=bearer(tokens["clinician"])
    ).get_json()["authorisations"]
    assert (authorisation["basis"], authorisation["valid_until"]) == ("review", "2027-02-19")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"resolution": "approved"}, "reason"),
        ({"resolution": "approved", "reason": "   "}, "reason"),
        ({"resolution": "maybe", "reason": "x"}, "resolution"),
        ({"resolution": "denied", "reason": "x", "valid_days": 30}, "valid_days"),
        ({"resolution": "approved", "reason": "x", "valid_days": 0}, "valid_days"),
        ({"resolution": "approved", "reason": "x", "colour": "red"}, "colour"),
    ],
)
def test_a_resolution_needs_a_valid_body_with_a_reason(client, tokens, body, field):
    case_id = _open_case(client, tokens)["review_case_id"]
    response = _resolve(client, tokens, case_id, **body)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field


def test_a_case_cannot_be_resolved_twice_but_takes_a_second_opinion(client, tokens):
    case_id = _open_case(client, tokens)["review_case_id"]
    first = _resolve(client, tokens, case_id, resolution="denied", reason="Not enough evidence")
    first_id = first.get_json()["resolutions"][0]["id"]
    again = _resolve(client, tokens, case_id, resolution="approved", reason="Changed my mind")
    assert again.status_code == 409 and first_id in again.get_json()["error"]["message"]
    second = _resolve(client, tokens, case_id, resolution="approved", reason="Neurology disagrees", references=first_id)
    case = second.get_json()
    assert second.status_code == 201 and case["status"] == "denied"  # a second opinion is shown, not applied
    assert [r["references_id"] for r in case["resolutions"]] == [None, first_id]
    assert _resolve(client, tokens, case_id, resolution="approved", reason="x", references="nope").status_code == 400


def test_facts_go_only_to_open_or_pended_cases_and_never_change_the_patient(client, tokens):
    case_id = _open_case(client, tokens)["review_case_id"]
    moved = client.post(
        f"/v1/reviews/{case_id}/facts", json={"patient": {"ref": "MRN-9"}}, headers=bearer(tokens["clinician"])
    )
    assert moved.status_code == 400 and moved.get_json()["error"]["field"] == "patient.ref"
    _resolve(client, tokens, case_id, resolution="denied", reason="No")
    closed = client.post(
        f"/v1/reviews/{case_id}/facts", json={"severity": "severe"}, headers=bearer(tokens["clinician"])
    )
    assert closed.status_code == 409
    assert client.get("/v1/reviews/nope", headers=bearer(tokens["pharmacist"])).status_code == 404


def test_still_unclear_facts_keep_the_case_open_with_the_new_decision(client, tokens):
    case_id = _open_case(client, tokens, {"diagnosis": {"code": "G61.0"}, "patient": {"ref": "MRN-5"}})[
        "review_case_id"
    ]
    redecided = client.post(
        f"/v1/reviews/{case_id}/facts", json={"patient": {"age_years": 40}}, headers=bearer(tokens["clinician"])
    ).get_json()
    assert redecided["outcome"] == "needs_review" and redecided["review_case_id"] == case_id
    assert client.get(f"/v1/reviews/{case_id}", headers=bearer(tokens["pharmacist"])).get_json()["status"] == "open"


def test_a_case_opened_on_an_unclear_text_takes_the_code_its_facts_give(client, tokens, today):
    case_id = _open_case(client, tokens, {"diagnosis": {"text": "neuropathy"}, "patient": {"ref": "MRN-6"}})[
        "review_case_id"
    ]
    client.post(
        f"/v1/reviews/{case_id}/facts",
        json={"diagnosis": {"code": "D80.2", "text": None}},
        headers=bearer(tokens["clinician"]),
    )
    assert client.get(f"/v1/reviews/{case_id}", headers=bearer(tokens["pharmacist"])).get_json()["code"] == "D80.2"
    _resolve(client, tokens, case_id, resolution="approved", reason="Recurrent infections despite prophylaxis")
    [authorisation] = client.get(
        "/v1/authorisations?patient_ref=MRN-6", headers=bearer(tokens["pharmacist"])
    ).get_json()["authorisations"]
    assert (authorisation["code"], authorisation["basis"]) == ("D80.2", "review")


def test_a_positive_decision_for_a_patient_authorises_without_a_case(client, tokens, today):
    decision = client.post(
        "/v1/decisions",
        json={"diagnosis": {"code": "D83.9"}, "patient": {"age_years": 30, "ref": "MRN-1"}},
        headers=bearer(tokens["clinician"]),
    ).get_json()
    assert decision["outcome"] == "approved" and decision["review_case_id"] is None and decision["authorisation_id"]
    [authorisation] = client.get(
        "/v1/authorisations?patient_ref=MRN-1", headers=bearer(tokens["clinician"])
    ).get_json()["authorisations"]
    assert authorisation["dosing"]["id"] == "replacement" and "Privigen" in authorisation["products"]
    no_ref = client.post(
        "/v1/decisions", json={"diagnosis": {"code": "D83.9"}}, headers=bearer(tokens["clinician"])
    ).get_json()
    assert no_ref["authorisation_id"] is None


def test_an_authorisation_is_valid_through_its_last_day_and_not_after(client, tokens, monkeypatch, today):
    client.post(
        "/v1/decisions",
        json=POLYMYOSITIS | {"therapies": {"concurrent": ["corticosteroids"]}},
        headers=bearer(tokens["clinician"]),
    )
    order = ORDER | {"last_infusion_date": None}
    for day, dispensed in ((datetime.date(2027, 5, 20), True), (datetime.date(2027, 5, 21), False)):
        monkeypatch.setattr(clock, "utc_today", lambda day=day: day)
        result = client.post(
            "/v1/preapprovals",
            json={k: v for k, v in order.items() if v is not None},
            headers=bearer(tokens["pharmacist"]),
        ).get_json()
        reason = next(r for r in result["reasons"] if r["check"] == "authorisation")
        assert reason["ok"] is dispensed, (day, reason)
        if not dispensed:
            # The expired authorisation is not continued silently: the order re-decides and, being
            # without corticosteroids information, goes to review.
            assert result["decision"]["outcome"] == "needs_review"


def test_preapproval_without_an_authorisation_makes_the_decision_that_would_create_one(client, tokens, today):
    order = ORDER | {"therapies": {"concurrent": ["corticosteroids"]}}
    result = client.post("/v1/preapprovals", json=order, headers=bearer(tokens["pharmacist"])).get_json()
    assert result["decision"]["outcome"] == "off_label_with_evidence" and result["dispense"] is True
    assert result["authorisation"]["decision_id"] == result["decision"]["decision_id"]


def test_preapproval_holds_an_order_and_gives_every_reason(client, tokens, today):
    client.post(
        "/v1/decisions",
        json={"diagnosis": {"code": "D83.9"}, "patient": {"age_years": 30, "ref": "MRN-2"}},
        headers=bearer(tokens["clinician"]),
    )
    order = {
        "patient": {
            "ref": "MRN-2",
            "age_years": 30,
            "sex": "female",
            "pregnant": False,
            "weight_kg": 70,
            "height_cm": 165,
        },
        "diagnosis": {"code": "D83.9"},
        "product": "Octagam 10%",
        "dose": {"g_per_kg": 1.0, "interval_days": 14},
        "last_infusion_date": "2026-11-15",
    }
    result = client.post("/v1/preapprovals", json=order, headers=bearer(tokens["pharmacist"])).get_json()
    failed = {r["check"]: r["message"] for r in result["reasons"] if not r["ok"]}
    assert result["dispense"] is False
    assert set(failed) == {
        "authorised_product",
        "dose",
        "dose_amount",
        "interval",
        "label",
        "since_last_infusion",
        "vials",
    }
    assert failed["dose"] == "dose 1 g/kg exceeds the maximum 0.8 g/kg by 0.2 g/kg (25%)"
    grams = result["dose"]["grams"]  # the amount above the maximum is named, never capped
    assert failed["dose_amount"].startswith(
        f"the order is {grams:g} g for this patient, {grams * 0.2:g} g above the maximum"
    )
    assert "Octagam 10% is not among them" in failed["authorised_product"]


PI_PATIENT = {"ref": "MRN-7", "age_years": 30, "sex": "male", "weight_kg": 70, "height_cm": 180}


def _preapprove(client, tokens, ref="MRN-7", **order):
    return client.post(
        "/v1/preapprovals",
        json={"patient": PI_PATIENT | {"ref": ref}, "diagnosis": {"code": "D83.9"}} | order,
        headers=bearer(tokens["pharmacist"]),
    ).get_json()


def test_the_products_label_dose_wins_over_the_rules_profile(client, tokens, today):
    # Privigen's PI label starts at 0.2 g/kg; the replacement profile at 0.3 g/kg.
    privigen = _preapprove(client, tokens, product="Privigen", dose={"g_per_kg": 0.2, "interval_days": 28})
    assert privigen["dosing_profile"]["id"] == "label: Privigen for primary_immunodeficiency"
    assert privigen["dispense"] is True, privigen["reasons"]
    gamunex = _preapprove(client, tokens, "MRN-8", product="Gamunex-C", dose={"g_per_kg": 0.2, "interval_days": 28})
    failed = {r["check"]: r["message"] for r in gamunex["reasons"] if not r["ok"]}
    assert failed["dose"] == "dose 0.2 g/kg is below the minimum 0.3 g/kg by 0.1 g/kg (33%)"


def test_the_dose_is_made_of_the_products_own_vials(client, tokens, today):
    result = _preapprove(client, tokens, product="Privigen", dose={"g_per_kg": 0.4, "interval_days": 28})
    assert result["weight"]["dosing_kg"] == 70 and result["dose"]["grams"] == 28.0  # 30 g is nearer than 25 g
    assert result["dose"]["vials"] == [{"size_g": 20, "count": 1}, {"size_g": 10, "count": 1}]
    assert result["dose"]["rounded_grams"] == 30.0
    assert {"check": "vials", "ok": True, "message": "30 g (1 x 20 g + 1 x 10 g) for the exact dose of 28 g"} in result[
        "reasons"
    ]


def test_a_subcutaneous_order_is_checked_against_the_weekly_subcutaneous_label(client, tokens, today):
    weekly = _preapprove(
        client, tokens, product="Gamunex-C", route="subcutaneous", dose={"g_per_kg": 0.15, "interval_days": 7}
    )
    assert weekly["dispense"] is True, weekly["reasons"]
    assert weekly["decision"]["labelled_products"] == ["Gamunex-C"]
    privigen = _preapprove(
        client, tokens, "MRN-8", product="Privigen", route="subcutaneous", dose={"g_per_kg": 0.15, "interval_days": 7}
    )
    assert privigen["dispense"] is False and privigen["decision"]["outcome"] == "needs_review"


def test_an_order_by_a_route_the_authorised_label_does_not_cover_is_held(client, tokens, today):
    assert (
        _preapprove(client, tokens, product="Gamunex-C", dose={"g_per_kg": 0.4, "interval_days": 28})["dispense"]
        is True
    )
    subcutaneous = _preapprove(
        client, tokens, product="Privigen", route="subcutaneous", dose={"g_per_kg": 0.15, "interval_days": 7}
    )
    assert subcutaneous["authorisation"] is not None and subcutaneous["dispense"] is False
    label = next(r for r in subcutaneous["reasons"] if r["check"] == "label")
    assert label["ok"] is False and "does not cover" in label["message"] and "(subcutaneous)" in label["message"]


def test_a_one_off_course_already_given_under_its_authorisation_is_held(client, tokens, today):
    child = {"ref": "MRN-9", "age_years": 8, "sex": "female", "weight_kg": 25, "height_cm": 125}
    order = {"patient": child, "diagnosis": {"code": "G61.0"}, "product": "Gamunex-C", "dose": {"g_per_kg": 2.0}}
    first = client.post("/v1/preapprovals", json=order, headers=bearer(tokens["pharmacist"])).get_json()
    assert first["dispense"] is True and first["decision"]["outcome"] == "off_label_with_evidence"
    again = client.post(
        "/v1/preapprovals", json=order | {"last_infusion_date": today.isoformat()}, headers=bearer(tokens["pharmacist"])
    ).get_json()
    failed = {r["check"]: r["message"] for r in again["reasons"] if not r["ok"]}
    assert again["dispense"] is False and set(failed) == {"courses"}
    assert failed["courses"] == (
        f"a one-off course: a course was already given under this authorisation (last infusion "
        f"{today.isoformat()}); another course needs review"
    )


def test_preapproval_says_what_the_weight_needs(client, tokens, today):
    order = ORDER | {
        "patient": {"ref": "MRN-0042", "age_years": 50, "sex": "female", "weight_kg": 90, "height_cm": 170}
    }
    reasons = client.post("/v1/preapprovals", json=order, headers=bearer(tokens["pharmacist"])).get_json()["reasons"]
    assert {"check": "weight", "ok": False, "message": "the dosing weight needs patient.pregnant"} in reasons


@pytest.mark.parametrize(
    "order, field",
    [
        ({k: v for k, v in ORDER.items() if k != "product"}, "product"),
        (ORDER | {"patient": {"age_years": 50}}, "patient.ref"),
        (ORDER | {"last_infusion_date": "30/10/2026"}, "last_infusion_date"),
        (ORDER | {"route": "iv"}, "route"),
    ],
)
def test_a_malformed_order_is_a_400(client, tokens, order, field):
    response = client.post("/v1/preapprovals", json=order, headers=bearer(tokens["pharmacist"]))
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field


CSV = (
    "patient_ref,age_years,sex,pregnant,weight_kg,height_cm,diagnosis_code,product,g_per_kg,interval_days,"
    "last_infusion_date,concurrent_therapies\n"
    "MRN-0042,50,male,,90,180,M33.20,Privigen,2.0,28,2026-10-30,prednisone\n"
    "MRN-0043,forty,male,,90,180,M33.20,Privigen,2.0,28,2026-10-30,\n"
    "MRN-0044,8,female,false,24.5,130,G61.0,Gamunex-C,2.0,28,,\n"
)


def test_batch_gives_one_result_a_row_with_row_numbered_errors(client, tokens, today):
    for kind in ("csv", "multipart", "json"):
        if kind == "csv":
            response = client.post(
                "/v1/preapprovals/batch", data=CSV, headers={**bearer(tokens["pharmacist"]), "Content-Type": "text/csv"}
            )
        elif kind == "multipart":
            response = client.post(
                "/v1/preapprovals/batch",
                data={"file": (io.BytesIO(CSV.encode()), "list.csv")},
                headers=bearer(tokens["pharmacist"]),
                content_type="multipart/form-data",
            )
        else:
            response = client.post(
                "/v1/preapprovals/batch", json=[ORDER, {"patient": {}}], headers=bearer(tokens["pharmacist"])
            )
        body = response.get_json()
        assert response.status_code == 200, body
        rows = [r["row"] for r in body["results"]]
        if kind == "json":
            assert rows == [1, 2] and body["results"][1]["error"]["field"] == "diagnosis"
        else:
            assert rows == [2, 3, 4]
            assert body["results"][1]["error"] == {
                "code": "wrong_type",
                "field": "age_years",
                "message": "row 3: age_years must be a number, found 'forty'",
            }
            assert body["results"][0]["dispense"] is True and body["results"][2]["dose"]["rounded_grams"] == 49.0
            assert body["summary"] == {"orders": 3, "dispense": 2, "hold": 0, "errors": 1}


def test_an_infusion_list_may_give_the_route_and_a_blank_route_is_intravenous(client, tokens, today):
    csv_text = (
        "patient_ref,age_years,sex,weight_kg,height_cm,diagnosis_code,product,route,g_per_kg,interval_days\n"
        "MRN-1,30,male,70,180,D83.9,Gamunex-C,subcutaneous,0.15,7\n"
        "MRN-2,30,male,70,180,D83.9,Gamunex-C,,0.15,7\n"
        "MRN-3,30,male,70,180,D83.9,Gamunex-C,oral,0.15,7\n"
    )
    response = client.post(
        "/v1/preapprovals/batch", data=csv_text, headers={**bearer(tokens["pharmacist"]), "Content-Type": "text/csv"}
    )
    sc, iv, bad = response.get_json()["results"]
    assert sc["dispense"] is True
    assert iv["dispense"] is False and "below the minimum 0.3 g/kg" in " ".join(r["message"] for r in iv["reasons"])
    assert bad["error"]["field"] == "route" and "'oral'" in bad["error"]["message"]


def test_an_infusion_list_body_that_is_not_utf8_is_refused_naming_where_not_read_with_replacements(client, tokens):
    # Latin-1 "MRN-Jos\xe9" and "MRN-Jos\xe8" would both become "MRN-Jos\ufffd": one patient, not two.
    body = b"patient_ref,diagnosis_code,product\nMRN-Jos\xe9,D83.9,Gamunex-C\nMRN-Jos\xe8,D83.9,Gamunex-C\n"
    response = client.post(
        "/v1/preapprovals/batch", data=body, headers={**bearer(tokens["pharmacist"]), "Content-Type": "text/csv"}
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_csv" and "line 2 (byte offset 42, byte 0xe9)" in error["message"]
    assert "MRN-Jos" not in error["message"]


def test_batch_refuses_unknown_columns(client, tokens):
    response = client.post(
        "/v1/preapprovals/batch",
        data="mrn,code\n1,G61.0\n",
        headers={**bearer(tokens["pharmacist"]), "Content-Type": "text/csv"},
    )
    assert response.status_code == 400 and "the columns are" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("get", "/v1/reviews", {"pharmacist", "admin"}),
        ("get", "/v1/authorisations?patient_ref=MRN-1", {"clinician", "pharmacist", "auditor", "admin"}),
        ("post", "/v1/preapprovals", {"pharmacist", "admin"}),
        ("post", "/v1/preapprovals/batch", {"pharmacist", "admin"}),
    ],
)
def test_workflow_endpoints_follow_the_roles(client, tokens, method, path, allowed):
    for role, token in tokens.items():
        kwargs = {"json": [ORDER] if path.endswith("batch") else ORDER} if method == "post" else {}
        status = getattr(client, method)(path, headers=bearer(token), **kwargs).status_code
        assert (status < 400) == (role in allowed), (role, status)
    assert getattr(client, method)(path).status_code == 401


def test_preapprove_from_the_shell_with_a_progress_bar(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("FORMULARY_DATABASE_URL", raising=False)
    orders = tmp_path / "orders.csv"
    orders.write_text(CSV)
    result = CliRunner().invoke(main, ["preapprove", str(orders), "--output", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("row    3  ERROR") for line in lines)
    assert "3 orders: 2 to dispense, 1 held or in error" in result.output
    assert (tmp_path / "out.csv").read_text().startswith("row,dispense,reasons")
