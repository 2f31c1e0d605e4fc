"""The compiled rulesets stay inside what durable-rules 2.0.28 handles safely."""

import json
import random
import time

import pytest

from service.decide.formulary import Formulary
from service.rulebook.compiler import MAX_EXPRESSIONS, MAX_RULES_PER_RULESET, _expressions, compile_rulebook
from service.rulebook.reader import load_rulebook
from service.rulebook.shipped import SHIPPED_RULEBOOK

from .synthetic import write_synthetic_rulebook


def _leaf_tests(condition) -> set[str]:
    """The distinct leaf tests of a durable-rules condition, as canonical JSON."""
    if isinstance(condition, dict) and len(condition) == 1:
        ((key, value),) = condition.items()
        if key in ("$and", "$or"):
            return set().union(*(_leaf_tests(c) for c in value))
    return {json.dumps(condition, sort_keys=True)}


@pytest.fixture(params=["mini", "shipped"])
def any_rulebook_path(request, mini_path):
    return mini_path if request.param == "mini" else SHIPPED_RULEBOOK


def test_compiled_rulesets_avoid_nex_and_keep_pri_and_size_in_bounds(any_rulebook_path):
    compiled = compile_rulebook(load_rulebook(any_rulebook_path))
    text = json.dumps(compiled.rulesets)
    assert "$nex" not in text and '"$in"' not in text
    for name, rules in compiled.rulesets.items():
        categories = [category for category, ruleset in compiled.routes.items() if ruleset == name]
        assert len(rules) <= MAX_RULES_PER_RULESET or len(categories) == 1  # one large category fills a ruleset alone
        pris = [rule["pri"] for rule in rules.values()]
        assert pris == list(range(len(pris)))  # integers 0..n-1: no 16-bit wrap, no ties
        distinct = set().union(*(_leaf_tests(r["all"][0]["m"]) for r in rules.values()))
        assert len(distinct) < 512 // 2  # the compile hang starts past 512 per node
        assert max(_expressions(r["all"][0]["m"]) for r in rules.values()) <= MAX_EXPRESSIONS


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


def test_durable_rules_refuses_more_than_15_expressions():
    import durable_rules_engine

    def compiles(condition):
        try:
            handle = durable_rules_engine.create_ruleset(
                "probe", json.dumps({"r": {"all": [{"m": condition}], "pri": 0}})
            )
        except Exception:
            return False
        durable_rules_engine.delete_ruleset(handle)
        return True

    def and_of_ors(n):
        return {"$and": [{"$or": [{f"f{i}": 1}, {f"k{i}": 0}]} for i in range(n - 1)]}

    assert compiles(and_of_ors(MAX_EXPRESSIONS)) and not compiles(and_of_ors(MAX_EXPRESSIONS + 1))


def test_a_rule_too_complex_for_durable_rules_is_refused_by_name(tmp_path):
    from service.rulebook.lint import lint_rulebook

    from .conftest import write_rulebook
    from .synthetic import SYNTHETIC_DATA

    therapies = [f"therapy{i}" for i in range(14)]
    data = {**SYNTHETIC_DATA, "therapies.yaml": {"therapies": {t: {"name": t} for t in therapies}}}
    rules = [
        {
            "id": "busy",
            "title": "Busy",
            "diagnosis": "gbs",
            "outcome": "needs_review",
            "rationale": "r",
            "evidence": [{"source": "review", "finding": "f", "strength": "limited", "effect": "unclear"}],
            "when": {
                "failed_therapies": {"includes": therapies[:8]},
                "concurrent_therapies": {"includes": therapies[8:]},
            },
        }
    ]
    path = write_rulebook(tmp_path, rules=rules, diagnoses={"gbs": {"name": "GBS", "codes": ["G61.0"]}}, data=data)
    problems = lint_rulebook(load_rulebook(path))
    # 14 therapy tests, each "or unknown", inside one $and, plus "some fact missing": 16 nodes.
    assert problems == [
        f"{path}: rule busy: its conditions need 16 and/or expressions, more than the "
        "15 durable-rules compiles; split it into narrower rules"
    ]


def _condition_fields(condition, out: set) -> set:
    """Every message field a durable-rules condition tests (our compiler's operators only)."""
    for key, value in condition.items():
        if key in ("$and", "$or"):
            for item in value:
                _condition_fields(item, out)
        elif key in ("$lt", "$lte", "$gt", "$gte"):
            out |= set(value)
        else:
            assert not key.startswith("$"), f"an operator this test does not know: {key}"
            out.add(key)
    return out


def _random_facts(rng, rulebook):
    from service.rulebook.facts import Facts
    from service.rulebook.model import SEVERITIES, SEXES

    def maybe(values):
        return None if rng.random() < 0.3 else rng.choice(values)

    def therapies():
        return None if rng.random() < 0.3 else frozenset(rng.sample(sorted(rulebook.therapies), rng.randrange(0, 3)))

    return Facts(
        age_years=maybe([0.0, 1.5, 17.9999, 18.0, 42.0, 130.0, 7]),
        sex=maybe(sorted(SEXES)),
        pregnant=maybe([True, False]),
        severity=maybe(sorted(SEVERITIES)),
        failed=therapies(),
        concurrent=therapies(),
        product=maybe(sorted(rulebook.products)),
    )


def test_message_json_is_the_message_and_keeps_every_field_its_ruleset_tests(any_rulebook_path):
    from service.rulebook.engine import Engine

    rulebook = load_rulebook(any_rulebook_path)
    compiled = compile_rulebook(rulebook)
    engine = Engine(compiled, cache_size=0)
    try:
        plans = engine._plans
        for name, rules in compiled.rulesets.items():
            tested = set().union(*(_condition_fields(rule["all"][0]["m"], set()) for rule in rules.values()))
            assert tested <= plans[name].fields, f"{name} would not be posted {tested - plans[name].fields}"
        rng = random.Random(9)
        codes = sorted({c.replace(".", "") for dx in rulebook.diagnoses.values() for c in dx.codes}) + ["G619", "D8091"]
        for rid in range(3_000):
            code, facts = rng.choice(codes), _random_facts(rng, rulebook)
            message = compiled.message(rid, code, facts)
            text = compiled.message_json(rid, code, facts)
            assert json.loads(text) == message
            for _name, plan in plans.items():
                posted = json.loads(compiled.message_json(rid, code, facts, plan))
                assert posted == {k: v for k, v in message.items() if k == "rid" or k in plan.fields}
    finally:
        engine.close()


def test_message_json_escapes_strings_and_refuses_numbers_that_are_not_json(mini_path):
    from service.rulebook.facts import Facts

    compiled = compile_rulebook(load_rulebook(mini_path))
    odd = Facts(age_years=3, sex='fe"male\\', product="Gamma ünïcode")
    assert json.loads(compiled.message_json(1, "G610", odd)) == compiled.message(1, "G610", odd)
    for age in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            compiled.message_json(1, "G610", Facts(age_years=age))
