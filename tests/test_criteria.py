"""Qualifying criteria (issue 16): observations with units and dates, who confirmed the diagnosis,
the prescriber's specialty, the disease phase, the course, and how long a therapy was tried.

Decided on the test rulebook (tests/rulebook/ivig-test.yaml): `cll-low-igg` (IgG below 4 g/L within
90 days, else `cll-review`) and `evans-criteria` (every criterion at once, else `evans-review`).
"""

import datetime

import pytest

from service import clock
from service.decide.request import RequestError

TODAY = datetime.date(2026, 12, 1)


@pytest.fixture(autouse=True)
def _today(monkeypatch):
    moment = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(clock, "now", lambda: moment)


def igg(value, unit="g/L", taken_on="2026-11-01"):
    return {"measure": "igg_serum", "value": value, "unit": unit, "taken_on": taken_on}


def cll(*observations):
    return {"diagnosis": {"code": "C91.10"}, "observations": list(observations)}


def decided(formulary, payload) -> tuple[str, str | None, list[str]]:
    d = formulary.decide(payload).to_dict()
    return d["outcome"], d["rule"] and d["rule"]["id"], d["missing"]


@pytest.mark.parametrize(
    "observation, rule",
    [
        (igg(3.99), "cll-low-igg"),
        (igg(4.0), "cll-review"),  # below is strict
        (igg(399, "mg/dL"), "cll-low-igg"),  # 399 mg/dL = 3.99 g/L
        (igg(400, "mg/dL"), "cll-review"),
        (igg(0), "cll-low-igg"),
        (igg(15), "cll-review"),
    ],
)
def test_an_observation_threshold_holds_on_its_side_in_any_accepted_unit(fixture_formulary, observation, rule):
    outcome, fired, missing = decided(fixture_formulary, cll(observation))
    assert (fired, missing) == (rule, [])
    assert outcome == ("off_label_with_evidence" if rule == "cll-low-igg" else "needs_review")


def test_an_observation_older_than_the_window_is_missing_with_the_date_it_needs(fixture_formulary):
    # 90 days before 2026-12-01 is 2026-09-02: taken that day counts, the day before does not.
    assert decided(fixture_formulary, cll(igg(3.0, taken_on="2026-09-02")))[:2] == (
        "off_label_with_evidence",
        "cll-low-igg",
    )
    assert decided(fixture_formulary, cll(igg(3.0, taken_on="2026-09-01"))) == (
        "needs_review",
        "cll-low-igg",
        ["igg_serum taken on or after 2026-09-02"],
    )


def test_no_observation_is_missing_with_the_date_it_needs(fixture_formulary):
    assert decided(fixture_formulary, {"diagnosis": {"code": "C91.10"}}) == (
        "needs_review",
        "cll-low-igg",
        ["igg_serum taken on or after 2026-09-02"],
    )


def test_a_remembered_decision_missing_a_dated_fact_counts_from_the_new_day_next_day(fixture_formulary, monkeypatch):
    payload = {"diagnosis": {"code": "C91.10"}}
    for _ in range(2):  # decided, then answered from the formulary's memory of decisions
        assert decided(fixture_formulary, payload)[2] == ["igg_serum taken on or after 2026-09-02"]
    next_day = datetime.datetime(2026, 12, 2, 0, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(clock, "now", lambda: next_day)
    assert decided(fixture_formulary, payload)[2] == ["igg_serum taken on or after 2026-09-03"]


def test_the_latest_observation_of_a_measure_decides(fixture_formulary):
    older_low, newer_normal = igg(3.0, taken_on="2026-10-01"), igg(8.0, taken_on="2026-11-20")
    assert decided(fixture_formulary, cll(older_low, newer_normal))[1] == "cll-review"
    assert decided(fixture_formulary, cll(newer_normal, igg(3.0, taken_on="2026-11-25")))[1] == "cll-low-igg"


def test_a_stale_observation_moves_to_missing_as_the_clock_moves(fixture_formulary, monkeypatch):
    payload = cll(igg(3.0, taken_on="2026-11-01"))
    assert decided(fixture_formulary, payload)[1] == "cll-low-igg"
    later = datetime.datetime(2027, 2, 1, 12, 0, tzinfo=datetime.UTC)  # 92 days after the sample
    monkeypatch.setattr(clock, "now", lambda: later)
    assert decided(fixture_formulary, payload) == (
        "needs_review",
        "cll-low-igg",
        ["igg_serum taken on or after 2026-11-03"],
    )


def evans(**changes):
    payload = {
        "diagnosis": {"code": "D69.41", "confirmed_by": "haematologist", "onset_date": "2025-06-01"},
        "prescriber": {"specialty": "immunologist"},
        "course": "initial",
        "therapies": {"failed": ["rituximab", {"name": "prednisone", "weeks": 12, "reason": "inadequate_response"}]},
        "observations": [{"measure": "platelets", "value": 30, "unit": "x10^9/L", "taken_on": "2026-11-20"}],
    }
    for path, value in changes.items():
        parent, _, key = path.rpartition(".")
        target = payload[parent] if parent else payload
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return payload


def test_every_criterion_met_decides_on_the_rule(fixture_formulary):
    assert decided(fixture_formulary, evans()) == ("off_label_with_evidence", "evans-criteria", [])


@pytest.mark.parametrize(
    "changes",
    [
        {"diagnosis.confirmed_by": "neurologist"},
        {"prescriber.specialty": "neurologist"},
        {"course": "continuation"},
        {"course": "one_off"},
        {"diagnosis.onset_date": "2026-01-01"},  # 11 months: persistent
        {"diagnosis.onset_date": None, "diagnosis.phase": "persistent"},
        {"therapies.failed": [{"name": "prednisone", "weeks": 11}]},
        {"therapies.failed": ["rituximab"]},
        {"observations": [{"measure": "platelets", "value": 30001, "unit": "/uL", "taken_on": "2026-11-20"}]},
        {"observations": [{"measure": "platelets", "value": 30.01, "unit": "x10^9/L", "taken_on": "2026-11-20"}]},
    ],
)
def test_a_criterion_not_met_falls_to_the_next_rule(fixture_formulary, changes):
    assert decided(fixture_formulary, evans(**changes)) == ("needs_review", "evans-review", [])


@pytest.mark.parametrize(
    "changes",
    [
        {"diagnosis.onset_date": "2025-12-01"},  # exactly 12 months: chronic
        {"diagnosis.onset_date": None, "diagnosis.phase": "chronic"},
        {"therapies.failed": [{"name": "corticosteroids", "weeks": 52}]},
        {"observations": [{"measure": "platelets", "value": 30000, "unit": "/uL", "taken_on": "2026-11-01"}]},
        {"prescriber.specialty": "haematologist"},
    ],
)
def test_a_criterion_met_at_its_edge_decides_on_the_rule(fixture_formulary, changes):
    assert decided(fixture_formulary, evans(**changes)) == ("off_label_with_evidence", "evans-criteria", [])


@pytest.mark.parametrize(
    "changes, missing",
    [
        ({"diagnosis.confirmed_by": None}, ["diagnosis.confirmed_by"]),
        ({"prescriber": None}, ["prescriber.specialty"]),
        ({"course": None}, ["course"]),
        ({"diagnosis.onset_date": None}, ["diagnosis.phase"]),
        ({"therapies.failed": ["prednisone"]}, ["therapies.failed[corticosteroids].weeks"]),
        ({"therapies": None}, ["therapies.failed"]),
        ({"observations": None}, ["platelets taken on or after 2026-11-01"]),
        (
            {"observations": [{"measure": "platelets", "value": 10, "unit": "x10^9/L", "taken_on": "2026-10-31"}]},
            ["platelets taken on or after 2026-11-01"],
        ),
    ],
)
def test_a_criterion_without_its_fact_is_needs_review_naming_it(fixture_formulary, changes, missing):
    assert decided(fixture_formulary, evans(**changes)) == ("needs_review", "evans-criteria", missing)


@pytest.mark.parametrize(
    "extra, field, code",
    [
        ({"observations": "igg"}, "observations", "wrong_type"),
        ({"observations": [igg(3, "g/dL")]}, "observations[0].unit", "unknown_unit"),
        ({"observations": [{**igg(3), "measure": "iga"}]}, "observations[0].measure", "unknown_value"),
        ({"observations": [igg(3), igg(201)]}, "observations[1].value", "out_of_range"),
        ({"observations": [igg(20001, "mg/dL")]}, "observations[0].value", "out_of_range"),
        ({"observations": [igg(-1)]}, "observations[0].value", "out_of_range"),
        ({"observations": [igg("3")]}, "observations[0].value", "wrong_type"),
        ({"observations": [igg(3, taken_on="2026-12-02")]}, "observations[0].taken_on", "out_of_range"),
        ({"observations": [igg(3, taken_on="2026-02-30")]}, "observations[0].taken_on", "invalid_value"),
        ({"observations": [igg(3, taken_on="1/11/2026")]}, "observations[0].taken_on", "invalid_value"),
        (
            {"observations": [{"measure": "igg_serum", "value": 3, "unit": "g/L"}]},
            "observations[0].taken_on",
            "missing_field",
        ),
        ({"observations": [{**igg(3), "patient": "x"}]}, "observations[0].patient", "unknown_field"),
        ({"observations": [igg(3), igg(4)]}, "observations[1].value", "conflicting_values"),
        ({"course": "maintenance"}, "course", "unknown_value"),
        ({"prescriber": {"specialty": "surgeon"}}, "prescriber.specialty", "unknown_value"),
        ({"prescriber": {"name": "Dr X"}}, "prescriber.name", "unknown_field"),
        ({"therapies": {"failed": [{"name": "prednisone", "weeks": 2.5}]}}, "therapies.failed[0].weeks", "wrong_type"),
        ({"therapies": {"failed": [{"name": "prednisone", "weeks": -1}]}}, "therapies.failed[0].weeks", "out_of_range"),
        (
            {"therapies": {"failed": [{"name": "prednisone", "reason": "felt odd"}]}},
            "therapies.failed[0].reason",
            "unknown_value",
        ),
        ({"therapies": {"failed": [{"weeks": 3}]}}, "therapies.failed[0].name", "missing_field"),
        ({"therapies": {"failed": [{"name": "aspirin"}]}}, "therapies.failed[0].name", "unknown_therapy"),
    ],
)
def test_bad_request_facts_are_refused_naming_the_field(fixture_formulary, extra, field, code):
    with pytest.raises(RequestError) as refused:
        fixture_formulary.decide({"diagnosis": {"code": "C91.10"}, **extra})
    assert (refused.value.field, refused.value.code) == (field, code)


@pytest.mark.parametrize(
    "diagnosis, field, code",
    [
        ({"confirmed_by": "surgeon"}, "diagnosis.confirmed_by", "unknown_value"),
        ({"phase": "acute"}, "diagnosis.phase", "unknown_value"),
        ({"onset_date": "2027-01-01"}, "diagnosis.onset_date", "out_of_range"),
        ({"onset_date": "June 2025"}, "diagnosis.onset_date", "invalid_value"),
        ({"phase": "newly_diagnosed", "onset_date": "2025-01-01"}, "diagnosis.phase", "conflicting_values"),
    ],
)
def test_bad_diagnosis_facts_are_refused_naming_the_field(fixture_formulary, diagnosis, field, code):
    with pytest.raises(RequestError) as refused:
        fixture_formulary.decide({"diagnosis": {"code": "D69.41", **diagnosis}})
    assert (refused.value.field, refused.value.code) == (field, code)


def test_a_phase_that_agrees_with_the_onset_date_is_accepted(fixture_formulary):
    payload = evans(**{"diagnosis.phase": "chronic"})
    assert decided(fixture_formulary, payload)[1] == "evans-criteria"
