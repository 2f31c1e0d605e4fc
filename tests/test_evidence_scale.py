"""One evidence scale: lint holds every rule's outcome to what its evidence can carry."""

import pytest

from .test_lint import edited_rules, problems_for


def entry(strength, effect=None):
    found = {"source": "review", "finding": "a finding", "strength": strength}
    return found | ({"effect": effect} if effect else {})


@pytest.mark.parametrize(
    "evidence",
    [
        [entry("controlled", "no_benefit")],
        [entry("none_found")],
        [entry("limited", "no_benefit"), entry("none_found")],
    ],
)
def test_a_refusal_rests_on_controlled_no_benefit_or_a_review_that_found_nothing(tmp_path, evidence):
    rules = edited_rules("myositis-without-steroids", evidence=evidence)
    assert problems_for(tmp_path, rules=rules) == []


@pytest.mark.parametrize(
    "evidence",
    [
        [entry("limited", "no_benefit")],  # limited evidence that shows no benefit: review
        [entry("controlled", "benefit")],
        [entry("controlled", "unclear")],
        [entry("mixed")],
        [entry("not_addressed")],  # silence of the sources
        [entry("guideline_listed"), entry("case_experience")],
    ],
)
def test_limited_mixed_or_absent_evidence_cannot_refuse(tmp_path, evidence):
    problems = problems_for(tmp_path, rules=edited_rules("myositis-without-steroids", evidence=evidence))
    assert any(
        "rule myositis-without-steroids.evidence: not_supported needs controlled studies reporting no benefit" in p
        for p in problems
    ), problems


@pytest.mark.parametrize(
    "evidence", [[entry("controlled", "no_benefit")], [entry("limited", "benefit")], [entry("mixed")]]
)
def test_off_label_needs_a_controlled_finding_of_benefit(tmp_path, evidence):
    problems = problems_for(tmp_path, rules=edited_rules("gbs-children", evidence=evidence))
    assert any("off_label_with_evidence needs a controlled finding of benefit" in p for p in problems), problems


@pytest.mark.parametrize(
    "evidence, message",
    [
        ([entry("controlled")], "evidence[0].effect: a controlled finding needs an effect"),
        ([entry("limited")], "evidence[0].effect: a limited finding needs an effect"),
        ([entry("not_addressed", "benefit")], "evidence[0].effect: a not_addressed finding reports no effect"),
        ([entry("controlled", "helps")], "evidence[0].effect: 'helps' is not one of: benefit, no_benefit, unclear"),
    ],
)
def test_an_effect_is_given_exactly_where_the_strength_reports_one(tmp_path, evidence, message):
    problems = problems_for(tmp_path, rules=edited_rules("gbs-adults", evidence=evidence))
    assert any(message in p for p in problems), problems
