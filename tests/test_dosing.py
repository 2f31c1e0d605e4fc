"""Dose-determining weight, grams and range checks: every rule, exemption and boundary."""
import datetime

import pytest

from service.dosing import MissingFact, check_order, course_grams, dosing_weight, ideal_body_weight
from service.rulebook import DosingProfile, Range

IMMUNOMODULATORY = DosingProfile("immunomodulatory", Range(0.4, 2.0), Range(21, None))
REPLACEMENT = DosingProfile("replacement", Range(0.3, 0.8), Range(21, 28))
TODAY = datetime.date(2026, 11, 22)


@pytest.mark.parametrize("height_cm, sex, expected", [
    (152.4, "male", 50.0),              # exactly five feet: the base
    (152.4, "female", 45.5),
    (177.8, "male", 73.0),              # 70 inches: 50 + 2.3 x 10
    (165.1, "female", 57.0),            # 65 inches: 45.5 + 2.3 x 5
])
def test_ideal_body_weight_is_devine(height_cm, sex, expected):
    assert ideal_body_weight(height_cm, sex)[0] == expected


def test_an_adult_above_the_adjusted_weight_is_dosed_on_the_adjusted_weight():
    weight = dosing_weight(120, 177.8, 45, "male", False)
    assert (weight.ideal_kg, weight.adjusted_kg, weight.dosing_kg) == (73.0, 91.8, 91.8)   # 73 + 0.4 x 47
    assert weight.basis == "adjusted weight"


@pytest.mark.parametrize("age, height, pregnant, basis", [
    (17, 177.8, False, "actual weight: under 18"),
    (17.99, 177.8, False, "actual weight: under 18"),
    (30, 177.8, True, "actual weight: pregnant"),
    (30, 151.9, False, "actual weight: under 152 cm"),
])
def test_exemptions_dose_on_the_actual_weight(age, height, pregnant, basis):
    weight = dosing_weight(120, height, age, "female", pregnant)
    assert (weight.dosing_kg, weight.basis) == (120, basis)


def test_the_exemptions_end_at_their_boundaries():
    assert dosing_weight(120, 177.8, 18, "female", False).basis == "adjusted weight"
    assert dosing_weight(120, 152, 30, "female", False).basis == "adjusted weight"


def test_an_actual_weight_below_the_adjusted_weight_is_used_as_is():
    # Lighter than ideal: adjusted = 73 + 0.4 x (60 - 73) = 67.8, above the actual 60.
    weight = dosing_weight(60, 177.8, 40, "male", False)
    assert (weight.dosing_kg, weight.adjusted_kg, weight.basis) == (60, 67.8, "actual weight: below the adjusted weight")


def test_a_sex_without_a_devine_base_uses_the_female_base_and_says_so():
    weight = dosing_weight(100, 165.1, 40, "unknown", False)
    assert weight.ideal_kg == 57.0 and "female base" in weight.basis


@pytest.mark.parametrize("args, missing", [
    ((None, 170, 40, "male", False), "patient.weight_kg"),
    ((90, None, 40, "male", False), "patient.height_cm"),
    ((90, 170, None, "male", False), "patient.age_years"),
    ((90, 170, 40, "female", None), "patient.pregnant"),
])
def test_a_missing_fact_is_named(args, missing):
    with pytest.raises(MissingFact, match=missing):
        dosing_weight(*args)


def test_a_child_needs_no_height():
    assert dosing_weight(24.5, None, 8, None, None).dosing_kg == 24.5


@pytest.mark.parametrize("g_per_kg, weight, exact, rounded", [
    (2.0, 70, 140.0, 140.0),
    (0.4, 61, 24.4, 25.0),              # nearest 2.5 g
    (1.0, 61.2, 61.2, 60.0),
    (2.0, 61.2, 122.4, 120.0),          # 122.5 would pass 2.0 x 61.2 = 122.4: rounded down
    (0.5, 24.5, 12.25, 12.5),
])
def test_grams_round_to_whole_vials_never_above_the_maximum(g_per_kg, weight, exact, rounded):
    result = course_grams(g_per_kg, weight, IMMUNOMODULATORY)
    assert result == (exact, rounded)
    assert result[1] <= IMMUNOMODULATORY.g_per_kg.max * weight


def _messages(findings):
    return {f.check: (f.ok, f.message) for f in findings}


@pytest.mark.parametrize("g_per_kg, ok", [(0.4, True), (2.0, True), (0.39, False), (2.01, False)])
def test_dose_boundaries(g_per_kg, ok):
    assert _messages(check_order(IMMUNOMODULATORY, g_per_kg, 28, None, TODAY))["dose"][0] is ok


def test_a_dose_over_the_maximum_says_which_limit_and_by_how_much():
    ok, message = _messages(check_order(IMMUNOMODULATORY, 2.4, 28, None, TODAY))["dose"]
    assert not ok and message == "dose 2.4 g/kg exceeds the maximum 2 g/kg by 0.4 g/kg (20%)"


@pytest.mark.parametrize("interval, ok", [(20, False), (21, True), (28, True), (29, False)])
def test_interval_boundaries_for_replacement(interval, ok):
    assert _messages(check_order(REPLACEMENT, 0.5, interval, None, TODAY))["interval"][0] is ok


def test_an_interval_below_the_minimum_says_by_how_much():
    ok, message = _messages(check_order(REPLACEMENT, 0.5, 14, None, TODAY))["interval"]
    assert not ok and message == "interval 14 days is below the minimum 21 days by 7 days (33%)"


@pytest.mark.parametrize("days_ago, ok", [(20, False), (21, True), (40, True)])
def test_time_since_the_last_infusion_must_reach_the_minimum_interval(days_ago, ok):
    findings = _messages(check_order(IMMUNOMODULATORY, 1.0, 28, TODAY - datetime.timedelta(days=days_ago), TODAY))
    assert findings["since_last_infusion"][0] is ok


def test_a_last_infusion_in_the_future_is_refused():
    findings = _messages(check_order(IMMUNOMODULATORY, 1.0, 28, TODAY + datetime.timedelta(days=1), TODAY))
    assert findings["since_last_infusion"] == (False, "the last infusion date 2026-11-23 is in the future")


def test_a_missing_dose_or_interval_never_passes():
    findings = _messages(check_order(IMMUNOMODULATORY, None, None, None, TODAY))
    assert findings["dose"][0] is False and findings["interval"][0] is False
