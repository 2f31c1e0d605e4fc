"""Continuations (issue 16): a continuation is decided on the current rulebook and granted only when
the rule's review criteria find benefit against the initial authorisation's baseline; courses of
an acute rule are limited. Through the API on the test rulebook (its CIDP rule: INCAT at least 1
point better, or MRC sum no more than 2 points worse; continuations last 365 days), on SQLite and
PostgreSQL."""

import datetime

import pytest
from sqlalchemy import update

from service.store.tables import authorisations
from service.store.tokens import create_token

from .conftest import MINI_RULES, bearer, evidence, write_rulebook
from .test_continuing import TODAY, records

STARTED = datetime.date(2026, 6, 4)  # valid 180 days: to 2026-11-30
BASELINE = [
    {"measure": "incat", "value": 6, "unit": "points", "taken_on": "2026-05-20"},
    {"measure": "mrc_sum", "value": 40, "unit": "points", "taken_on": "2026-05-20"},
]


def authorise_cidp(client, token, day, baseline=BASELINE, ref="MRN-0042") -> str:
    day.set(STARTED)
    body = {"diagnosis": {"code": "G61.81"}, "patient": {"age_years": 50, "ref": ref}, "observations": baseline}
    response = client.post("/v1/decisions", json=body, headers=bearer(token))
    day.set(TODAY)
    assert response.status_code == 201 and response.get_json()["authorisation_id"], response.get_json()
    return response.get_json()["authorisation_id"]


def measure(client, token, authorisation_id, measure, value, taken_on="2026-11-20"):
    body = {"measure": measure, "value": value, "unit": "points", "taken_on": taken_on}
    response = client.post(f"/v1/authorisations/{authorisation_id}/measurements", json=body, headers=bearer(token))
    assert response.status_code == 201, response.get_json()


def continuation(client, token, authorisation_id, body=None):
    return client.post(f"/v1/authorisations/{authorisation_id}/continuation", json=body or {}, headers=bearer(token))


def test_a_continuation_with_benefit_grants_the_next_authorisation_for_the_continuing_period(app, client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 4)
    response = continuation(client, tokens["clinician"], first)
    assert response.status_code == 201, response.get_json()
    decision = response.get_json()
    assert decision["outcome"] == "approved" and decision["rule"]["id"] == "cidp-labelled"
    about = decision["continuation"]
    assert about["previous_authorisation_id"] == first and about["benefit"] == "shown"
    [incat] = [row for row in about["compared"] if row["measure"] == "incat"]
    assert (incat["baseline"], incat["current"], incat["change"], incat["met"]) == (6, 4, 2, True)
    assert "benefit rule 'CIDP, covered by a product label' asks for is shown" in decision["rationale"]
    detail = client.get(f"/v1/authorisations/{decision['authorisation_id']}", headers=bearer(tokens["clinician"]))
    granted = detail.get_json()["authorisation"]
    assert granted["previous_id"] == first
    assert (granted["valid_from"], granted["valid_until"]) == ("2026-12-01", "2027-11-30")  # 365 days
    assert [link["id"] for link in detail.get_json()["chain"]] == [first, decision["authorisation_id"]]
    [recorded] = [r for r in records(app, "decision") if r["decision_id"] == decision["decision_id"]]
    assert recorded["body"]["request"]["course"] == "continuation"
    assert recorded["body"]["request"]["patient"]["ref_hash"] == recorded["patient_ref_hash"]
    assert recorded["body"]["authorisation"]["previous_id"] == first


def test_stability_on_one_measure_is_enough_when_the_rule_asks_for_any(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 6)  # unchanged: not improved by 1
    measure(client, tokens["clinician"], first, "mrc_sum", 38)  # 2 points worse: within 2
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "approved" and decision["continuation"]["benefit"] == "shown"


def test_a_continuation_without_benefit_is_not_supported_and_opens_a_review_case(app, client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 6)
    measure(client, tokens["clinician"], first, "mrc_sum", 37)  # 3 points worse
    response = continuation(client, tokens["clinician"], first)
    assert response.status_code == 201
    decision = response.get_json()
    assert decision["outcome"] == "not_supported" and decision["authorisation_id"] is None
    assert decision["rationale"].startswith("No demonstrated benefit")
    assert decision["continuation"]["benefit"] == "not_shown"
    assert [row["met"] for row in decision["continuation"]["compared"]] == [False, False]
    case = client.get(f"/v1/reviews/{decision['review_case_id']}", headers=bearer(tokens["pharmacist"])).get_json()
    assert case["status"] == "open" and case["reason"] == "no_benefit"
    queue = client.get("/v1/reviews?reason=no_benefit", headers=bearer(tokens["pharmacist"])).get_json()
    assert [c["id"] for c in queue["cases"]] == [decision["review_case_id"]]


def test_approving_a_no_benefit_case_grants_the_continuation_with_its_previous_authorisation(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 7)
    measure(client, tokens["clinician"], first, "mrc_sum", 30)
    decision = continuation(client, tokens["clinician"], first).get_json()
    resolved = client.post(
        f"/v1/reviews/{decision['review_case_id']}/resolution",
        json={"resolution": "approved", "reason": "Relapse after an infection; one more period agreed."},
        headers=bearer(tokens["pharmacist"]),
    )
    assert resolved.status_code == 201, resolved.get_json()
    listed = client.get("/v1/authorisations?patient_ref=MRN-0042", headers=bearer(tokens["pharmacist"])).get_json()
    [granted] = [a for a in listed["authorisations"] if a["id"] != first]
    assert granted["previous_id"] == first and granted["basis"] == "review"
    assert granted["valid_until"] == "2027-11-30"


@pytest.mark.parametrize(
    "measured, missing",
    [
        ([], ["incat taken on or after 2026-09-02", "mrc_sum taken on or after 2026-09-02"]),
        ([("incat", 4, "2026-09-01")], ["incat taken on or after 2026-09-02", "mrc_sum taken on or after 2026-09-02"]),
        ([("incat", 6, "2026-11-20")], ["mrc_sum taken on or after 2026-09-02"]),
    ],
)
def test_a_missing_or_stale_measure_needs_review_naming_it_and_the_date_it_needs(
    client, tokens, day, measured, missing
):
    first = authorise_cidp(client, tokens["clinician"], day)
    for name, value, taken_on in measured:
        measure(client, tokens["clinician"], first, name, value, taken_on)
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "needs_review" and decision["missing"] == missing
    assert decision["continuation"]["benefit"] == "missing" and decision["review_case_id"]


def test_one_improved_measure_is_enough_even_when_another_is_missing_under_any(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 5)
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "approved" and decision["missing"] == []


def test_a_measure_without_a_baseline_cannot_be_compared_and_is_named(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day, baseline=[])
    measure(client, tokens["clinician"], first, "incat", 4)
    measure(client, tokens["clinician"], first, "mrc_sum", 50)
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "needs_review"
    assert decision["missing"] == [
        "incat baseline (taken before the initial authorisation began)",
        "mrc_sum baseline (taken before the initial authorisation began)",
    ]


def test_a_measurement_dated_before_the_authorisation_began_counts_as_its_baseline(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day, baseline=[])
    measure(client, tokens["clinician"], first, "incat", 7, taken_on="2026-06-01")
    measure(client, tokens["clinician"], first, "incat", 5)
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "approved", decision["rationale"]


def test_facts_added_to_a_continuation_case_decide_it_again_as_a_continuation(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "needs_review"
    added = client.post(
        f"/v1/reviews/{decision['review_case_id']}/facts",
        json={"observations": [{"measure": "incat", "value": 5, "unit": "points", "taken_on": "2026-11-25"}]},
        headers=bearer(tokens["clinician"]),
    )
    assert added.status_code == 201, added.get_json()
    again = added.get_json()
    assert again["outcome"] == "approved" and again["continuation"]["previous_authorisation_id"] == first
    assert again["authorisation_id"] and again["review_case_id"] is None


def test_extra_observations_in_the_body_count_as_current_measures(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    body = {"observations": [{"measure": "incat", "value": 3, "unit": "points", "taken_on": "2026-11-28"}]}
    decision = continuation(client, tokens["clinician"], first, body).get_json()
    assert decision["outcome"] == "approved"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"diagnosis": {"code": "G61.0"}}, "diagnosis.code"),
        ({"diagnosis": {"text": "GBS"}}, "diagnosis.text"),
        ({"course": "initial"}, "course"),
        ({"patient": {"ref": "MRN-9"}}, "patient.ref"),
        (
            {"observations": [{"measure": "incat", "value": 40, "unit": "points", "taken_on": "2026-11-28"}]},
            "observations[0].value",
        ),
    ],
)
def test_a_continuation_cannot_change_the_patient_diagnosis_or_course_and_bad_facts_are_named(
    app, client, tokens, day, body, field
):
    first = authorise_cidp(client, tokens["clinician"], day)
    before = len(records(app, "decision"))
    response = continuation(client, tokens["clinician"], first, body)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field
    assert "MRN-9" not in response.get_data(as_text=True)
    assert len(records(app, "decision")) == before


def test_an_authorisation_is_continued_once_then_its_continuation_is(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 4)
    second = continuation(client, tokens["clinician"], first).get_json()["authorisation_id"]
    again = continuation(client, tokens["clinician"], first)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_continued"
    assert second in again.get_json()["error"]["message"]
    measure(client, tokens["clinician"], second, "incat", 4, taken_on="2026-12-01")
    third = continuation(client, tokens["clinician"], second).get_json()
    assert third["outcome"] == "approved", third["rationale"]  # still compared with the first baseline
    chain = client.get(f"/v1/authorisations/{first}", headers=bearer(tokens["clinician"])).get_json()["chain"]
    assert [link["id"] for link in chain] == [first, second, third["authorisation_id"]]


def test_a_rule_whose_reviewer_judges_sends_every_continuation_to_review(client, tokens, day):
    day.set(STARTED)
    body = {
        "diagnosis": {"code": "M33.20"},
        "patient": {"age_years": 50, "ref": "MRN-7"},
        "therapies": {"concurrent": ["prednisone"]},
    }
    first = client.post("/v1/decisions", json=body, headers=bearer(tokens["clinician"])).get_json()
    day.set(TODAY)
    decision = continuation(client, tokens["clinician"], first["authorisation_id"]).get_json()
    assert decision["outcome"] == "needs_review" and decision["missing"] == []
    assert "No measure fits; a reviewer judges each continuation" in decision["rationale"]


def test_only_the_requester_pharmacists_and_admins_ask_for_a_continuation(app, client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    other = create_token(app.extensions["instance"].database, "dr-other", "clinician")
    assert continuation(client, other, first).status_code == 403
    assert continuation(client, tokens["auditor"], first).status_code == 403
    assert continuation(client, tokens["pharmacist"], "no-such-id").status_code == 404
    assert continuation(client, tokens["pharmacist"], first).status_code == 201


def test_a_tampered_authorisation_is_not_continued(app, client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    with app.extensions["instance"].sql_engine.begin() as connection:
        connection.execute(update(authorisations).where(authorisations.c.id == first).values(valid_until="2030-01-01"))
    response = continuation(client, tokens["pharmacist"], first)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "integrity_failed"


ACUTE_GBS = {
    "id": "gbs-children",
    "title": "GBS in children",
    "diagnosis": "gbs",
    "when": {"age_years": {"under": 18}},
    "outcome": "off_label_with_evidence",
    "dosing": "acute",
    "authorisation": {"initial_days": 14},
    "courses": {"max": 1, "per_days": 365},
    "rationale": "r",
    "evidence": evidence(),
}


@pytest.fixture
def acute_app(make_app, tmp_path):
    rules = [ACUTE_GBS if rule["id"] == "gbs-children" else rule for rule in MINI_RULES]
    path = write_rulebook(tmp_path / "acute", rules=rules)
    return make_app(RULEBOOK=str(path))


def test_an_acute_rule_grants_its_courses_then_sends_a_further_one_to_review(acute_app, day):
    client = acute_app.test_client()
    token = create_token(acute_app.extensions["instance"].database, "clinician", "clinician")
    body = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-5"}}
    day.set(datetime.date(2025, 12, 1))
    assert client.post("/v1/decisions", json=body, headers=bearer(token)).get_json()["authorisation_id"]
    day.set(datetime.date(2026, 11, 30))  # 364 days later: within the year
    within = client.post("/v1/decisions", json=body, headers=bearer(token)).get_json()
    assert within["outcome"] == "needs_review" and within["authorisation_id"] is None
    assert "1 course of IVIG for this diagnosis were authorised" in within["rationale"]
    other_patient = {**body, "patient": {"age_years": 8, "ref": "MRN-6"}}
    assert client.post("/v1/decisions", json=other_patient, headers=bearer(token)).get_json()["outcome"] == (
        "off_label_with_evidence"
    )
    day.set(datetime.date(2026, 12, 2))  # 366 days after the first: a new period
    after = client.post(
        "/v1/decisions", json={**body, "patient": {"age_years": 9, "ref": "MRN-5"}}, headers=bearer(token)
    )
    assert after.get_json()["outcome"] == "off_label_with_evidence"


def test_a_one_off_course_is_not_continued_but_reviewed(acute_app, day):
    client = acute_app.test_client()
    token = create_token(acute_app.extensions["instance"].database, "clinician", "clinician")
    body = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-5"}}
    granted = client.post("/v1/decisions", json=body, headers=bearer(token)).get_json()
    decision = continuation(client, token, granted["authorisation_id"]).get_json()
    assert decision["outcome"] == "needs_review"
    assert "sets no review criteria (a one-off course)" in decision["rationale"]


def _judged(fixture_formulary, baseline, current, code="D83.9"):
    """The test rulebook's PI rule needs all of: IgG at least 5 g/L, infections no more than before."""
    from service.decide import continuation as judging

    decision = fixture_formulary.decide(
        {"diagnosis": {"code": code}, "patient": {"age_years": 40}, "course": "continuation"}
    )
    readings = [
        tuple(judging.Reading(m, v, TODAY - datetime.timedelta(days=ago)) for m, v, ago in given)
        for given in (baseline, current)
    ]
    return judging.judge(fixture_formulary.rulebook, decision, "a1", *readings, TODAY)


def test_under_all_one_measure_without_benefit_refuses_even_with_another_missing(fixture_formulary):
    decision = _judged(fixture_formulary, [("serious_bacterial_infections", 2, 200)], [("igg_serum", 4.9, 5)])
    assert decision.outcome == "not_supported" and decision.continuation["benefit"] == "not_shown"


def test_under_all_every_measure_must_show_benefit(fixture_formulary):
    baseline = [("serious_bacterial_infections", 2, 200)]
    shown = _judged(fixture_formulary, baseline, [("igg_serum", 5, 5), ("serious_bacterial_infections", 2, 5)])
    assert shown.outcome == "approved" and shown.continuation["benefit"] == "shown"
    missing = _judged(fixture_formulary, baseline, [("igg_serum", 5, 5)])
    assert missing.outcome == "needs_review"
    assert missing.missing == ("serious_bacterial_infections taken on or after 2026-09-02",)
    worse = _judged(fixture_formulary, baseline, [("igg_serum", 5, 5), ("serious_bacterial_infections", 3, 5)])
    assert worse.outcome == "not_supported"


def test_the_latest_reading_of_a_measure_is_the_one_compared(fixture_formulary):
    baseline = [("serious_bacterial_infections", 3, 300), ("serious_bacterial_infections", 2, 200)]
    current = [("igg_serum", 4, 60), ("igg_serum", 6, 5), ("serious_bacterial_infections", 2, 5)]
    decision = _judged(fixture_formulary, baseline, current)
    assert decision.outcome == "approved"
    assert [row["baseline"] for row in decision.continuation["compared"]] == [None, 2]


def test_a_continuations_missing_baseline_is_not_asked_in_a_questionnaire_but_explained(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day, baseline=[])
    measure(client, tokens["clinician"], first, "incat", 4)
    decision = continuation(client, tokens["clinician"], first).get_json()
    response = client.get(f"/v1/decisions/{decision['decision_id']}/questionnaire", headers=bearer(tokens["clinician"]))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_askable"
    assert "a continuation's baseline" in response.get_json()["error"]["message"]


def test_a_measurement_taken_on_the_day_the_authorisation_began_is_current_not_baseline(client, tokens, day):
    day.set(STARTED)
    body = {"diagnosis": {"code": "G61.81"}, "patient": {"age_years": 50, "ref": "MRN-3"}, "observations": BASELINE}
    first = client.post("/v1/decisions", json=body, headers=bearer(tokens["clinician"])).get_json()["authorisation_id"]
    measure(client, tokens["clinician"], first, "incat", 4, taken_on=STARTED.isoformat())
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "approved"
    [incat] = [row for row in decision["continuation"]["compared"] if row["measure"] == "incat"]
    assert (incat["baseline"], incat["current"]) == (6, 4)


def test_the_due_list_names_the_measures_the_rules_review_criteria_need(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day, baseline=BASELINE[:1])  # an INCAT baseline only
    day.set(datetime.date(2026, 11, 20))
    listed = client.get("/v1/authorisations?expiring_within_days=30", headers=bearer(tokens["pharmacist"])).get_json()
    [due] = [a for a in listed["authorisations"] if a["id"] == first]
    assert due["unmeasured"] == ["incat", "mrc_sum"]  # the baseline's, and the rule's criteria's
    measure(client, tokens["clinician"], first, "incat", 4, taken_on="2026-11-15")
    listed = client.get("/v1/authorisations?expiring_within_days=30", headers=bearer(tokens["pharmacist"])).get_json()
    assert [a["unmeasured"] for a in listed["authorisations"] if a["id"] == first] == [["mrc_sum"]]


def test_a_clinician_sees_only_their_own_requests_authorisations_in_the_due_list(app, client, tokens, day):
    mine = authorise_cidp(client, tokens["clinician"], day, ref="MRN-20")
    other = create_token(app.extensions["instance"].database, "dr-other", "clinician")
    theirs = authorise_cidp(client, other, day, ref="MRN-21")
    day.set(datetime.date(2026, 11, 20))
    path = "/v1/authorisations?expiring_within_days=30"
    ids = {
        role: [a["id"] for a in client.get(path, headers=bearer(token)).get_json()["authorisations"]]
        for role, token in (("clinician", tokens["clinician"]), ("other", other), ("pharmacist", tokens["pharmacist"]))
    }
    assert ids["clinician"] == [mine] and ids["other"] == [theirs]
    assert sorted(ids["pharmacist"]) == sorted([mine, theirs])


def test_a_new_request_is_not_a_way_round_a_refused_continuation(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 7)
    measure(client, tokens["clinician"], first, "mrc_sum", 30)
    assert continuation(client, tokens["clinician"], first).get_json()["outcome"] == "not_supported"
    fresh = {"diagnosis": {"code": "G61.81"}, "patient": {"age_years": 50, "ref": "MRN-0042"}, "observations": BASELINE}
    again = client.post("/v1/decisions", json=fresh, headers=bearer(tokens["clinician"])).get_json()
    assert again["outcome"] == "needs_review" and again["authorisation_id"] is None
    assert f"already has authorisation {first}" in again["rationale"]


def test_a_new_request_while_an_authorisation_runs_is_sent_to_its_continuation(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    body = {"diagnosis": {"code": "G61.81"}, "patient": {"age_years": 50, "ref": "MRN-0042"}}
    again = client.post("/v1/decisions", json=body, headers=bearer(tokens["pharmacist"])).get_json()
    assert again["outcome"] == "needs_review" and f"/v1/authorisations/{first}/continuation" in again["rationale"]
    other_patient = {**body, "patient": {"age_years": 50, "ref": "MRN-0043"}}
    assert client.post("/v1/decisions", json=other_patient, headers=bearer(tokens["pharmacist"])).get_json()[
        "outcome"
    ] == ("approved")


def test_a_questionnaire_answer_to_a_continuation_never_counts_the_baseline_as_current(client, tokens, day):
    from .test_questionnaire import answer, answered, send

    first = authorise_cidp(client, tokens["clinician"], day)
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "needs_review"
    response = answered(
        "urn:uuid:x",
        [
            {
                "linkId": "observation:incat@90",
                "item": [
                    answer(
                        "observation:incat@90.value", valueQuantity={"value": 6, "unit": "points", "code": "points"}
                    ),
                    answer("observation:incat@90.taken_on", valueDate="2026-11-25"),
                ],
            }
        ],
    )
    again = send(client, tokens["clinician"], decision["review_case_id"], response).get_json()
    assert again["outcome"] == "needs_review" and again["missing"] == ["mrc_sum taken on or after 2026-09-02"]


def test_a_continuation_moves_the_age_on_and_asks_about_pregnancy_again(app, client, tokens, day):
    day.set(STARTED)
    body = {
        "diagnosis": {"code": "G61.81"},
        "patient": {"age_years": 50, "sex": "female", "pregnant": True, "ref": "MRN-4"},
        "observations": BASELINE,
    }
    first = client.post("/v1/decisions", json=body, headers=bearer(tokens["clinician"])).get_json()["authorisation_id"]
    day.set(TODAY)
    decision = continuation(client, tokens["clinician"], first).get_json()
    [recorded] = [r for r in records(app, "decision") if r["decision_id"] == decision["decision_id"]]
    patient = recorded["body"]["request"]["patient"]
    assert patient["age_years"] == 50.49 and "pregnant" not in patient  # 180 days on


def test_a_baseline_with_no_room_to_improve_goes_to_a_reviewer_not_a_refusal(client, tokens, day):
    baseline = [{"measure": "incat", "value": 0, "unit": "points", "taken_on": "2026-05-20"}]
    first = authorise_cidp(client, tokens["clinician"], day, baseline=baseline)
    measure(client, tokens["clinician"], first, "incat", 0)
    decision = continuation(client, tokens["clinician"], first).get_json()
    assert decision["outcome"] == "needs_review"
    assert "its baseline 0 points leaves no room for an improvement of 1" in decision["missing"][0]


def test_a_tampered_measurement_stops_the_continuation(app, client, tokens, day):
    from service.store.tables import authorisation_measurements

    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 7)
    with app.extensions["instance"].sql_engine.begin() as connection:
        connection.execute(update(authorisation_measurements).values(value=2, value_given=2))
    response = continuation(client, tokens["pharmacist"], first)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "integrity_failed"


def test_a_continuation_takes_further_diagnosis_facts_but_not_another_code(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 4)
    body = {"diagnosis": {"confirmed_by": "neurologist"}}
    response = continuation(client, tokens["clinician"], first, body)
    assert response.status_code == 201 and response.get_json()["outcome"] == "approved"


def test_facts_added_to_the_review_of_such_a_request_do_not_grant_a_fresh_authorisation(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    body = {"diagnosis": {"code": "G61.81"}, "patient": {"ref": "MRN-0042"}}
    held = client.post("/v1/decisions", json=body, headers=bearer(tokens["clinician"])).get_json()
    added = client.post(
        f"/v1/reviews/{held['review_case_id']}/facts",
        json={"patient": {"age_years": 50}},
        headers=bearer(tokens["clinician"]),
    ).get_json()
    assert added["outcome"] == "needs_review" and f"already has authorisation {first}" in added["rationale"]


def test_the_previous_continuations_readings_are_not_the_next_ones_current_readings(client, tokens, day):
    first = authorise_cidp(client, tokens["clinician"], day)
    measure(client, tokens["clinician"], first, "incat", 3, taken_on="2026-12-01")
    second = continuation(client, tokens["clinician"], first).get_json()["authorisation_id"]
    measure(client, tokens["clinician"], second, "incat", 6, taken_on="2026-12-01")
    measure(client, tokens["clinician"], second, "mrc_sum", 35, taken_on="2026-12-01")
    decision = continuation(client, tokens["clinician"], second).get_json()
    assert decision["outcome"] == "not_supported"
    assert [(row["measure"], row["current"]) for row in decision["continuation"]["compared"]] == [
        ("incat", 6),
        ("mrc_sum", 35),
    ]
