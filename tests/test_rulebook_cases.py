"""Runs the test cases kept next to each rulebook (rules/<name>.tests.yaml), like `opa test`,
with the runner a rulebook proposal uses (service/decide/rule_cases.py, which says how a case is
written).

Besides each case, it checks the cases keep up with the rulebook: every rule has a case, and
every age threshold and therapy condition is tested on both sides.
"""

from pathlib import Path

import pytest

from service import clock
from service.decide import rule_cases
from service.decide.formulary import Formulary
from service.rulebook import icd10
from service.rulebook.lint import lint_paths
from service.rulebook.reader import read_yaml

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
CASE_FILES = sorted(RULES_DIR.glob("*.tests.yaml"))


def _cases():
    for case_file in CASE_FILES:
        for i, case in enumerate(read_yaml(case_file)["cases"]):
            yield pytest.param(case_file, case, id=f"{case_file.stem}:{i}:{case['name']}")


_loaded: dict[Path, Formulary] = {}


def formulary_for(case_file: Path) -> Formulary:
    rulebook = case_file.with_name(case_file.name.replace(".tests.yaml", ".yaml"))
    assert rule_cases.case_file_of(rulebook) == case_file
    if rulebook not in _loaded:
        _loaded[rulebook] = Formulary.load(rulebook)
    return _loaded[rulebook]


def test_every_shipped_rulebook_lints_clean():
    files, problems = lint_paths([RULES_DIR])
    assert files and problems == []


def test_every_rulebook_has_a_case_file():
    rulebooks = {p for p in RULES_DIR.glob("*.yaml") if not p.name.endswith(".tests.yaml")}
    assert rulebooks, "no rulebook in rules/"
    assert {rule_cases.case_file_of(p) for p in rulebooks} <= set(CASE_FILES)


def decided(case_file: Path, case: dict):
    return rule_cases.decided(formulary_for(case_file), case, clock.utc_today())


@pytest.mark.parametrize("case_file, case", list(_cases()))
def test_rule_case(case_file, case):
    result = rule_cases.run_case(formulary_for(case_file), case, clock.utc_today())
    assert result.got == result.expected and result.passed, result.rationale


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
