"""The compiled rulesets stay inside what durable-rules 2.0.28 handles safely."""
import json
import random
import time

import pytest

from service.compiler import MAX_RULES_PER_RULESET, compile_rulebook
from service.formulary import Formulary
from service.rulebook import load_rulebook

from .synthetic import write_synthetic_rulebook


def _tests_in(condition) -> int:
    """Count the leaf tests in a durable-rules condition."""
    if isinstance(condition, dict) and len(condition) == 1:
        (key, value), = condition.items()
        if key in ("$and", "$or"):
            return sum(_tests_in(c) for c in value)
    return 1


def test_compiled_rulesets_avoid_nex_and_keep_pri_and_size_in_bounds(mini_path):
    compiled = compile_rulebook(load_rulebook(mini_path))
    text = json.dumps(compiled.rulesets)
    assert "$nex" not in text and "$in" not in text
    for rules in compiled.rulesets.values():
        assert len(rules) <= MAX_RULES_PER_RULESET
        pris = [rule["pri"] for rule in rules.values()]
        assert pris == list(range(len(pris)))            # integers 0..n-1: no 16-bit wrap, no ties
        assert sum(_tests_in(r["all"][0]["m"]) for r in rules.values()) < 512 * 2


def test_every_compiled_rule_first_tests_its_code(mini_path):
    compiled = compile_rulebook(load_rulebook(mini_path))
    for rules in compiled.rulesets.values():
        for rule in rules.values():
            first = rule["all"][0]["m"]["$and"][0]
            assert list(first)[0].startswith("dx")


@pytest.mark.slow
def test_10000_rule_rulebook_loads_and_decides_correctly(tmp_path):
    path, codes = write_synthetic_rulebook(tmp_path, 10_000)
    started = time.perf_counter()
    formulary = Formulary.load(path)
    load_seconds = time.perf_counter() - started
    try:
        assert len(formulary.rulebook.rules) == 10_000
        assert len(formulary.engine._compiled.rulesets) >= 10_000 * 2 // MAX_RULES_PER_RULESET
        rng = random.Random(3)
        for _ in range(5_000):
            i = rng.randrange(len(codes))
            age = rng.choice([5, 17, 18, 60])
            decision = formulary.decide({"diagnosis": {"code": codes[i]}, "patient": {"age_years": age}})
            assert decision.rule["id"] == f"dx{i}-{'children' if age < 18 else 'adults'}"
        assert formulary.decide({"diagnosis": {"code": codes[0]}}).missing == ("patient.age_years",)
    finally:
        formulary.close()
    print(f"10,000-rule rulebook: load, lint and compile in {load_seconds:.1f} s")
