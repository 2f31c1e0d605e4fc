"""Dose-determining weight, grams and range checks: every rule, exemption and boundary."""

import datetime
from dataclasses import replace

import pytest

from service.decide.dosing import (
    MissingFact,
    check_order,
    course_grams,
    course_limits,
    courses_given,
    dosing_weight,
    ideal_body_weight,
    limits_for,
)
from service.rulebook.model import DosingProfile, Label, LabelDose, Range, RoundingRule, WeightRule

IMMUNOMODULATORY = DosingProfile("immunomodulatory", Range(0.4, 2.0), Range(21, None))
REPLACEMENT = DosingProfile("replacement", Range(0.3, 0.8), Range(21, 28))
TODAY = datetime.date(2026, 11, 22)
# The weight and rounding rules as rules/ivig.yaml states them.
WEIGHT_RULE = WeightRule(
    source="test",
    ideal_kg_at_five_feet={"male": 50.0, "female": 45.5},
    ideal_kg_per_inch_over_five_feet=2.3,
    other_sexes_use="female",
    adjustment_factor=0.4,
    actual_weight_under_age_years=18,
    actual_weight_under_height_cm=152,
    actual_weight_when_pregnant=True,
)
WITHIN_10_PERCENT = RoundingRule(source="test", tolerance=0.10)


@pytest.mark.parametrize(
    "height_cm, sex, expected",
    [
        (152.4, "male", 50.0),  # exactly five feet: the base
        (152.4, "female", 45.5),
        (177.8, "male", 73.0),  # 70 inches: 50 + 2.3 x 10
        (165.1, "female", 57.0),  # 65 inches: 45.5 + 2.3 x 5
    ],
)
def test_ideal_body_weight_is_devine(height_cm, sex, expected):
    assert ideal_body_weight(height_cm, sex, WEIGHT_RULE)[0] == expected


def test_an_adult_above_the_adjusted_weight_is_dosed_on_the_adjusted_weight():
    weight = dosing_weight(120, 177.8, 45, "male", False, WEIGHT_RULE)
    assert (weight.ideal_kg, weight.adjusted_kg, weight.dosing_kg) == (73.0, 91.8, 91.8)  # 73 + 0.4 x 47
    assert weight.basis == "adjusted weight"


@pytest.mark.parametrize(
    "age, height, pregnant, basis",
    [
        (17, 177.8, False, "actual weight: under 18"),
        (17.99, 177.8, False, "actual weight: under 18"),
        (30, 177.8, True, "actual weight: pregnant"),
        (30, 151.9, False, "actual weight: under 152 cm"),
    ],
)
def test_exemptions_dose_on_the_actual_weight(age, height, pregnant, basis):
    weight = dosing_weight(120, height, age, "female", pregnant, WEIGHT_RULE)
    assert (weight.dosing_kg, weight.basis) == (120, basis)


def test_the_exemptions_end_at_their_boundaries():
    assert dosing_weight(120, 177.8, 18, "female", False, WEIGHT_RULE).basis == "adjusted weight"
    assert dosing_weight(120, 152, 30, "female", False, WEIGHT_RULE).basis == "adjusted weight"


def test_an_actual_weight_below_the_adjusted_weight_is_used_as_is():
    # Lighter than ideal: adjusted = 73 + 0.4 x (60 - 73) = 67.8, above the actual 60.
    weight = dosing_weight(60, 177.8, 40, "male", False, WEIGHT_RULE)
    assert (weight.dosing_kg, weight.adjusted_kg, weight.basis) == (
        60,
        67.8,
        "actual weight: below the adjusted weight",
    )


def test_a_sex_without_a_devine_base_uses_the_female_base_and_says_so():
    weight = dosing_weight(100, 165.1, 40, "unknown", False, WEIGHT_RULE)
    assert weight.ideal_kg == 57.0 and "female base" in weight.basis


@pytest.mark.parametrize(
    "args, missing",
    [
        ((None, 170, 40, "male", False), "patient.weight_kg"),
        ((90, None, 40, "male", False), "patient.height_cm"),
        ((90, 170, None, "male", False), "patient.age_years"),
        ((90, 170, 40, "female", None), "patient.pregnant"),
    ],
)
def test_a_missing_fact_is_named(args, missing):
    with pytest.raises(MissingFact, match=missing):
        dosing_weight(*args, WEIGHT_RULE)


def test_a_child_needs_no_height():
    assert dosing_weight(24.5, None, 8, None, None, WEIGHT_RULE).dosing_kg == 24.5


def test_the_weight_rules_numbers_are_the_rulebooks():
    heavier = replace(
        WEIGHT_RULE,
        ideal_kg_at_five_feet={"male": 52.0, "female": 49.0},
        ideal_kg_per_inch_over_five_feet=1.9,
        adjustment_factor=0.5,
    )
    weight = dosing_weight(120, 177.8, 45, "male", False, heavier)
    assert (weight.ideal_kg, weight.adjusted_kg) == (71.0, 95.5)  # 52 + 1.9 x 10; 71 + 0.5 x 49
    assert (
        dosing_weight(120, 177.8, 16, "male", False, replace(heavier, actual_weight_under_age_years=16)).basis
        == "adjusted weight"
    )


def test_a_rule_that_does_not_exempt_pregnancy_doses_a_pregnant_patient_on_the_adjusted_weight():
    no_pregnancy_exemption = replace(WEIGHT_RULE, actual_weight_when_pregnant=False)
    assert dosing_weight(120, 177.8, 30, "female", True, no_pregnancy_exemption).basis == "adjusted weight"
    assert dosing_weight(120, 177.8, 30, "female", None, no_pregnancy_exemption).basis == "adjusted weight"


def test_a_sex_without_a_base_uses_the_one_the_rule_names():
    weight = dosing_weight(100, 165.1, 40, "other", False, replace(WEIGHT_RULE, other_sexes_use="male"))
    assert weight.ideal_kg == 61.5 and weight.basis.endswith("(male base: no Devine base for this sex)")


PRIVIGEN_VIALS = (5, 10, 20, 40)
GAMUNEX_VIALS = (1, 2.5, 5, 10, 20, 40)


@pytest.mark.parametrize(
    "g_per_kg, weight, vials, exact, rounded, made_of",
    [
        (2.0, 70, PRIVIGEN_VIALS, 140.0, 140.0, ((40, 3), (20, 1))),
        (0.4, 61, PRIVIGEN_VIALS, 24.4, 25.0, ((20, 1), (5, 1))),  # nearest: 25 beats 20
        (0.4, 61, GAMUNEX_VIALS, 24.4, 24.5, ((20, 1), (2.5, 1), (1, 2))),  # finer vials come nearer
        (1.0, 61.2, PRIVIGEN_VIALS, 61.2, 60.0, ((40, 1), (20, 1))),
        (2.0, 61.2, PRIVIGEN_VIALS, 122.4, 120.0, ((40, 3),)),  # 125 would pass 2.0 x 61.2 = 122.4
        (0.5, 24.5, GAMUNEX_VIALS, 12.25, 12.0, ((10, 1), (1, 2))),  # 12 and 12.5 tie: the smaller amount
        (1.0, 22.0, PRIVIGEN_VIALS, 22.0, 20.0, ((20, 1),)),  # 25 g is more than 10% above
    ],
)
def test_grams_are_the_nearest_amount_the_products_vials_make_never_above_the_maximum(
    g_per_kg, weight, vials, exact, rounded, made_of
):
    course = course_grams(g_per_kg, weight, IMMUNOMODULATORY.g_per_kg, vials, WITHIN_10_PERCENT)
    assert (course.grams, course.rounded_grams, course.vials) == (exact, rounded, made_of)
    assert course.rounded_grams <= IMMUNOMODULATORY.g_per_kg.max * weight
    assert abs(course.rounded_grams - exact) <= 0.10 * exact


def test_no_vial_combination_within_ten_percent_is_not_rounded_and_says_what_is_near():
    course = course_grams(0.4, 15, IMMUNOMODULATORY.g_per_kg, (10,), WITHIN_10_PERCENT)  # 6 g from 10 g vials only
    assert course.rounded_grams is None and course.vials == ()
    assert course.rounding == (
        "not rounded: no combination of the vials is within 10% of 6 g and within the dose range "
        "for this weight (6-30 g); the vials make 10 g"
    )


def test_the_rounding_tolerance_is_the_rulebooks():
    # 22 g from Privigen's vials: 20 g is 9% below, so within 10% but not within 5%.
    assert course_grams(1.0, 22.0, IMMUNOMODULATORY.g_per_kg, PRIVIGEN_VIALS, WITHIN_10_PERCENT).rounded_grams == 20.0
    course = course_grams(1.0, 22.0, IMMUNOMODULATORY.g_per_kg, PRIVIGEN_VIALS, RoundingRule("test", 0.05))
    assert course.rounded_grams is None and "within 5% of 22 g" in course.rounding


def test_rounding_never_goes_below_the_minimum_dose():
    # 0.3 g/kg x 70 kg = 21 g: 20 g would be 0.286 g/kg, below the minimum; 25 g is more than 10% above.
    course = course_grams(0.3, 70, REPLACEMENT.g_per_kg, PRIVIGEN_VIALS, WITHIN_10_PERCENT)
    assert (
        course.rounded_grams is None
        and "(21-56 g)" in course.rounding
        and "the vials make 20 g or 25 g" in course.rounding
    )


def test_a_product_without_recorded_vial_sizes_is_not_rounded():
    assert course_grams(1.0, 50, IMMUNOMODULATORY.g_per_kg, (), WITHIN_10_PERCENT).rounded_grams is None


def test_the_labels_dose_wins_over_the_rules_profile_and_keeps_the_profiles_interval_where_it_gives_none():
    privigen_pi = Label("primary_immunodeficiency", dose=LabelDose(Range(0.2, 0.8), Range(21, 28)))
    limits = limits_for(REPLACEMENT, privigen_pi, "Privigen")
    assert (limits.g_per_kg, limits.interval_days) == (Range(0.2, 0.8), Range(21, 28))
    assert _messages(check_order(REPLACEMENT, 0.2, 28, None, TODAY))["dose"][0] is False
    assert _messages(check_order(limits, 0.2, 28, None, TODAY))["dose"][0] is True
    itp = Label("itp", dose=LabelDose(Range(1.0, 2.0)))
    assert limits_for(IMMUNOMODULATORY, itp, "Gamunex-C").interval_days == IMMUNOMODULATORY.interval_days
    assert limits_for(REPLACEMENT, Label("pi"), "Alyglo") is REPLACEMENT  # a label without a dose


def test_a_one_off_course_needs_no_interval_and_allows_a_second_dose_within_days():
    kawasaki = DosingProfile("kawasaki", Range(1.0, 2.0), Range(), courses=2)
    findings = _messages(check_order(kawasaki, 2.0, None, TODAY - datetime.timedelta(days=2), TODAY))
    assert findings["interval"] == (True, "a one-off course: no interval between courses applies (at most 2 courses)")
    assert findings["since_last_infusion"][0] is True and findings["dose"][0] is True


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


MMN = DosingProfile("mmn", Range(0.5, 2.4), Range(14, 28), monthly=True)


@pytest.mark.parametrize(
    "g_per_kg, interval, ok",
    [(2.4, 28, True), (1.2, 14, True), (2.4, 14, False), (1.3, 14, False), (0.2, 14, False), (0.25, 14, True)],
)
def test_a_monthly_total_is_checked_over_28_days_whatever_the_interval(g_per_kg, interval, ok):
    assert _messages(check_order(MMN, g_per_kg, interval, None, TODAY))["dose"][0] is ok


def test_a_monthly_total_over_the_maximum_says_the_months_dose():
    ok, message = _messages(check_order(MMN, 2.4, 14, None, TODAY))["dose"]
    assert not ok and message == (
        "dose 2.4 g/kg every 14 days, that is 4.8 g/kg a month exceeds the maximum 2.4 g/kg a month "
        "by 2.4 g/kg a month (100%)"
    )
    assert course_limits(MMN, 14) == Range(0.25, 1.2) and course_limits(REPLACEMENT, 14) is REPLACEMENT.g_per_kg


@pytest.mark.parametrize(
    "courses, last_days_ago, found",
    [
        (1, None, None),  # nothing given yet
        (1, 10, None),  # the last infusion was before this authorisation
        (1, 2, False),  # a one-off course already given under it: hold
        (2, 2, True),  # Kawasaki: a second course passes, saying to confirm the count
    ],
)
def test_a_one_off_authorisation_holds_a_further_course(courses, last_days_ago, found):
    profile = DosingProfile("acute", Range(0.4, 2.0), Range(), courses=courses)
    last = None if last_days_ago is None else TODAY - datetime.timedelta(days=last_days_ago)
    finding = courses_given(profile, last, TODAY - datetime.timedelta(days=5))
    assert (finding.ok if finding else None) is found
