"""Compiling a rulebook into durable-rules JSON rulesets, and facts into the messages posted to them.

Layout (docs/DURABLE_RULES.md says why):
- Rules are grouped by ICD-10-CM category (first three characters) and categories are packed into
  rulesets of at most MAX_RULES_PER_RULESET compiled rules, far below the 512-distinct-test compile
  hang and the 4,096-rule limit. Python routes a request to the one ruleset holding its category,
  so a decision costs the same whatever the size of the rulebook.
- Inside a ruleset each compiled rule first tests one code prefix (dx3..dx7 = the request code's
  first 3..7 characters) and durable-rules' `pri` encodes the whole precedence: more specific
  codes first, then the order from `service.rulebook.precedence`. `post` fires only the lowest `pri`, so
  one post gives the decision.
- A rule whose conditions need a fact compiles to `match` rules (every condition holds) and,
  right after them, `unknown` rules (no condition is contradicted, but a fact it needs is
  missing): the decision is then needs_review with the missing facts. A labelled approval has
  one alternative per label age limit; each alternative is its own compiled rule, since
  durable-rules refuses conditions with more than 15 `$and`/`$or` nodes. Every fact is posted with a `known_*`
  flag, so no rule needs `$nex` (which can hang) and absent fields are never relied on.
- Facts are typed in Python before they are posted: numbers, 0/1 flags and vocabulary strings.
  Qualifying criteria are posted as derived fields, each with its own known flag: the latest value
  of a measure within each window a rule names (`obs__igg_serum__90`, in the canonical unit; a
  stale value is simply not written, so its flag is 0 and the rule's `unknown` variant fires), a
  failed therapy's weeks (`failed_weeks__corticosteroids`), the phases as 0/1 fields like therapies
  (`phases__chronic`), and `confirmed_by`, `specialty` and `course` as strings. Thresholds are
  converted to the canonical unit when the rulebook is read, so the engine compares numbers only.
- The event posted to a ruleset (`message_json`) leaves out the fields none of its conditions
  mention (see MessagePlan): they cannot change which rule fires, and each costs durable-rules
  work on every post. `message` is the full event as a dict, for tools and tests.
"""

import json
import math
import re
from dataclasses import dataclass, field

from service.rulebook import icd10, precedence
from service.rulebook.facts import Facts, Verdict, failed_weeks_fact, observation_fact
from service.rulebook.model import THRESHOLDS, Conditions, Rule, Rulebook

MAX_RULES_PER_RULESET = 120
MAX_CODE_LENGTH = 7  # an ICD-10-CM code has at most 7 characters (3 category + 4)
MAX_RULES_PER_CATEGORY = 400

# Fact name (as the request spells it, and as `missing` reports it) -> the engine's flag field.
FACT_FLAGS = {
    "patient.age_years": "known_age",
    "patient.sex": "known_sex",
    "patient.pregnant": "known_pregnant",
    "severity": "known_severity",
    "therapies.failed": "known_failed",
    "therapies.concurrent": "known_concurrent",
    "diagnosis.confirmed_by": "known_confirmed_by",
    "prescriber.specialty": "known_specialty",
    "diagnosis.phase": "known_phases",
    "course": "known_course",
}


def _observation_field(measure: str, within_days: int | None) -> str:
    return f"obs__{measure}" + (f"__{within_days}" if within_days is not None else "")


def _weeks_field(therapy: str) -> str:
    return f"failed_weeks__{therapy}"


def fact_flag(fact: str) -> str:
    """The engine's known-flag field of a fact `missing` may name."""
    if fact in FACT_FLAGS:
        return FACT_FLAGS[fact]
    kind, _, rest = fact.partition(":")
    if kind == "observation":
        measure, _, window = rest.partition("@")
        return "known_" + _observation_field(measure, int(window) if window else None)
    if kind == "failed_weeks":
        return "known_" + _weeks_field(rest)
    raise KeyError(fact)


# A number derived from the facts for one rulebook: ("obs", measure, within_days) or ("weeks", therapy, None).
NumberField = tuple[str, str, int | None]


def _number_spec(spec: NumberField):
    """(value field, flag field, facts -> (known, value)) for one derived number."""
    kind, name, window = spec
    if kind == "obs":
        field_name = _observation_field(name, window)

        def observed(facts: Facts):
            value = facts.observation(name, window)
            return value is not None, value

        return field_name, "known_" + field_name, observed
    field_name = _weeks_field(name)

    def weeks(facts: Facts):
        return facts.weeks_known(name), facts.weeks(name)

    return field_name, "known_" + field_name, weeks


@dataclass
class CompiledRulebook:
    rulesets: dict[str, dict[str, dict]]  # ruleset name -> compiled rule name -> {"all": ..., "pri": ...}
    routes: dict[str, str]  # ICD-10-CM category -> ruleset name
    verdicts: dict[str, Verdict]  # compiled rule name -> verdict
    therapy_fields: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    number_fields: frozenset[NumberField] = field(default_factory=frozenset)
    _every_field: "MessagePlan" = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self._every_field = MessagePlan(None, self.therapy_fields, self.number_fields)

    def message_plan(self, definition: str) -> "MessagePlan":
        """What message_json writes for the ruleset whose JSON text (as given to durable-rules) this is."""
        return MessagePlan(definition, self.therapy_fields, self.number_fields)

    def message(self, rid: int, code: str, facts: Facts) -> dict:
        """The event posted for one request: a request id, the code prefixes and the typed facts."""
        msg: dict[str, object] = {"rid": rid}
        for prefix in icd10.prefixes(code):
            msg[f"dx{len(prefix)}"] = prefix
        _put(msg, "age", "known_age", facts.age_years)
        _put(msg, "sex", "known_sex", facts.sex)
        _put(msg, "pregnant", "known_pregnant", None if facts.pregnant is None else int(facts.pregnant))
        _put(msg, "severity", "known_severity", facts.severity)
        _put(msg, "product", "known_product", facts.product)
        _put(msg, "route", "known_route", facts.route)
        _put(msg, "confirmed_by", "known_confirmed_by", facts.confirmed_by)
        _put(msg, "specialty", "known_specialty", facts.specialty)
        _put(msg, "course", "known_course", facts.course)
        for kind in _THERAPY_KINDS:
            given = getattr(facts, kind)
            msg[f"known_{kind}"] = int(given is not None)
            if given is not None:
                for field_kind, therapy in self.therapy_fields:
                    if field_kind == kind:
                        msg[_therapy_field(kind, therapy)] = int(therapy in given)
        for spec in sorted(self.number_fields, key=repr):
            name, flag, read = _number_spec(spec)
            known, value = read(facts)
            msg[flag] = int(known)
            if value is not None:
                msg[name] = value
        return msg

    def message_json(self, rid: int, code: str, facts: Facts, plan: "MessagePlan | None" = None) -> str:
        """`message` as the compact JSON text durable-rules reads, keeping `rid` and only the
        fields that `plan`'s ruleset mentions; with no plan, json.loads gives exactly `message`.

        Written directly: the engine posts this on every decision, and a dict plus json.dumps
        cost several times more. Strings go through json's own escaping; a number that is not
        finite is refused (json.dumps would write NaN, which is not JSON).
        """
        plan = self._every_field if plan is None else plan
        enc = _encode_string
        parts = [f'{{"rid":{int.__index__(rid)}']
        for length in range(icd10.CATEGORY_LENGTH, len(code) + 1) if plan.dx is None else plan.dx:
            if length <= len(code):
                parts.append(f',"dx{length}":{enc(code[:length])}')
        for attribute, flag, key, encode in plan.scalars:
            value = getattr(facts, attribute)
            if value is None:
                if flag:
                    parts.append(flag + "0")
            else:
                if flag:
                    parts.append(flag + "1")
                if key:
                    parts.append(key + encode(value))
        for attribute, flag, keys in plan.therapies:
            given = getattr(facts, attribute)
            if flag:
                parts.append(flag + ("0" if given is None else "1"))
            if given is not None:
                for therapy, key in keys:
                    parts.append(key + ("1" if therapy in given else "0"))
        for read, flag, key in plan.numbers:
            known, value = read(facts)
            if flag:
                parts.append(flag + ("1" if known else "0"))
            if key and value is not None:
                parts.append(key + _number(value))
        parts.append("}")
        return "".join(parts)


# json.dumps(..., ensure_ascii=False) escapes strings with this (C-accelerated) function.
_encode_string = json.encoder.encode_basestring


def _number(value) -> str:
    """A number as json.dumps writes it; NaN and infinities are refused."""
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return float.__repr__(value)
    if type(value) is int:
        return int.__repr__(value)
    return json.dumps(value, allow_nan=False)


def _flag(value) -> str:
    return "1" if value else "0"


# Facts attribute -> (its flag field, its value field, how the value is written), in `message`'s order.
_SCALARS = (
    ("age_years", "known_age", "age", _number),
    ("sex", "known_sex", "sex", _encode_string),
    ("pregnant", "known_pregnant", "pregnant", _flag),
    ("severity", "known_severity", "severity", _encode_string),
    ("product", "known_product", "product", _encode_string),
    ("route", "known_route", "route", _encode_string),
    ("confirmed_by", "known_confirmed_by", "confirmed_by", _encode_string),
    ("specialty", "known_specialty", "specialty", _encode_string),
    ("course", "known_course", "course", _encode_string),
)
# Facts attributes holding sets of words, and the prefixes of their 0/1 fields.
_THERAPY_KINDS = ("failed", "concurrent", "phases")


class MessagePlan:
    """Which message fields message_json writes for one ruleset, as ready JSON key prefixes.

    A field that no condition of a ruleset mentions cannot change which of its rules fires, and
    it costs durable-rules a parse and a hash on every post, so it is left out. Whether the
    ruleset mentions a field is read off the very JSON text durable-rules compiled (the field
    name, quoted, anywhere in it): a field is kept whenever in doubt, never dropped when used.
    `definition` None: every field, as `message` writes them.
    """

    def __init__(
        self,
        definition: str | None,
        therapy_fields: frozenset[tuple[str, str]],
        number_fields: frozenset[NumberField] = frozenset(),
    ):
        def used(name: str) -> bool:
            return definition is None or _encode_string(name) in definition

        def field_key(name: str) -> str:
            return f",{_encode_string(name)}:"

        def key(name: str) -> str | None:
            return field_key(name) if used(name) else None

        if definition is not None and any(int(n) > MAX_CODE_LENGTH for n in re.findall(r'"dx(\d+)"', definition)):
            raise CompileError(f"a compiled condition tests a code prefix longer than {MAX_CODE_LENGTH} characters")
        # None: every prefix of the code, as `message` writes them.
        self.dx = (
            None
            if definition is None
            else tuple(n for n in range(icd10.CATEGORY_LENGTH, MAX_CODE_LENGTH + 1) if used(f"dx{n}"))
        )
        self.scalars = tuple(
            (attribute, key(flag), key(name), encode)
            for attribute, flag, name, encode in _SCALARS
            if used(flag) or used(name)
        )
        therapies = []
        for kind in _THERAPY_KINDS:
            names = [
                (therapy, _therapy_field(kind, therapy))
                for field_kind, therapy in sorted(therapy_fields)
                if field_kind == kind
            ]
            keys = tuple((therapy, field_key(name)) for therapy, name in names if used(name))
            if used(f"known_{kind}") or keys:
                therapies.append((kind, key(f"known_{kind}"), keys))
        self.therapies = tuple(therapies)
        numbers = []
        for spec in sorted(number_fields, key=repr):
            name, flag, read = _number_spec(spec)
            if used(name) or used(flag):
                numbers.append((read, key(flag), key(name)))
        self.numbers = tuple(numbers)
        number_names = [n for spec in number_fields for n in _number_spec(spec)[:2]]
        # The fields written besides rid (None: all), for tests and benchmarks.
        self.fields = (
            None
            if definition is None
            else frozenset(
                [f"dx{n}" for n in self.dx or ()]
                + [name for _, flag, value, _ in _SCALARS for name in (flag, value) if used(name)]
                + [f"known_{kind}" for kind, flag, _ in self.therapies if flag]
                + [_therapy_field(kind, therapy) for kind, _, keys in self.therapies for therapy, _ in keys]
                + [name for name in number_names if used(name)]
            )
        )


def _put(msg: dict, name: str, flag: str, value):
    msg[flag] = int(value is not None)
    if value is not None:
        msg[name] = value


def _therapy_field(kind: str, therapy: str) -> str:
    return f"{kind}__{therapy}"


class CompileError(Exception):
    """A rulebook that passed loading but cannot be laid out safely for durable-rules."""


class _Atom:
    """One test on one fact: the durable-rules condition, and the fact it needs (None: never missing).

    `facts` lists every fact the test needs when there are several (a failed therapy's weeks need
    the failed list and the weeks); the test is unknown when any of their flags is 0."""

    def __init__(self, test: dict, fact: str | None, facts: tuple[str, ...] = ()):
        self.test = test
        self.facts = facts or ((fact,) if fact else ())
        self.fact = self.facts[0] if self.facts else None

    def or_unknown(self) -> dict:
        """The test, or the fact is unknown: one flat `$or`, to keep the expression count low."""
        if not self.facts:
            return self.test
        unknown = [{fact_flag(f): 0} for f in self.facts]
        return {"$or": self.test["$or"] + unknown} if "$or" in self.test else {"$or": [self.test] + unknown}


def _any_of(field_name: str, values) -> dict:
    tests = [{field_name: v} for v in sorted(values)]
    return tests[0] if len(tests) == 1 else {"$or": tests}


def _atoms(when: Conditions) -> list[_Atom]:
    atoms = []
    if when.age_at_least is not None:
        atoms.append(_Atom({"$gte": {"age": when.age_at_least}}, "patient.age_years"))
    if when.age_under is not None:
        atoms.append(_Atom({"$lt": {"age": when.age_under}}, "patient.age_years"))
    if when.sex is not None:
        atoms.append(_Atom(_any_of("sex", when.sex), "patient.sex"))
    if when.pregnant is not None:
        atoms.append(_Atom({"pregnant": int(when.pregnant)}, "patient.pregnant"))
    if when.severity is not None:
        atoms.append(_Atom(_any_of("severity", when.severity), "severity"))
    min_weeks = dict(when.failed_min_weeks)
    for therapy in sorted(when.failed_includes):
        if therapy in min_weeks:
            test = {
                "$and": [{_therapy_field("failed", therapy): 1}, {"$gte": {_weeks_field(therapy): min_weeks[therapy]}}]
            }
            atoms.append(_Atom(test, None, ("therapies.failed", failed_weeks_fact(therapy))))
        else:
            atoms.append(_Atom({_therapy_field("failed", therapy): 1}, "therapies.failed"))
    for therapy in sorted(when.concurrent_includes):
        atoms.append(_Atom({_therapy_field("concurrent", therapy): 1}, "therapies.concurrent"))
    for therapy in sorted(when.concurrent_excludes):
        atoms.append(_Atom({_therapy_field("concurrent", therapy): 0}, "therapies.concurrent"))
    if when.product is not None:
        atoms.append(_Atom(_any_of("product", when.product), None))
    for observed in when.observations:
        field_name = _observation_field(observed.measure, observed.within_days)
        bounds = [{THRESHOLDS[op]: {field_name: value}} for op, value in observed.bounds]
        atoms.append(
            _Atom(
                bounds[0] if len(bounds) == 1 else {"$and": bounds},
                observation_fact(observed.measure, observed.within_days),
            )
        )
    if when.confirmed_by is not None:
        atoms.append(_Atom(_any_of("confirmed_by", when.confirmed_by), "diagnosis.confirmed_by"))
    if when.prescriber_specialty is not None:
        atoms.append(_Atom(_any_of("specialty", when.prescriber_specialty), "prescriber.specialty"))
    if when.phase is not None:
        phases = [{_therapy_field("phases", p): 1} for p in sorted(when.phase)]
        atoms.append(_Atom(phases[0] if len(phases) == 1 else {"$or": phases}, "diagnosis.phase"))
    if when.course is not None:
        atoms.append(_Atom(_any_of("course", when.course), "course"))
    return atoms


def _label_clauses(rulebook: Rulebook, indication: str) -> list[list[_Atom]]:
    """The label condition of an approved rule as alternatives, one per kind of label coverage.

    Labels that cover the same ages by the same routes form one alternative: it holds when the
    requested product (or any, when none is named) is one of those products, the patient's age is
    within the limits and the route is one of the label's. Each alternative becomes its own
    compiled rule, because durable-rules refuses a condition with more than MAX_EXPRESSIONS
    `$and`/`$or` nodes.
    """
    by_coverage: dict[tuple, list[str]] = {}
    for name, label in rulebook.labels_for(indication):
        by_coverage.setdefault((label.age_at_least, label.age_under, tuple(sorted(label.routes))), []).append(name)
    clauses = []
    for (at_least, under, routes), names in sorted(by_coverage.items(), key=lambda item: repr(item[0])):
        clause = [_Atom({"$or": [{"product": name} for name in names] + [{"known_product": 0}]}, None)]
        if at_least is not None:
            clause.append(_Atom({"$gte": {"age": at_least}}, "patient.age_years"))
        if under is not None:
            clause.append(_Atom({"$lt": {"age": under}}, "patient.age_years"))
        clause.append(_Atom(_any_of("route", routes), None))
        clauses.append(clause)
    return clauses


# Measured on durable-rules 2.0.28: a condition with 16 or more `$and`/`$or` nodes fails to
# compile ("error code: 113"), whatever its shape.
MAX_EXPRESSIONS = 15


def _expressions(condition) -> int:
    if isinstance(condition, dict):
        return sum((key in ("$and", "$or")) + _expressions(value) for key, value in condition.items())
    if isinstance(condition, list):
        return sum(_expressions(item) for item in condition)
    return 0


def _compile_rule(rulebook: Rulebook, rule: Rule, code_test: dict) -> list[tuple[dict, Verdict]]:
    """The compiled rules for one rule on one code, in the order they are tried.

    First the alternatives where every condition holds ("match"); then, if the rule needs facts,
    the same alternatives with each condition allowed to be unknown and some needed fact
    actually missing ("unknown").
    """
    atoms = _atoms(rule.when)
    clauses = (
        [atoms + extra for extra in _label_clauses(rulebook, rule.labelled_indication)]
        if rule.labelled_indication
        else [atoms]
    )
    needs = tuple(dict.fromkeys(f for clause in clauses for a in clause for f in a.facts))
    compiled = []
    for clause in clauses:
        compiled.append(({"$and": [code_test] + [a.test for a in clause]}, Verdict(rule, "match", needs)))
    if needs:
        missing = [{fact_flag(f): 0} for f in needs]
        some_missing = missing[0] if len(missing) == 1 else {"$or": missing}
        for clause in clauses:
            condition = {"$and": [code_test] + [a.or_unknown() for a in clause] + [some_missing]}
            compiled.append((condition, Verdict(rule, "unknown", needs)))
    for condition, _ in compiled:
        if _expressions(condition) > MAX_EXPRESSIONS:
            raise CompileError(
                f"rule {rule.id}: its conditions need {_expressions(condition)} and/or expressions, more than the "
                f"{MAX_EXPRESSIONS} durable-rules compiles; split it into narrower rules"
            )
    return compiled


def rules_by_code(rulebook: Rulebook) -> dict[str, list[Rule]]:
    """Each dotless code any rule is written on -> the rules on it, in file order."""
    by_code: dict[str, list[Rule]] = {}
    for rule in rulebook.rules:
        for code in rulebook.diagnoses[rule.diagnosis].codes:
            by_code.setdefault(icd10.normalise(code), []).append(rule)
    return by_code


def compile_rulebook(rulebook: Rulebook) -> CompiledRulebook:
    by_category: dict[str, list[tuple[str, Rule]]] = {}
    for code, rules in rules_by_code(rulebook).items():
        for rule in precedence.order(rules):
            by_category.setdefault(code[: icd10.CATEGORY_LENGTH], []).append((code, rule))

    compiled_by_category: dict[str, list[tuple[str, dict, Verdict]]] = {}
    therapy_fields = set()
    number_fields: set[NumberField] = set()
    for category, entries in by_category.items():
        # More specific codes first; codes of one length exclude each other, so their order is free.
        entries.sort(key=lambda e: -len(e[0]))
        out = []
        for code, rule in entries:
            code_test = {f"dx{len(code)}": code}
            for i, (condition, verdict) in enumerate(_compile_rule(rulebook, rule, code_test)):
                out.append((f"{rule.id}@{code}#{verdict.variant}{i}", condition, verdict))
            therapy_fields |= {("failed", t) for t in rule.when.failed_includes}
            therapy_fields |= {("concurrent", t) for t in rule.when.concurrent_includes | rule.when.concurrent_excludes}
            therapy_fields |= {("phases", p) for p in rule.when.phase or ()}
            number_fields |= {("obs", o.measure, o.within_days) for o in rule.when.observations}
            number_fields |= {("weeks", t, None) for t, _ in rule.when.failed_min_weeks}
        if len(out) > MAX_RULES_PER_CATEGORY:
            raise CompileError(
                f"category {category} compiles to {len(out)} rules; at most {MAX_RULES_PER_CATEGORY} fit one ruleset safely"
            )
        compiled_by_category[category] = out

    rulesets: dict[str, dict[str, dict]] = {}
    routes: dict[str, str] = {}
    verdicts: dict[str, Verdict] = {}
    current: dict[str, dict] | None = None
    name = ""
    for category in sorted(compiled_by_category):
        out = compiled_by_category[category]
        if current is None or len(current) + len(out) > MAX_RULES_PER_RULESET:
            name = f"ivig{len(rulesets):04d}"
            current = rulesets[name] = {}
        for rule_name, condition, verdict in out:
            current[rule_name] = {"all": [{"m": condition}], "pri": len(current)}
            verdicts[rule_name] = verdict
        routes[category] = name
    return CompiledRulebook(rulesets, routes, verdicts, frozenset(therapy_fields), frozenset(number_fields))
