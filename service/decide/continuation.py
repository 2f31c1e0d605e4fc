"""Repeated IVIG: whether an authorisation's outcome measures show the benefit its rule asks for
at a continuation, and whether an acute rule's course limit is reached.

Pure: given the rule's review criteria, the baseline (the initial authorisation's measures) and
the latest measures since the authorisation began, it says benefit shown, not shown, or what is
missing, and turns the rules' decision for the continuation into the continuation's decision.
A refusal needs measured absence of benefit: with `benefit: any`, every measure must have been
measured and none show benefit; with `all`, one measured failure is enough. Anything less
certain is missing facts, and a pharmacist decides.
"""

import datetime
from dataclasses import dataclass, replace

from service.decide.decision import Decision
from service.rulebook.model import POSITIVE_OUTCOMES, BenefitTest, Measure, ReviewCriteria, Rule, Rulebook


@dataclass(frozen=True)
class Reading:
    """One value of a measure, in its canonical unit, and the day it was taken."""

    measure: str
    value: float
    taken_on: datetime.date


@dataclass(frozen=True)
class Assessment:
    benefit: str  # "shown", "not_shown" or "missing"
    compared: tuple[dict, ...]  # one per measure the criteria name
    missing: tuple[str, ...] = ()


def latest(readings) -> dict[str, Reading]:
    """The latest reading of each measure (the later one given wins a tie)."""
    chosen: dict[str, Reading] = {}
    for reading in readings:
        if reading.measure not in chosen or reading.taken_on >= chosen[reading.measure].taken_on:
            chosen[reading.measure] = reading
    return chosen


def _change(measure: Measure, baseline: float, current: float) -> float:
    """How much better the current value is than the baseline (negative: worse)."""
    change = current - baseline if measure.better == "higher" else baseline - current
    return round(change, 4)


def _room(measure: Measure, baseline: float) -> float:
    """How far a baseline is from the best value the measure can take."""
    return round(measure.high - baseline if measure.better == "higher" else baseline - measure.low, 4)


def _compare(test: BenefitTest, measure: Measure, baseline: Reading | None, current: Reading) -> tuple[dict, bool]:
    change = _change(measure, baseline.value, current.value) if baseline is not None and measure.better else None
    met = True
    if test.improved_by is not None:
        met = met and change is not None and change >= test.improved_by
    if test.stable_within is not None:
        met = met and change is not None and change >= -test.stable_within
    if test.at_least is not None:
        met = met and current.value >= test.at_least
    if test.at_most is not None:
        met = met and current.value <= test.at_most
    return _compared(test, measure, baseline, current, change, met), met


def _compared(
    test: BenefitTest,
    measure: Measure,
    baseline: Reading | None,
    current: Reading | None = None,
    change: float | None = None,
    met: bool | None = None,
) -> dict:
    """One measure as the decision shows it; without a current reading (or a baseline to compare
    with) `met` is None."""
    return {
        "measure": test.measure,
        "unit": measure.unit,
        "better": measure.better,
        "baseline": baseline.value if baseline else None,
        "baseline_taken_on": baseline.taken_on.isoformat() if baseline else None,
        "current": current.value if current else None,
        "current_taken_on": current.taken_on.isoformat() if current else None,
        "change": change,
        "criterion": test.describe(),
        "met": met,
    }


def assess(
    criteria: ReviewCriteria,
    measures: dict[str, Measure],
    baseline: dict[str, Reading],
    current: dict[str, Reading],
    today: datetime.date,
) -> Assessment:
    """Each measure the criteria name, compared; then benefit shown, not shown, or missing facts."""
    oldest = today - datetime.timedelta(days=criteria.within_days)
    compared, results, missing = [], [], []
    for test in criteria.measures:
        measure = measures[test.measure]
        now = current.get(test.measure)
        before = baseline.get(test.measure)
        if now is None or now.taken_on < oldest:
            missing.append(f"{test.measure} taken on or after {oldest.isoformat()}")
            compared.append(_compared(test, measure, before))
            continue
        if test.needs_baseline and before is None:
            missing.append(f"{test.measure} baseline (taken before the initial authorisation began)")
            compared.append(_compared(test, measure, None))
            continue
        if test.improved_by is not None and before is not None and _room(measure, before.value) < test.improved_by:
            # A baseline at (or near) the best score cannot improve by the amount: the measure
            # cannot show benefit either way, so a reviewer judges it, never a refusal.
            missing.append(
                f"a reviewer's judgement of {test.measure}: its baseline {before.value:g} {measure.unit} "
                f"leaves no room for an improvement of {test.improved_by:g}"
            )
            compared.append(_compared(test, measure, before, now))
            continue
        row, met = _compare(test, measure, before, now)
        compared.append(row)
        results.append(met)
    if criteria.benefit == "any":
        verdict = "shown" if any(results) else ("missing" if missing else "not_shown")
    else:
        verdict = "not_shown" if not all(results) else ("missing" if missing else "shown")
    return Assessment(verdict, tuple(compared), tuple(missing) if verdict == "missing" else ())


def judge(
    rulebook: Rulebook, decision: Decision, previous_id: str, baseline, current, today: datetime.date
) -> Decision:
    """The continuation's decision: the rules' decision on the current rulebook, kept only when the
    rule's review criteria find the benefit they ask for."""
    rule = rulebook.rule(decision.rule["id"]) if decision.rule else None
    about: dict = {"previous_authorisation_id": previous_id, "benefit": "not_assessed", "compared": []}
    if decision.outcome not in POSITIVE_OUTCOMES or rule is None:
        return replace(decision, continuation=about)
    criteria = rule.review_criteria
    if criteria is None or not criteria.measures:
        why = (
            criteria.reviewer_judges
            if criteria is not None
            else "the rule sets no review criteria (a one-off course): whether another course is given is decided case by case"
        )
        return _needs_review(
            decision, rule, f"A continuation under rule '{rule.title}' goes to a reviewer: {why}", about
        )
    assessment = assess(criteria, rulebook.measures, latest(baseline), latest(current), today)
    about = {
        **about,
        "benefit": assessment.benefit,
        "criteria": criteria.describe(),
        "compared": list(assessment.compared),
    }
    if assessment.benefit == "shown":
        return replace(
            decision,
            rationale=f"{decision.rationale} Continuation: the benefit rule '{rule.title}' asks for is shown ({_summary(assessment)}).",
            continuation=about,
        )
    if assessment.benefit == "missing":
        return replace(
            _needs_review(
                decision,
                rule,
                f"A continuation under rule '{rule.title}' needs {', '.join(assessment.missing)} to compare with "
                f"what counts as benefit ({criteria.describe()}). Record the measurements and ask again, or a "
                "pharmacist reviews.",
                about,
            ),
            missing=assessment.missing,
        )
    return replace(
        decision,
        outcome="not_supported",
        rationale=(
            f"No demonstrated benefit: rule '{rule.title}' continues IVIG when {criteria.describe()}, and the "
            f"measures do not show it ({_summary(assessment)}). A review case is open so the treating clinician "
            "can argue an exception."
        ),
        labelled_products=(),
        continuation=about,
    )


def _needs_review(decision: Decision, rule: Rule, rationale: str, about: dict) -> Decision:
    return replace(
        decision, outcome="needs_review", rationale=rationale, labelled_products=(), missing=(), continuation=about
    )


def _summary(assessment: Assessment) -> str:
    return "; ".join(
        f"{row['measure']} {'-' if row['baseline'] is None else format(row['baseline'], 'g')} -> {row['current']:g} "
        f"{row['unit']}: {'met' if row['met'] else 'not met'}"
        for row in assessment.compared
        if row.get("met") is not None
    )


def limit_courses(decision: Decision, rule: Rule | None, given: int) -> Decision:
    """needs_review when the patient already has as many authorisations of this diagnosis in the
    rule's period as its course limit allows: a further course is the committee's decision."""
    limit = rule.courses if rule else None
    if rule is None or limit is None or decision.outcome not in POSITIVE_OUTCOMES or given < limit.max:
        return decision
    return replace(
        decision,
        outcome="needs_review",
        rationale=(
            f"{given} course{'s' if given != 1 else ''} of IVIG for this diagnosis were authorised for this patient "
            f"in the last {limit.per_days} days, and rule '{rule.title}' allows {limit.max}: a pharmacist or the "
            "committee decides a further course."
        ),
        labelled_products=(),
    )


def continue_instead(decision: Decision, rule: Rule | None, rulebook: Rulebook, earlier: dict | None) -> Decision:
    """needs_review for a new request under a maintenance rule when the patient already has an
    authorisation of the diagnosis to continue (`earlier`: its id and last day): a further period
    is its continuation, judged on the outcome measures, never a fresh initial authorisation with
    a fresh baseline (which would step round a refusal for no benefit)."""
    if (
        earlier is None
        or rule is None
        or decision.outcome not in POSITIVE_OUTCOMES
        or not rulebook.is_maintenance(rule)
    ):
        return decision
    return replace(
        decision,
        outcome="needs_review",
        rationale=(
            f"This patient already has authorisation {earlier['id']} for this diagnosis (valid until "
            f"{earlier['valid_until']}), and rule '{rule.title}' repeats its courses: a further period is that "
            f"authorisation's continuation (POST /v1/authorisations/{earlier['id']}/continuation), judged on the "
            "outcome measures against its baseline, not a new initial authorisation. A pharmacist decides this request."
        ),
        labelled_products=(),
    )
