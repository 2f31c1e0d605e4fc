"""Runs the test cases kept next to each rulebook (rules/<name>.tests.yaml), like `opa test`.

Besides each case, it checks the cases keep up with the rulebook: every rule has a case, and
every age threshold and therapy condition is tested on both sides.

A request's observation may give `days_ago` instead of `taken_on`, and an expected `missing`
entry may say "the day N days ago" for a date, so a case about a freshness window stays true
whatever the day. A case may also say the patient's history: `courses_given` (authorisations of the diagnosis in
the rule's course period already), or `continuation: {baseline, current}` (readings as
`{measure, value, unit, days_ago}`), which judges the decision as a continuation the way the
service does (service/decide/continuation.py). `expect: {urgent: true}` says the rule that decided
is on the urgent pathway (an urgent request it sends to review gets a provisional authorisation).
"""

import datetime
import re
from pathlib import Path

import pytest

from service import clock
from service.decide import continuation
from service.decide.formulary import Formulary
from service.rulebook import icd10
from service.rulebook.lint import lint_paths
from service.rulebook.reader import read_yaml

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
CASE_FILES = sorted(RULES_DIR.glob("*.tests.yaml"))
EXPECT_KEYS = {"outcome", "rule", "missing", "labelled_products", "benefit", "urgent"}
HISTORY_KEYS = {"courses_given", "continuation"}
_DAYS_AGO = re.compile(r"the day (\d+) days ago")


def _cases():
    for case_file in CASE_FILES:
        for i, case in enumerate(read_yaml(case_file)["cases"]):
            yield pytest.param(case_file, case, id=f"{case_file.stem}:{i}:{case['name']}")


_loaded: dict[Path, Formulary] = {}


def formulary_for(case_file: Path) -> Formulary:
    rulebook = case_file.with_name(case_file.name.replace(".tests.yaml", ".yaml"))
    if rulebook not in _loaded:
        _loaded[rulebook] = Formulary.load(rulebook)
    return _loaded[rulebook]


def test_every_shipped_rulebook_lints_clean():
    files, problems = lint_paths([RULES_DIR])
    assert files and problems == []


def test_every_rulebook_has_a_case_file():
    rulebooks = {p for p in RULES_DIR.glob("*.yaml") if not p.name.endswith(".tests.yaml")}
    assert rulebooks, "no rulebook in rules/"
    assert {p.with_name(p.name.replace(".yaml", ".tests.yaml")) for p in rulebooks} <= set(CASE_FILES)


def _readings(formulary: Formulary, given: list, today: datetime.date) -> tuple[continuation.Reading, ...]:
    return tuple(
        continuation.Reading(
            item["measure"],
            formulary.rulebook.measures[item["measure"]].to_canonical(item["value"], item["unit"]),
            today - datetime.timedelta(days=item["days_ago"]),
        )
        for item in given
    )


def _dated(request: dict, today: datetime.date) -> dict:
    """The request with each observation's `days_ago` turned into its `taken_on` date."""
    observations = request.get("observations")
    if not observations:
        return request
    return {
        **request,
        "observations": [
            {k: v for k, v in o.items() if k != "days_ago"}
            | ({"taken_on": (today - datetime.timedelta(days=o["days_ago"])).isoformat()} if "days_ago" in o else {})
            for o in observations
        ],
    }


def decided(case_file: Path, case: dict):
    """The case's decision, with the patient's history the case gives applied as the service does."""
    formulary = formulary_for(case_file)
    decision = formulary.decide(_dated(case["request"], clock.utc_today()))
    rule = formulary.rulebook.rule(decision.rule["id"]) if decision.rule else None
    if "courses_given" in case:
        decision = continuation.limit_courses(decision, rule, case["courses_given"])
    if "continuation" in case:
        today = clock.utc_today()
        history = case["continuation"]
        decision = continuation.judge(
            formulary.rulebook,
            decision,
            "rule-case",
            _readings(formulary, history.get("baseline", []), today),
            _readings(formulary, history.get("current", []), today),
            today,
        )
    return decision


@pytest.mark.parametrize("case_file, case", list(_cases()))
def test_rule_case(case_file, case):
    assert {"name", "request", "expect"} <= set(case) <= {"name", "request", "expect", *HISTORY_KEYS}, (
        f"case keys: {sorted(case)}"
    )
    expect = case["expect"]
    assert "outcome" in expect and set(expect) <= EXPECT_KEYS, f"expect keys: {sorted(expect)}"
    decision = decided(case_file, case)
    got = {
        "outcome": decision.outcome,
        "rule": decision.rule["id"] if decision.rule else None,
        "missing": sorted(decision.missing),
        "labelled_products": sorted(decision.labelled_products),
        "benefit": (decision.continuation or {}).get("benefit"),
        "urgent": bool(decision.rule) and formulary_for(case_file).rulebook.rule(decision.rule["id"]).urgent,
    }
    wanted = {key: sorted(value) if isinstance(value, list) else value for key, value in expect.items()}
    if "missing" in wanted:  # "the day 90 days ago" stands for that date, as days_ago does
        today = clock.utc_today()
        wanted["missing"] = sorted(
            _DAYS_AGO.sub(lambda m: (today - datetime.timedelta(days=int(m.group(1)))).isoformat(), item)
            for item in wanted["missing"]
        )
    assert {key: got[key] for key in wanted} == wanted, decision.rationale


def _decided_cases(case_file):
    """(case, decision) for every case of a file."""
    return [(case, decided(case_file, case)) for case in read_yaml(case_file)["cases"]]


@pytest.mark.parametrize("case_file", CASE_FILES, ids=lambda p: p.stem)
def test_every_rule_has_a_case(case_file):
    rulebook = formulary_for(case_file).rulebook
    covered = {case["expect"].get("rule") for case in read_yaml(case_file)["cases"]}
    assert [r.id for r in rulebook.rules if r.id not in covered] == []


@pytest.mark.parametrize("case_file", CASE_FILES, ids=lambda p: p.stem)
def test_every_age_and_therapy_condition_is_tested_on_both_sides(case_file):
    rulebook = formulary_for(case_file).rulebook
    decided = _decided_cases(case_file)
    gaps = []
    for rule in rulebook.rules:
        codes = {icd10.normalise(c) for c in rulebook.diagnoses[rule.diagnosis].codes}
        requests = [
            case["request"]
            for case, decision in decided
            if decision.diagnosis.plain_code and any(decision.diagnosis.plain_code.startswith(c) for c in codes)
        ]
        ages = {r.get("patient", {}).get("age_years") for r in requests}
        for threshold in (rule.when.age_under, rule.when.age_at_least):
            if threshold is not None and not (
                threshold in ages and any(a is not None and threshold - 1 <= a < threshold for a in ages)
            ):
                gaps.append(f"{rule.id}: ages {threshold:g} and just below")
        for kind, therapies in (
            ("failed", rule.when.failed_includes),
            ("concurrent", rule.when.concurrent_includes | rule.when.concurrent_excludes),
        ):
            for therapy in therapies:
                lists = [r.get("therapies", {}).get(kind) for r in requests]
                given = [
                    formulary_for(case_file).vocabulary.therapy(t, kind)
                    for listed in lists
                    if listed is not None
                    for t in listed
                ]
                if therapy not in given or not any(
                    listed is not None
                    and therapy not in {formulary_for(case_file).vocabulary.therapy(t, kind) for t in listed}
                    for listed in lists
                ):
                    gaps.append(f"{rule.id}: with and without {kind} {therapy}")
    assert gaps == []
