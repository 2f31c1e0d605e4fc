"""The urgent pathway (issue 16): an urgent request that would need review, with a stated reason,
is given a provisional authorisation for one course at once, and its review case must be resolved
within the rulebook's period; the queue shows the retrospective reviews due soonest first. On the
test rulebook (its adult GBS rule is urgent; provisional: 7 days, review within 72 hours), on
SQLite and PostgreSQL."""

import datetime
import json

import pytest

from .conftest import bearer
from .test_continuing import records

URGENT = {"reason": "Rapidly progressing weakness; the neurologist cannot wait for a review."}
GBS_ADULT = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 40, "ref": "MRN-0042"}}


def decide(client, token, body):
    response = client.post("/v1/decisions", json=body, headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_an_urgent_request_that_needs_review_gets_a_provisional_authorisation_for_one_course(app, client, tokens, day):
    decision = decide(client, tokens["clinician"], {**GBS_ADULT, "urgent": URGENT})
    assert decision["outcome"] == "needs_review" and decision["review_case_id"]
    assert decision["urgent"] == {
        "provisional": True,
        "why": "a provisional authorisation for one course is given; the review is due by 2026-12-04T12:00:00.000000Z",
        "review_due_at": "2026-12-04T12:00:00.000000Z",
    }
    listed = client.get("/v1/authorisations?patient_ref=MRN-0042", headers=bearer(tokens["pharmacist"])).get_json()
    [provisional] = listed["authorisations"]
    assert provisional["id"] == decision["authorisation_id"] and provisional["basis"] == "provisional"
    assert (provisional["valid_from"], provisional["valid_until"]) == ("2026-12-01", "2026-12-07")
    assert provisional["dosing"]["courses"] == 1 and provisional["case_id"] == decision["review_case_id"]
    case = client.get(f"/v1/reviews/{decision['review_case_id']}", headers=bearer(tokens["pharmacist"])).get_json()
    assert case["due_at"] == "2026-12-04T12:00:00.000000Z" and case["overdue"] is False
    [record] = [r for r in records(app, "decision") if r["decision_id"] == decision["decision_id"]]
    assert record["body"]["request"]["urgent"] == URGENT and record["body"]["authorisation"]["basis"] == "provisional"
    assert "MRN-0042" not in json.dumps(record)


def test_a_provisional_authorisation_dispenses_one_course_and_holds_a_second(client, tokens, day):
    decide(client, tokens["clinician"], {**GBS_ADULT, "urgent": URGENT})
    order = {**GBS_ADULT, "product": "Gamunex-C", "dose": {"g_per_kg": 0.4}, "patient": {**GBS_ADULT["patient"]}}
    order["patient"].update(weight_kg=70, height_cm=175, sex="male")
    first = client.post("/v1/preapprovals", json=order, headers=bearer(tokens["pharmacist"])).get_json()
    assert first["dispense"] is True, first["reasons"]
    second = {**order, "last_infusion_date": "2026-12-01"}
    held = client.post("/v1/preapprovals", json=second, headers=bearer(tokens["pharmacist"])).get_json()
    assert held["dispense"] is False


@pytest.mark.parametrize(
    "body, why",
    [
        ({**GBS_ADULT, "patient": {"age_years": 8, "ref": "MRN-1"}}, "the decision is off_label_with_evidence"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 40}}, "no patient reference"),
        (
            {"diagnosis": {"code": "G61.81"}, "patient": {"age_years": 17, "ref": "MRN-2"}},
            "rule cidp-outside-label is not urgent",
        ),
        ({"diagnosis": {"code": "R69"}, "patient": {"age_years": 40, "ref": "MRN-3"}}, "no rule decided it"),
    ],
)
def test_an_urgent_request_gets_no_provisional_authorisation_where_the_pathway_does_not_apply(
    client, tokens, day, body, why
):
    decision = decide(client, tokens["clinician"], {**body, "urgent": URGENT})
    assert decision["urgent"]["provisional"] is False and why in decision["urgent"]["why"]
    assert decision["urgent"]["review_due_at"] is None
    if decision["outcome"] == "needs_review":
        assert decision["authorisation_id"] is None


def test_a_request_without_urgent_is_decided_as_before(client, tokens, day):
    decision = decide(client, tokens["clinician"], GBS_ADULT)
    assert decision["urgent"] is None and decision["authorisation_id"] is None


@pytest.mark.parametrize(
    "urgent, field, code",
    [
        ({}, "urgent.reason", "missing_field"),
        ({"reason": "   "}, "urgent.reason", "empty_value"),
        ({"reason": "x" * 501}, "urgent.reason", "too_long"),
        ({"reason": 3}, "urgent.reason", "wrong_type"),
        ({"reason": "now", "by": "me"}, "urgent.by", "unknown_field"),
        ("yes", "urgent", "wrong_type"),
    ],
)
def test_a_bad_urgent_field_is_a_400_naming_it(client, tokens, day, urgent, field, code):
    response = client.post("/v1/decisions", json={**GBS_ADULT, "urgent": urgent}, headers=bearer(tokens["clinician"]))
    assert response.status_code == 400
    assert (response.get_json()["error"]["field"], response.get_json()["error"]["code"]) == (field, code)


def test_a_resubmission_joining_the_case_does_not_give_a_second_provisional_authorisation(client, tokens, day):
    first = decide(client, tokens["clinician"], {**GBS_ADULT, "urgent": URGENT})
    again = decide(client, tokens["clinician"], {**GBS_ADULT, "urgent": URGENT})
    assert again["review_case_id"] == first["review_case_id"] and again["joined_case"] is True
    assert again["urgent"]["provisional"] is False and "already" in again["urgent"]["why"]


def test_the_queue_shows_retrospective_reviews_due_soonest_first_and_marks_the_overdue(client, tokens, day):
    day.set(datetime.date(2026, 11, 20))
    ordinary = decide(client, tokens["clinician"], {**GBS_ADULT, "patient": {"age_years": 40, "ref": "MRN-10"}})
    day.set(datetime.date(2026, 11, 27))
    overdue = decide(
        client, tokens["clinician"], {**GBS_ADULT, "patient": {"age_years": 40, "ref": "MRN-11"}, "urgent": URGENT}
    )
    day.set(datetime.date(2026, 11, 30))
    due = decide(
        client, tokens["clinician"], {**GBS_ADULT, "patient": {"age_years": 40, "ref": "MRN-12"}, "urgent": URGENT}
    )
    day.set(datetime.date(2026, 12, 1))
    queue = client.get("/v1/reviews", headers=bearer(tokens["pharmacist"])).get_json()
    ids = [case["id"] for case in queue["cases"]]
    assert ids == [overdue["review_case_id"], due["review_case_id"], ordinary["review_case_id"]]
    assert [case["overdue"] for case in queue["cases"]] == [True, False, False]
    oldest = client.get("/v1/reviews?sort=oldest", headers=bearer(tokens["pharmacist"])).get_json()
    assert [case["id"] for case in oldest["cases"]][0] == ordinary["review_case_id"]
    page = client.get("/v1/reviews?limit=1", headers=bearer(tokens["pharmacist"])).get_json()
    after = client.get(f"/v1/reviews?limit=2&cursor={page['next_cursor']}", headers=bearer(tokens["pharmacist"]))
    assert [case["id"] for case in after.get_json()["cases"]] == ids[1:]


def test_resolving_a_retrospective_review_ends_its_overdue_state(client, tokens, day):
    decision = decide(client, tokens["clinician"], {**GBS_ADULT, "urgent": URGENT})
    day.set(datetime.date(2026, 12, 9))
    case_id = decision["review_case_id"]
    assert client.get(f"/v1/reviews/{case_id}", headers=bearer(tokens["pharmacist"])).get_json()["overdue"] is True
    resolved = client.post(
        f"/v1/reviews/{case_id}/resolution",
        json={"resolution": "approved", "reason": "Typical GBS; the course was appropriate."},
        headers=bearer(tokens["pharmacist"]),
    )
    assert resolved.status_code == 201 and resolved.get_json()["overdue"] is False


TOXIC_SHOCK = {"diagnosis": {"code": "A48.3"}, "patient": {"age_years": 30, "ref": "MRN-0050"}}


def test_a_stated_urgency_does_not_step_round_a_course_limit(client, tokens, day):
    first = decide(client, tokens["clinician"], TOXIC_SHOCK)
    assert first["outcome"] == "off_label_with_evidence" and first["authorisation_id"]
    day.set(datetime.date(2026, 12, 10))
    second = decide(client, tokens["clinician"], {**TOXIC_SHOCK, "urgent": URGENT})
    assert second["outcome"] == "needs_review" and "allows 1" in second["rationale"]
    assert second["urgent"]["provisional"] is False and second["authorisation_id"] is None
    assert "already had IVIG for this diagnosis" in second["urgent"]["why"]


def test_one_patient_has_one_active_provisional_authorisation_whoever_asks(app, client, tokens, day):
    from service.store.tokens import create_token

    other = create_token(app.extensions["instance"].database, "dr-other", "clinician")
    first = decide(client, tokens["clinician"], {**GBS_ADULT, "urgent": URGENT})
    second = decide(client, other, {**GBS_ADULT, "urgent": URGENT})
    assert first["urgent"]["provisional"] is True and second["urgent"]["provisional"] is False
    assert "already active" in second["urgent"]["why"] and second["authorisation_id"] is None
