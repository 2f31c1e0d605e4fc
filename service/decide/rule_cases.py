"""Rule cases: requests with the decision the committee expects, kept next to a rulebook
(rules/<name>.tests.yaml) and run like `opa test`. The test suite runs the shipped rulebook's
cases, and a rulebook proposal runs its own (or the active version's) before anyone may approve it.

A request's observation may give `days_ago` instead of `taken_on`, and an expected `missing`
entry may say "the day N days ago" for a date, so a case about a freshness window stays true
whatever the day. A case may also give the patient's history: `courses_given` (authorisations of
the diagnosis in the rule's course period already), or `continuation: {baseline, current}`
(readings as `{measure, value, unit, days_ago}`), which judges the decision as a continuation the
way the service does (service/decide/continuation.py). `expect: {urgent: true}` says the rule that
decided is on the urgent pathway. `supply_phase: red` decides the case in that supply phase, as the
service does once an admin has set it (service/decide/supply.py); `expect: {tier: blue}` names
the priority tier of the rule that decided.
"""

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from service.decide import continuation, supply
from service.decide.decision import Decision
from service.decide.formulary import Formulary
from service.decide.request import RequestError

CASE_KEYS = {"name", "request", "expect"}
HISTORY_KEYS = {"courses_given", "continuation", "supply_phase"}
EXPECT_KEYS = {"outcome", "rule", "missing", "labelled_products", "benefit", "urgent", "tier"}
_DAYS_AGO = re.compile(r"the day (\d+) days ago")


class CaseError(ValueError):
    """A case that is not written as a case: the message says which key."""


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    expected: dict
    got: dict  # the same keys as `expected`; empty when the case could not run
    rationale: str  # the decision's, or why the case could not run

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "passed": self.passed,
            "expected": self.expected,
            "got": self.got,
            "rationale": self.rationale,
        }


def case_file_of(rulebook_path: Path) -> Path:
    """Where a rulebook's cases are kept: rules/ivig.yaml's in rules/ivig.tests.yaml."""
    return rulebook_path.with_name(f"{rulebook_path.stem}.tests.yaml")


def cases_of(document) -> list[dict]:
    """The cases of a parsed case file ({"cases": [...]}); CaseError when it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise CaseError("a case file is a mapping with a list `cases`")
    return document["cases"]


def decided(formulary: Formulary, case: dict, today: datetime.date) -> Decision:
    """The case's decision, with the patient's history the case gives applied as the service does."""
    decision = formulary.decide(_dated(case["request"], today), as_of=today)
    rule = formulary.rulebook.rule(decision.rule["id"]) if decision.rule else None
    if "courses_given" in case:
        decision = continuation.limit_courses(decision, rule, case["courses_given"])
    if "continuation" in case:
        history = case["continuation"]
        decision = continuation.judge(
            formulary.rulebook,
            decision,
            "rule-case",
            _readings(formulary, history.get("baseline", []), today),
            _readings(formulary, history.get("current", []), today),
            today,
        )
    if "supply_phase" in case:
        decision = supply.in_phase(decision, rule, formulary.rulebook.supply, case["supply_phase"], "rule case")
    return decision


def run_case(formulary: Formulary, case, today: datetime.date) -> CaseResult:
    """One case decided and compared with what it expects, on the keys it names."""
    name = str(case.get("name", "")) if isinstance(case, dict) else ""
    try:
        expect = _checked(case)
        decision = decided(formulary, case, today)
    except (CaseError, RequestError, KeyError, TypeError, ValueError) as error:
        message = error.message if isinstance(error, RequestError) else str(error)
        return CaseResult(name, False, case.get("expect", {}) if isinstance(case, dict) else {}, {}, message)
    rule = formulary.rulebook.rule(decision.rule["id"]) if decision.rule else None
    found = {
        "outcome": decision.outcome,
        "rule": rule.id if rule else None,
        "missing": sorted(decision.missing),
        "labelled_products": sorted(decision.labelled_products),
        "benefit": (decision.continuation or {}).get("benefit"),
        "urgent": bool(rule and rule.urgent),
        "tier": rule.tier if rule else None,
    }
    wanted = {key: sorted(value) if isinstance(value, list) else value for key, value in expect.items()}
    if "missing" in wanted:  # "the day 90 days ago" stands for that date, as days_ago does
        wanted["missing"] = sorted(
            _DAYS_AGO.sub(lambda m: (today - datetime.timedelta(days=int(m.group(1)))).isoformat(), str(item))
            for item in wanted["missing"]
        )
    got = {key: found[key] for key in wanted}
    return CaseResult(name, got == wanted, wanted, got, decision.rationale)


def run_cases(formulary: Formulary, cases: list, today: datetime.date) -> list[CaseResult]:
    return [run_case(formulary, case, today) for case in cases]


def _checked(case) -> dict:
    """The case's `expect`, once the case has the keys a case has."""
    if not isinstance(case, dict) or not CASE_KEYS <= set(case) <= CASE_KEYS | HISTORY_KEYS:
        keys = sorted(case) if isinstance(case, dict) else type(case).__name__
        raise CaseError(f"a case has name, request and expect (and optionally {sorted(HISTORY_KEYS)}); found {keys}")
    expect = case["expect"]
    if not isinstance(expect, dict) or "outcome" not in expect or not set(expect) <= EXPECT_KEYS:
        raise CaseError(f"expect names outcome and optionally {sorted(EXPECT_KEYS - {'outcome'})}; found {expect!r}")
    return expect


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
