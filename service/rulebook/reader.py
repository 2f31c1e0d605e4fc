"""Reading a rulebook and its reference data from YAML into the checked model (`service.rulebook.model`).

Every problem is reported with the file, the rule (or diagnosis, product, ...) and the field it
concerns, and all problems are collected before failing, so a committee member fixing an edit
sees the whole list at once. Only structure and references are checked here; the clinical
consistency checks (codes, overlaps, coverage) live in `service.rulebook.lint`.
"""

import datetime
import hashlib
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

try:  # libyaml's loader where it was built, else the pure-Python one
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

from service.rulebook.model import (
    BENEFIT_RULES,
    COURSES,
    DIRECTIONS,
    EFFECTS,
    MAX_AGE_YEARS,
    MAX_WEEKS,
    MAX_WINDOW_DAYS,
    OUTCOMES,
    PHASE_ACTIONS,
    POSITIVE_OUTCOMES,
    ROUTES,
    SEVERITIES,
    SEXES,
    STRENGTHS,
    THRESHOLDS,
    Authorisations,
    BenefitTest,
    Conditions,
    CourseLimit,
    Diagnosis,
    DosingProfile,
    Evidence,
    Hcpcs,
    Label,
    LabelDose,
    Measure,
    ObservationTest,
    OrderEntry,
    OrderObservation,
    Phase,
    PrescribingInformation,
    Price,
    Product,
    Provisional,
    Range,
    ReviewCriteria,
    RoundingRule,
    Rule,
    Rulebook,
    RulebookError,
    Source,
    Specialty,
    Supply,
    SupplyPhase,
    Synonym,
    Therapy,
    WeightRule,
)

REFERENCE_FILES = ("products.yaml", "therapies.yaml", "sources.yaml")
# Reference data a rulebook may go without (a rule that names a measure, specialty or phase needs it).
OPTIONAL_REFERENCE_FILES = ("measures.yaml", "specialties.yaml", "phases.yaml", "order_entry.yaml")
DATA_PREFIX = "data/"  # how a reference data file is named among a rulebook's texts
MAX_FILE_BYTES = 4 << 20  # a rulebook, data or rule-case file at most (the shipped rulebook: about 110 KB)
MAX_NESTING = 20  # mappings and lists inside one another at most (the shipped files: 7)
_EFFECT_NEEDED = ("controlled", "limited")  # the strengths whose findings report an effect
MAX_REVIEW_HOURS = 720  # a retrospective review within 30 days at most
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_WORD_ID = re.compile(r"^[a-z][a-z0-9_]*$")  # measures, specialties, phases: they name engine fields


def _word_id(value, where: str, check: "_Checker") -> str:
    if not isinstance(value, str) or not _WORD_ID.match(value) or "__" in value:
        check.fail(where, "an id is lower-case letters, digits and single underscores, starting with a letter")
    return str(value)


class _UniqueKeyLoader(_SafeLoader):
    """Safe YAML loading (libyaml's, where built) that refuses a key given twice.

    PyYAML silently keeps the last of two equal keys, which would let a pasted diagnosis
    replace another without a word.
    """


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key_node.value!r} appears twice", key_node.start_mark
                )
            seen.add(key_node.value)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: Path):
    """Parse one YAML file safely; a syntax error becomes a RulebookError naming the file.

    So that no file can make the reader, a lint message or a reload answer large, a file over
    MAX_FILE_BYTES is refused unread, and one nested deeper than MAX_NESTING or with any anchor or
    alias before it is built: an alias repeats a value wherever it is used, so a few hundred
    bytes of nested aliases expand to millions of values (the shipped files use none).
    """
    return parse_yaml(path, read_text(path))


def read_text(path: Path) -> str:
    """A rulebook, data or rule-case file's text: UTF-8, at most MAX_FILE_BYTES."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise RulebookError([f"{path}: file not found"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise RulebookError(
            [f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB, the most a rulebook or data file may be"]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RulebookError([f"{path}: not UTF-8 text (byte offset {error.start})"]) from None


def parse_yaml(path: Path, text: str):
    """The YAML `text` read from `path` (named in problems), refused as read_yaml says."""
    try:
        _check_shape(path, text)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise RulebookError([f"{path}: not valid YAML: {error}"]) from None


def _check_shape(path: Path, text: str):
    """Refuse anchors, aliases and nesting beyond MAX_NESTING, from the parser's events (which
    hold one level at a time), before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=_SafeLoader):
        mark = event.start_mark
        where = f"{path}: line {mark.line + 1}" if mark is not None else str(path)
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            raise RulebookError(
                [f"{where}: YAML anchors and aliases (&name, *name) are not allowed; write the value out"]
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                raise RulebookError([f"{where}: nested more than {MAX_NESTING} levels deep"])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Checker:
    """Collects problems while reading nested YAML, each prefixed by where it was found."""

    def __init__(self):
        self.problems: list[str] = []
        # Every file read, by its name relative to the rulebook's folder ("data/products.yaml"
        # for reference data), with its text: what the digest is computed over and what is kept.
        self.files: dict[str, str] = {}

    def fail(self, where: str, message: str):
        self.problems.append(f"{where}: {message}")

    def mapping(self, value, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, found {type(value).__name__}")
            return None
        for key in required:
            if key not in value:
                self.fail(where, f"missing required field '{key}'")
        for key in value:
            if key not in required and key not in optional:
                allowed = ", ".join(required + optional)
                self.fail(where, f"unknown field '{key}' (allowed: {allowed})")
        return value

    def text(self, value, where: str, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if isinstance(value, (datetime.date, int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "must be non-empty text")
            return ""
        return value.strip()

    def texts(self, value, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(where, "must be a list")
            return ()
        return tuple(self.text(item, f"{where}[{i}]") for i, item in enumerate(value))

    def number(self, value, where: str, low: float, high: float) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(where, f"must be a number, found {value!r}")
            return None
        if not low <= value <= high:
            self.fail(where, f"must be between {low:g} and {high:g}, found {value!r}")
            return None
        return float(value)

    def choices(self, value, where: str, allowed) -> frozenset[str] | None:
        items = self.texts(value, where)
        for item in items:
            if item not in allowed:
                self.fail(where, f"'{item}' is not one of: {', '.join(sorted(allowed))}")
        if value is not None and not items:
            self.fail(where, "must list at least one value")
        return frozenset(items) if items else None


# Header fields of an earlier rulebook format, and where they are now: a rulebook written for the
# earlier format is told where to move them, not only that they are unknown.
_MOVED_FROM_HEADER = {
    "authorisation_days": "authorisations.days, beside authorisations.granted_by (rulebook format of 2026.12.1)",
}


def _moved_out(header, where: str, check: _Checker):
    """The header without the fields that have moved, each reported with its new place."""
    if not isinstance(header, dict):
        return header
    for old, new in _MOVED_FROM_HEADER.items():
        if old in header:
            check.fail(f"{where}.{old}", f"has moved to {new}")
    return {key: value for key, value in header.items() if key not in _MOVED_FROM_HEADER}


def load_rulebook(path: str | Path, data_dir: Path | None = None) -> Rulebook:
    """Read a rulebook and its reference data; raise RulebookError listing every problem.

    Each file is read once: the rulebook keeps the texts it was built from (`texts`), and its
    digest is computed over them. `data_dir` reads the reference data from another folder than
    the rulebook's `reference_data` names (a stored version written out again)."""
    path = Path(path)
    check = _Checker()
    text = read_text(path)
    check.files[path.name] = text
    raw = parse_yaml(path, text)
    top = check.mapping(
        raw,
        str(path),
        ("rulebook", "diagnoses", "rules"),
        ("abbreviations", "qualifiers", "dosing", "authorisations", "supply"),
    )
    if top is None:
        raise RulebookError(check.problems)
    meta = (
        check.mapping(
            _moved_out(top.get("rulebook", {}), f"{path}: rulebook", check),
            f"{path}: rulebook",
            ("name", "version", "effective", "reference_data"),
        )
        or {}
    )
    if data_dir is None:
        data_dir = (path.parent / str(meta.get("reference_data", ""))).resolve()
    products, indications = _read_products(data_dir, check)
    therapies = _read_therapies(data_dir, check)
    sources = _read_sources(data_dir, check)
    measures = _read_measures(data_dir, check, sources)
    specialties = _read_specialties(data_dir, check)
    phases = _read_phases(data_dir, check, sources)
    order_entry = _read_order_entry(data_dir, check, measures)
    diagnoses = _read_diagnoses(top.get("diagnoses"), f"{path}: diagnoses", check)
    profiles, default_dosing = _read_dosing(top.get("dosing"), f"{path}: dosing", check)
    weight_rule, rounding_rule = _read_dose_rules(top.get("dosing"), f"{path}: dosing", check)
    supply = _read_supply(top["supply"], f"{path}: supply", check, sources) if "supply" in top else None
    references = References(
        diagnoses, products, indications, therapies, sources, profiles, measures, specialties, phases, supply
    )
    rules = _read_rules(top.get("rules"), path, check, references)
    abbreviations = _read_abbreviations(top.get("abbreviations"), f"{path}: abbreviations", check)
    qualifiers = _read_qualifiers(top.get("qualifiers"), f"{path}: qualifiers", check)
    authorisations = _read_authorisations(top.get("authorisations"), f"{path}: authorisations", check)
    if authorisations is not None and authorisations.provisional is None:
        for rule in rules:
            if rule.urgent:
                check.fail(
                    f"{path}: rule {rule.id}.urgent",
                    "an urgent rule needs authorisations.provisional (days, review_within_hours): how long a "
                    "provisional authorisation lasts and by when its review is due",
                )
    for rule in rules:
        if rule.urgent and rule.outcome == "not_supported":
            check.fail(f"{path}: rule {rule.id}.urgent", "a not_supported rule never needs review, so is never urgent")
    name = check.text(meta.get("name"), f"{path}: rulebook.name")
    version = check.text(meta.get("version"), f"{path}: rulebook.version")
    effective = _effective(meta.get("effective"), f"{path}: rulebook.effective", check)
    if check.problems or authorisations is None or weight_rule is None or rounding_rule is None:
        raise RulebookError(check.problems)  # a block that is missing is one of the problems
    cited = tuple(sorted({e.source for r in rules for e in r.evidence}))
    return Rulebook(
        name=name,
        version=version,
        effective=effective,
        path=path,
        digest=digest_texts(check.files),
        texts=dict(check.files),
        diagnoses=diagnoses,
        rules=rules,
        products=products,
        indications=indications,
        therapies=therapies,
        sources=sources,
        authorisations=authorisations,
        weight_rule=weight_rule,
        rounding_rule=rounding_rule,
        cited_sources=cited,
        abbreviations=abbreviations,
        qualifiers=qualifiers,
        dosing_profiles=profiles,
        default_dosing=default_dosing,
        measures=measures,
        specialties=specialties,
        phases=phases,
        supply=supply,
        order_entry=order_entry,
    )


_ORDER_FIELDS = ("patient.weight_kg", "patient.height_cm", "patient.pregnant", "measure")


def _read_order_entry(data_dir: Path, check: _Checker, measures) -> OrderEntry | None:
    """data/order_entry.yaml: how an EHR's order and observations are read (CDS Hooks)."""
    if not (data_dir / "order_entry.yaml").exists():
        return None
    where, top = _read_reference(data_dir, "order_entry.yaml", "generic_names", check)
    names = check.texts(top.get("generic_names"), f"{where}: generic_names")
    observations = []
    for i, raw in enumerate(top.get("observations") or []):
        at = f"{where}: observations[{i}]"
        item = check.mapping(raw, at, ("loinc", "field"), ("measure", "units", "pregnant", "not_pregnant")) or {}
        target = check.text(item.get("field"), f"{at}.field")
        if target and target not in _ORDER_FIELDS:
            check.fail(f"{at}.field", f"must be one of {', '.join(_ORDER_FIELDS)}")
        measure = item.get("measure")
        if target == "measure" and measure not in measures:
            check.fail(f"{at}.measure", f"{measure!r} is not a measure in measures.yaml")
        units = item.get("units") or {}
        if not isinstance(units, dict):
            check.fail(f"{at}.units", "must map each UCUM code as sent to the unit it means here")
            units = {}
        observations.append(
            OrderObservation(
                check.text(item.get("loinc"), f"{at}.loinc"),
                target,
                measure if target == "measure" else None,
                {str(k): str(v) for k, v in units.items()},
                frozenset(check.texts(item.get("pregnant"), f"{at}.pregnant") if "pregnant" in item else ()),
                frozenset(
                    check.texts(item.get("not_pregnant"), f"{at}.not_pregnant") if "not_pregnant" in item else ()
                ),
            )
        )
    reasons = check.mapping(top.get("override_reasons"), f"{where}: override_reasons", ("system", "codes")) or {}
    codes = []
    for code, display in (reasons.get("codes") or {}).items():
        codes.append((str(code), check.text(display, f"{where}: override_reasons.codes.{code}")))
    if not codes:
        check.fail(f"{where}: override_reasons.codes", "list at least one reason: code: display")
    return OrderEntry(
        names, tuple(observations), check.text(reasons.get("system"), f"{where}: override_reasons.system"), tuple(codes)
    )


def _read_supply(raw, where: str, check: _Checker, sources) -> Supply | None:
    """`supply: {source, default_phase, tiers: {tier: meaning}, phases: {phase: {description,
    tiers: {tier: as_usual|needs_review|not_supported}}}}`: the committee's priority tiers and what
    each supply phase does with each tier's decisions. A phase only ever makes a decision more
    cautious, names every tier, and the default phase decides every tier as usual."""
    item = check.mapping(raw, where, ("source", "default_phase", "tiers", "phases"))
    if item is None:
        return None
    source = check.text(item.get("source"), f"{where}.source")
    if source and source not in sources:
        check.fail(f"{where}.source", f"'{source}' is not defined in sources.yaml")
    tiers: dict[str, str] = {}
    raw_tiers = item.get("tiers")
    if not isinstance(raw_tiers, dict) or not raw_tiers:
        check.fail(f"{where}.tiers", "must map each priority tier to what it means")
        raw_tiers = {}
    for tier, meaning in raw_tiers.items():
        tiers[_word_id(tier, f"{where}.tiers.{tier}", check)] = check.text(meaning, f"{where}.tiers.{tier}")
    phases: dict[str, SupplyPhase] = {}
    raw_phases = item.get("phases")
    if not isinstance(raw_phases, dict) or not raw_phases:
        check.fail(f"{where}.phases", "must map each supply phase to what it does with each tier")
        raw_phases = {}
    for phase_id, raw_phase in raw_phases.items():
        at = f"{where}.phases.{phase_id}"
        phase_id = _word_id(phase_id, at, check)
        phase = check.mapping(raw_phase, at, ("description", "tiers")) or {}
        given = phase.get("tiers")
        if not isinstance(given, dict):
            check.fail(f"{at}.tiers", "must map every tier to as_usual, needs_review or not_supported")
            given = {}
        actions = {}
        for tier, action in given.items():
            if tier not in tiers:
                check.fail(f"{at}.tiers.{tier}", f"'{tier}' is not a tier of {where}.tiers ({', '.join(tiers)})")
            elif action in POSITIVE_OUTCOMES:
                check.fail(
                    f"{at}.tiers.{tier}",
                    f"a phase never makes a decision {action}: phases only make decisions more cautious "
                    f"({', '.join(PHASE_ACTIONS)})",
                )
            elif action not in PHASE_ACTIONS:
                check.fail(f"{at}.tiers.{tier}", f"{action!r} is not one of: {', '.join(PHASE_ACTIONS)}")
            else:
                actions[str(tier)] = str(action)
        for tier in tiers:
            if tier not in given:
                check.fail(f"{at}.tiers", f"says nothing of tier '{tier}': say what the phase does with every tier")
        phases[phase_id] = SupplyPhase(phase_id, check.text(phase.get("description"), f"{at}.description"), actions)
    default = item.get("default_phase")
    if default not in phases:
        check.fail(f"{where}.default_phase", f"{default!r} is not one of the phases ({', '.join(phases)})")
    elif any(action != "as_usual" for action in phases[default].actions.values()):
        check.fail(
            f"{where}.default_phase",
            f"phase '{default}' is where an instance starts, so it must decide every tier as_usual",
        )
    return Supply(source, tiers, phases, str(default))


def _days(value, where: str, check: _Checker) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3650:
        check.fail(where, f"must be a whole number of days from 1 to 3650, found {value!r}")
        return None
    return value


def _read_authorisations(raw, where: str, check: _Checker) -> Authorisations | None:
    """The outcomes that grant an authorisation, and for how long. Only a positive outcome may
    grant one: a needs_review or not_supported decision never authorises a dose."""
    if raw is None:
        check.fail(
            where,
            "missing: give granted_by (the outcomes that grant an authorisation) and days "
            "(see README, The rulebook format)",
        )
        return None
    raw = check.mapping(raw, where, ("granted_by", "days"), ("continuing_days", "provisional")) or {}
    granted_by = check.choices(raw.get("granted_by"), f"{where}.granted_by", OUTCOMES) or frozenset()
    if "granted_by" in raw and raw["granted_by"] is None:
        check.fail(f"{where}.granted_by", "must list at least one value")
    for outcome in sorted(granted_by - set(POSITIVE_OUTCOMES)):
        check.fail(
            f"{where}.granted_by",
            f"'{outcome}' can never grant an authorisation: only {' and '.join(POSITIVE_OUTCOMES)} can",
        )
    continuing = raw.get("continuing_days")
    provisional = None
    if "provisional" in raw:
        item = check.mapping(raw["provisional"], f"{where}.provisional", ("days", "review_within_hours")) or {}
        days = _days(item["days"], f"{where}.provisional.days", check) if "days" in item else None
        hours = item.get("review_within_hours")
        if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_REVIEW_HOURS:
            check.fail(
                f"{where}.provisional.review_within_hours",
                f"must be a whole number of hours from 1 to {MAX_REVIEW_HOURS}, found {hours!r}",
            )
            hours = None
        provisional = Provisional(days, hours) if days and hours else None
    return Authorisations(
        granted_by,
        _days(raw.get("days"), f"{where}.days", check) or 0,
        None if continuing is None else _days(continuing, f"{where}.continuing_days", check),
        provisional,
    )


def _range(raw, where: str, check: _Checker, low: float, high: float) -> Range:
    raw = check.mapping(raw, where, (), ("min", "max")) or {}
    if not raw:
        check.fail(where, "give min, max or both")
    bounds = {k: check.number(raw[k], f"{where}.{k}", low, high) for k in ("min", "max") if k in raw}
    low_bound, high_bound = bounds.get("min"), bounds.get("max")
    if low_bound is not None and high_bound is not None and low_bound > high_bound:
        check.fail(where, "min is above max")
    return Range(low_bound, high_bound)


def _read_dosing(raw, where: str, check: _Checker) -> tuple[dict[str, DosingProfile], str | None]:
    """Dosing profiles (g/kg per course, days between courses) and the default for uncovered cases."""
    if raw is None:
        check.fail(
            where,
            "missing: give dosing profiles, a default, the weight rule and the rounding rule (see README, Dosing)",
        )
        return {}, None
    raw = check.mapping(raw, where, ("default", "profiles", "weight", "rounding")) or {}
    profiles = {}
    for profile_id, item in (raw.get("profiles") or {}).items():
        at = f"{where}.profiles.{profile_id}"
        item = check.mapping(item, at, ("g_per_kg",), ("interval_days", "courses", "monthly", "note")) or {}
        courses = item.get("courses")
        if courses is not None and (
            isinstance(courses, bool) or not isinstance(courses, int) or not 1 <= courses <= 10
        ):
            check.fail(f"{at}.courses", f"must be a whole number of courses from 1 to 10, found {courses!r}")
        if ("interval_days" in item) == (courses is not None):
            check.fail(at, "give interval_days for repeated courses, or courses for a one-off (acute) course, not both")
        profiles[str(profile_id)] = DosingProfile(
            str(profile_id),
            _range(item.get("g_per_kg"), f"{at}.g_per_kg", check, 0.01, 5),
            _range(item["interval_days"], f"{at}.interval_days", check, 1, 365) if "interval_days" in item else Range(),
            check.text(item.get("note"), f"{at}.note", required=False),
            courses,
            _flag(item.get("monthly", False), f"{at}.monthly", check),
        )
    default = raw.get("default")
    if default is not None and default not in profiles:
        check.fail(f"{where}.default", f"'{default}' is not one of the profiles")
    return profiles, default


def _read_dose_rules(raw, where: str, check: _Checker) -> tuple[WeightRule | None, RoundingRule | None]:
    """The dosing block's weight and rounding rules; a missing block or rule is reported by _read_dosing."""
    raw = raw if isinstance(raw, dict) else {}
    weight = _read_weight_rule(raw["weight"], f"{where}.weight", check) if "weight" in raw else None
    rounding = _read_rounding_rule(raw["rounding"], f"{where}.rounding", check) if "rounding" in raw else None
    return weight, rounding


_WEIGHT_FIELDS = (
    "source",
    "ideal_kg_at_five_feet",
    "ideal_kg_per_inch_over_five_feet",
    "other_sexes_use",
    "adjustment_factor",
    "actual_weight_for",
)


def _read_weight_rule(raw, where: str, check: _Checker) -> WeightRule:
    """The dose-determining weight (README, Dosing). Every number is required: none has a default in Python."""
    raw = check.mapping(raw, where, _WEIGHT_FIELDS) or {}
    bases = _read_ideal_bases(raw.get("ideal_kg_at_five_feet"), f"{where}.ideal_kg_at_five_feet", check)
    other_sexes_use = check.text(raw.get("other_sexes_use"), f"{where}.other_sexes_use")
    if other_sexes_use and other_sexes_use not in bases:
        check.fail(f"{where}.other_sexes_use", f"'{other_sexes_use}' has no base under ideal_kg_at_five_feet")
    actual = (
        check.mapping(
            raw.get("actual_weight_for"),
            f"{where}.actual_weight_for",
            ("under_age_years", "under_height_cm", "pregnant"),
        )
        or {}
    )
    return WeightRule(
        source=check.text(raw.get("source"), f"{where}.source"),
        ideal_kg_at_five_feet=bases,
        ideal_kg_per_inch_over_five_feet=check.number(
            raw.get("ideal_kg_per_inch_over_five_feet"), f"{where}.ideal_kg_per_inch_over_five_feet", 0, 10
        )
        or 0.0,
        other_sexes_use=other_sexes_use,
        adjustment_factor=check.number(raw.get("adjustment_factor"), f"{where}.adjustment_factor", 0, 1) or 0.0,
        actual_weight_under_age_years=check.number(
            actual.get("under_age_years"), f"{where}.actual_weight_for.under_age_years", 0, MAX_AGE_YEARS
        )
        or 0.0,
        actual_weight_under_height_cm=check.number(
            actual.get("under_height_cm"), f"{where}.actual_weight_for.under_height_cm", 0, 300
        )
        or 0.0,
        actual_weight_when_pregnant=_flag(actual.get("pregnant"), f"{where}.actual_weight_for.pregnant", check),
    )


def _read_ideal_bases(raw, where: str, check: _Checker) -> dict[str, float]:
    """The ideal weight at five feet, by sex."""
    bases = check.mapping(raw, where, (), SEXES)
    if bases == {}:
        check.fail(where, "give the base of at least one sex")
    return {str(sex): check.number(kg, f"{where}.{sex}", 1, 200) or 0.0 for sex, kg in (bases or {}).items()}


def _read_rounding_rule(raw, where: str, check: _Checker) -> RoundingRule:
    raw = check.mapping(raw, where, ("source", "tolerance")) or {}
    return RoundingRule(
        check.text(raw.get("source"), f"{where}.source"),
        check.number(raw.get("tolerance"), f"{where}.tolerance", 0, 0.5) or 0.0,
    )


def _read_abbreviations(raw, where: str, check: _Checker) -> dict[str, str]:
    """Abbreviation -> what it stands for, expanded inside free-text diagnoses (GBS, CIDP, ...)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        check.fail(where, "must be a mapping of abbreviation to its expansion")
        return {}
    found = {}
    for short, expansion in raw.items():
        short = check.text(short, f"{where}: key")
        if short and len(short.split()) != 1:
            check.fail(f"{where}.{short}", "an abbreviation is one word")
        found[short] = check.text(expansion, f"{where}.{short}")
    return found


def _read_qualifiers(raw, where: str, check: _Checker) -> tuple[str, ...]:
    """Words that change which condition a text names; each must be one word, as texts are matched word by word."""
    qualifiers = check.texts(raw, where)
    for word in qualifiers:
        if len(word.replace("-", " ").split()) != 1:
            check.fail(where, f"'{word}' is not one word; list each word on its own")
    return qualifiers


def _effective(raw, where: str, check: _Checker) -> str:
    """The day the version takes effect, YYYY-MM-DD: a proposal is served from it (midnight UTC)."""
    text = check.text(raw, where)
    if text:
        try:
            valid = bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text)) and bool(datetime.date.fromisoformat(text))
        except ValueError:
            valid = False
        if not valid:
            check.fail(where, f"must be a date, YYYY-MM-DD, found {text[:40]!r}")
    return text


def digest_texts(texts: dict[str, str]) -> str:
    """SHA-256 over the exact bytes of the rulebook and its reference data, in a fixed order:
    the rulebook, then REFERENCE_FILES and OPTIONAL_REFERENCE_FILES as named. `texts` is what
    load_rulebook keeps: the rulebook by its file name, each data file as "data/<name>"."""
    rulebook = [name for name in texts if not name.startswith(DATA_PREFIX)]
    data = [DATA_PREFIX + name for name in REFERENCE_FILES + OPTIONAL_REFERENCE_FILES if DATA_PREFIX + name in texts]
    if len(rulebook) != 1 or len(rulebook) + len(data) != len(texts):
        raise ValueError(f"not a rulebook's files: {sorted(texts)}")
    digest = hashlib.sha256()
    for name in rulebook + data:
        content = texts[name].encode("utf-8")
        digest.update(f"{Path(name).name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def load_rulebook_texts(texts: dict[str, str], digest: str | None = None) -> Rulebook:
    """Read a rulebook from its texts (as load_rulebook keeps them), written out to a temporary
    folder and read with load_rulebook; with `digest`, refuse texts whose digest is not it."""
    names = [name for name in texts if not name.startswith(DATA_PREFIX)]
    if len(names) != 1 or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", names[0]):
        raise RulebookError([f"not a rulebook's files: {sorted(texts)}"])
    try:
        found = digest_texts(texts)
    except ValueError as error:
        raise RulebookError([str(error)]) from None
    if digest is not None and found != digest:
        raise RulebookError([f"the stored texts' digest is {found}, not the {digest} they were stored under"])
    with tempfile.TemporaryDirectory(prefix="rulebook-") as folder:
        root = Path(folder)
        (root / "data").mkdir()
        for name, text in texts.items():
            (root / name).write_bytes(text.encode("utf-8"))
        rulebook = load_rulebook(root / names[0], data_dir=root / "data")
    return replace(rulebook, path=Path(names[0]))


# The top-level keys a reference data file may have besides its main one.
_OTHER_KEYS = {
    "products.yaml": ("indications", "unverified_products"),
    "order_entry.yaml": ("observations", "override_reasons"),
}


def _read_reference(data_dir: Path, name: str, key: str, check: _Checker):
    path = data_dir / name
    try:
        text = read_text(path)
        check.files[DATA_PREFIX + name] = text
        raw = parse_yaml(path, text)
    except RulebookError as error:
        check.problems.extend(error.problems)
        return str(path), {}
    top = check.mapping(raw, str(path), (key,), _OTHER_KEYS.get(name, ())) or {}
    return str(path), top


def _read_products(data_dir: Path, check: _Checker) -> tuple[dict[str, Product], dict[str, str]]:
    """Formulary products: verified ones with their labels, and ones whose label we could not confirm.

    A verified product must name its prescribing information and that document's revision date;
    an unverified one has no labels, so no request for it is ever approved.
    """
    where, top = _read_reference(data_dir, "products.yaml", "products", check)
    indications = {}
    for ind_id, name in (top.get("indications") or {}).items():
        indications[str(ind_id)] = check.text(name, f"{where}: indications.{ind_id}")
    products = {}
    for verified, key in ((True, "products"), (False, "unverified_products")):
        for i, raw in enumerate(top.get(key) or []):
            name = raw.get("name") if isinstance(raw, dict) else None
            at = f"{where}: product {name}" if name else f"{where}: {key}[{i}]"
            product = _read_product(raw, at, check, indications, verified)
            if product.name in products:
                check.fail(at, "product listed twice")
            products[product.name] = product
    return products, indications


_PRODUCT_FIELDS = ("manufacturer", "concentration", "routes", "vial_sizes_g", "note", "hcpcs", "price_per_g", "rxnorm")


def _read_product(raw, at: str, check: _Checker, indications, verified: bool) -> Product:
    if verified:
        item = (
            check.mapping(
                raw,
                at,
                ("name", "manufacturer", "routes", "vial_sizes_g", "prescribing_information", "labels"),
                ("concentration", "note", "hcpcs", "price_per_g", "rxnorm"),
            )
            or {}
        )
    else:
        item = check.mapping(raw, at, ("name", "note"), _PRODUCT_FIELDS) or {}
    routes = check.choices(item.get("routes"), f"{at}.routes", ROUTES) or frozenset({"intravenous"})
    vials = tuple(
        check.number(v, f"{at}.vial_sizes_g[{j}]", 0.1, 200) or 0.0
        for j, v in enumerate(item.get("vial_sizes_g") or [])
    )
    if verified and not vials:
        check.fail(f"{at}.vial_sizes_g", "list the vial sizes in grams")
    info = (
        _read_prescribing_information(item.get("prescribing_information"), f"{at}.prescribing_information", check)
        if verified
        else None
    )
    labels = tuple(
        _read_label(raw_label, f"{at}: labels[{j}]", check, indications, routes)
        for j, raw_label in enumerate(item.get("labels") or [])
    )
    if verified and not labels:
        check.fail(f"{at}.labels", "a verified product lists at least one labelled indication")
    return Product(
        name=check.text(item.get("name"), f"{at}.name"),
        labels=labels,
        manufacturer=check.text(item.get("manufacturer"), f"{at}.manufacturer", required=verified),
        concentration=check.text(item.get("concentration"), f"{at}.concentration", required=False),
        routes=routes,
        vial_sizes_g=vials,
        prescribing_information=info,
        verified=verified,
        note=check.text(item.get("note"), f"{at}.note", required=not verified),
        hcpcs=_read_hcpcs(item.get("hcpcs"), f"{at}.hcpcs", check),
        price_per_g=_read_price(item.get("price_per_g"), f"{at}.price_per_g", check),
        rxnorm=_rxnorm_codes(item.get("rxnorm"), f"{at}.rxnorm", check),
    )


def _read_hcpcs(raw, where: str, check: _Checker) -> Hcpcs | None:
    """The product's HCPCS Level II code (a letter and four digits, e.g. J1459) and where it was read."""
    if raw is None:
        return None
    item = check.mapping(raw, where, ("code", "source")) or {}
    code = check.text(item.get("code"), f"{where}.code")
    if code and not re.fullmatch(r"[A-Z][0-9]{4}", code):
        check.fail(f"{where}.code", f"must be an HCPCS Level II code, a letter and four digits (J1459), found {code!r}")
    return Hcpcs(code, check.text(item.get("source"), f"{where}.source"))


def _read_price(raw, where: str, check: _Checker) -> Price | None:
    """The committee's local price a gram, or None (null: no price; cost is then reported as unknown)."""
    if raw is None:
        return None
    item = check.mapping(raw, where, ("amount", "currency", "source", "as_of")) or {}
    amount = check.number(item.get("amount"), f"{where}.amount", 0.01, 100000)
    currency = check.text(item.get("currency"), f"{where}.currency")
    if currency and not re.fullmatch(r"[A-Z]{3}", currency):
        check.fail(f"{where}.currency", f"must be an ISO 4217 currency code (USD, EUR), found {currency!r}")
    as_of = check.text(item.get("as_of"), f"{where}.as_of")
    if as_of and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", as_of):
        check.fail(f"{where}.as_of", f"must be the date the price was set, as YYYY-MM-DD, found {as_of!r}")
    return Price(amount or 0.0, currency, check.text(item.get("source"), f"{where}.source"), as_of)


def _rxnorm_codes(raw, where: str, check: _Checker) -> tuple[str, ...]:
    """A product's RxNorm codes (RXCUIs: digits), as order entry recognises it."""
    codes = check.texts(raw, where) if raw is not None else ()
    for code in codes:
        if not re.fullmatch(r"[0-9]{1,10}", code):
            check.fail(where, f"an RxNorm code (RXCUI) is digits, found {code!r}")
    return codes


def _read_prescribing_information(raw, where: str, check: _Checker) -> PrescribingInformation:
    """The document a verified product's label facts were read from, and its revision date."""
    pi = check.mapping(raw, where, ("source", "revised"), ("checked", "note")) or {}
    revised = check.text(pi.get("revised"), f"{where}.revised")
    if revised and not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", revised):
        check.fail(f"{where}.revised", f"must be the label's revision date as YYYY-MM, found {revised!r}")
    return PrescribingInformation(
        check.text(pi.get("source"), f"{where}.source"),
        revised,
        check.text(pi.get("checked"), f"{where}.checked", required=False),
        check.text(pi.get("note"), f"{where}.note", required=False),
    )


def _read_label(raw, at: str, check: _Checker, indications, product_routes) -> Label:
    lab = check.mapping(raw, at, ("indication",), ("age_years", "routes", "dose", "note")) or {}
    indication = check.text(lab.get("indication"), f"{at}.indication")
    if indication and indication not in indications:
        check.fail(f"{at}.indication", f"'{indication}' is not defined under indications")
    age_at_least, age_under = _age_limits(lab.get("age_years"), f"{at}.age_years", check)
    routes = check.choices(lab.get("routes"), f"{at}.routes", ROUTES) or frozenset({"intravenous"})
    if not routes <= product_routes:
        check.fail(f"{at}.routes", "a label cannot name a route the product is not given by")
    dose = None
    if lab.get("dose") is not None:
        raw_dose = check.mapping(lab["dose"], f"{at}.dose", ("g_per_kg",), ("interval_days", "monthly", "note")) or {}
        dose = LabelDose(
            _range(raw_dose.get("g_per_kg"), f"{at}.dose.g_per_kg", check, 0.01, 5),
            _range(raw_dose["interval_days"], f"{at}.dose.interval_days", check, 1, 365)
            if "interval_days" in raw_dose
            else None,
            check.text(raw_dose.get("note"), f"{at}.dose.note", required=False),
            _flag(raw_dose.get("monthly", False), f"{at}.dose.monthly", check),
        )
    return Label(
        indication, age_at_least, age_under, routes, dose, check.text(lab.get("note"), f"{at}.note", required=False)
    )


def _flag(value, where: str, check: _Checker) -> bool:
    if not isinstance(value, bool):
        check.fail(where, f"must be true or false, found {value!r}")
        return False
    return value


def _age_limits(raw, where: str, check: _Checker) -> tuple[float | None, float | None]:
    """`{at_least: N, under: M}` as rules and labels write an age range; both optional."""
    if raw is None:
        return None, None
    age = check.mapping(raw, where, (), ("under", "at_least")) or {}
    if not age:
        check.fail(where, "give under, at_least or both")
    under = check.number(age["under"], f"{where}.under", 0, MAX_AGE_YEARS) if "under" in age else None
    at_least = check.number(age["at_least"], f"{where}.at_least", 0, MAX_AGE_YEARS) if "at_least" in age else None
    if under is not None and at_least is not None and at_least >= under:
        check.fail(where, "at_least must be below under, or no age can match")
    return at_least, under


def _read_therapies(data_dir: Path, check: _Checker) -> dict[str, Therapy]:
    where, top = _read_reference(data_dir, "therapies.yaml", "therapies", check)
    therapies = {}
    for therapy_id, raw in (top.get("therapies") or {}).items():
        at = f"{where}: therapy {therapy_id}"
        item = check.mapping(raw, at, ("name",), ("synonyms",)) or {}
        therapies[str(therapy_id)] = Therapy(
            str(therapy_id),
            check.text(item.get("name"), f"{at}.name"),
            check.texts(item.get("synonyms"), f"{at}.synonyms"),
        )
    return therapies


def _read_optional(data_dir: Path, name: str, key: str, check: _Checker) -> tuple[str, dict]:
    if not (data_dir / name).exists():
        return str(data_dir / name), {}
    where, top = _read_reference(data_dir, name, key, check)
    if not isinstance(top.get(key) or {}, dict):
        check.fail(f"{where}: {key}", "must be a mapping")
        return where, {}
    return where, top


def _read_measures(data_dir: Path, check: _Checker, sources) -> dict[str, Measure]:
    """Each measure: its canonical unit, the units accepted with their factor to it, a plausible range."""
    where, top = _read_optional(data_dir, "measures.yaml", "measures", check)
    measures = {}
    for measure_id, raw in (top.get("measures") or {}).items():
        at = f"{where}: measure {measure_id}"
        _word_id(measure_id, at, check)
        item = check.mapping(raw, at, ("name", "measures", "unit", "units", "range", "source"), ("better",)) or {}
        better = item.get("better")
        if "better" in item and better not in DIRECTIONS:
            check.fail(f"{at}.better", f"must be one of {', '.join(DIRECTIONS)} (which way is improvement)")
        unit = check.text(item.get("unit"), f"{at}.unit")
        units: dict[str, float] = {}
        raw_units = item.get("units")
        if not isinstance(raw_units, dict) or not raw_units:
            check.fail(f"{at}.units", "must map each accepted unit to its value in the canonical unit")
        else:
            for name, factor in raw_units.items():
                value = check.number(factor, f"{at}.units.{name}", 1e-9, 1e9)
                if value is not None:
                    units[str(name)] = value
        if unit and units.get(unit) != 1:
            check.fail(f"{at}.units", f"must list the canonical unit {unit} with factor 1")
        limits = check.mapping(item.get("range"), f"{at}.range", ("min", "max")) or {}
        low = check.number(limits.get("min"), f"{at}.range.min", -1e9, 1e9) if "min" in limits else None
        high = check.number(limits.get("max"), f"{at}.range.max", -1e9, 1e9) if "max" in limits else None
        if low is not None and high is not None and low >= high:
            check.fail(f"{at}.range", "min must be below max")
        source = check.text(item.get("source"), f"{at}.source")
        if source and source not in sources:
            check.fail(f"{at}.source", f"'{source}' is not defined in sources.yaml")
        measures[str(measure_id)] = Measure(
            str(measure_id),
            check.text(item.get("name"), f"{at}.name"),
            check.text(item.get("measures"), f"{at}.measures"),
            unit,
            units,
            low if low is not None else 0.0,
            high if high is not None else 0.0,
            source,
            better if better in DIRECTIONS else None,
        )
    return measures


def _read_specialties(data_dir: Path, check: _Checker) -> dict[str, Specialty]:
    where, top = _read_optional(data_dir, "specialties.yaml", "specialties", check)
    specialties = {}
    for specialty_id, raw in (top.get("specialties") or {}).items():
        _word_id(specialty_id, f"{where}: specialty {specialty_id}", check)
        item = check.mapping(raw, f"{where}: specialty {specialty_id}", ("name",)) or {}
        specialties[str(specialty_id)] = Specialty(
            str(specialty_id), check.text(item.get("name"), f"{where}: specialty {specialty_id}.name")
        )
    return specialties


def _read_phases(data_dir: Path, check: _Checker, sources) -> dict[str, Phase]:
    """Phase schemes (one per disease), each phase a range of whole months since diagnosis.

    A phase id names one phase of one scheme: the same id in two schemes is refused, so a rule's
    `phase: [chronic]` and a request's `diagnosis.phase` cannot mean two things."""
    where, top = _read_optional(data_dir, "phases.yaml", "schemes", check)
    phases: dict[str, Phase] = {}
    for scheme_id, raw in (top.get("schemes") or {}).items():
        at = f"{where}: scheme {scheme_id}"
        item = check.mapping(raw, at, ("name", "source", "measured_from", "phases"), ("note",)) or {}
        source = check.text(item.get("source"), f"{at}.source")
        if source and source not in sources:
            check.fail(f"{at}.source", f"'{source}' is not defined in sources.yaml")
        if item.get("measured_from", "diagnosis") != "diagnosis":
            check.fail(f"{at}.measured_from", "only 'diagnosis' is supported")
        raw_phases = item.get("phases")
        if not isinstance(raw_phases, dict) or not raw_phases:
            check.fail(f"{at}.phases", "must map each phase to its months since diagnosis")
            continue
        for phase_id, raw_phase in raw_phases.items():
            pat = f"{at}.phases.{phase_id}"
            _word_id(phase_id, pat, check)
            phase = check.mapping(raw_phase, pat, ("name", "months")) or {}
            months = check.mapping(phase.get("months"), f"{pat}.months", (), ("at_least", "under")) or {}
            at_least = check.number(months.get("at_least", 0), f"{pat}.months.at_least", 0, 1200)
            under = check.number(months["under"], f"{pat}.months.under", 1, 1200) if "under" in months else None
            if at_least is not None and under is not None and at_least >= under:
                check.fail(f"{pat}.months", "at_least must be below under")
            if str(phase_id) in phases:
                check.fail(pat, f"phase '{phase_id}' is also a phase of scheme {phases[str(phase_id)].scheme}")
            phases[str(phase_id)] = Phase(
                str(phase_id),
                check.text(phase.get("name"), f"{pat}.name"),
                str(scheme_id),
                int(at_least or 0),
                None if under is None else int(under),
            )
    return phases


def _read_sources(data_dir: Path, check: _Checker) -> dict[str, Source]:
    where, top = _read_reference(data_dir, "sources.yaml", "sources", check)
    sources = {}
    for source_id, raw in (top.get("sources") or {}).items():
        at = f"{where}: source {source_id}"
        item = check.mapping(raw, at, ("title", "publisher", "date"), ("note",)) or {}
        sources[str(source_id)] = Source(
            str(source_id),
            check.text(item.get("title"), f"{at}.title"),
            check.text(item.get("publisher"), f"{at}.publisher"),
            check.text(item.get("date"), f"{at}.date"),
            check.text(item.get("note"), f"{at}.note", required=False),
        )
    return sources


def _read_diagnoses(raw, where: str, check: _Checker) -> dict[str, Diagnosis]:
    if not isinstance(raw, dict):
        check.fail(where, "must be a mapping of diagnosis id to diagnosis")
        return {}
    diagnoses = {}
    for dx_id, item in raw.items():
        at = f"{where}.{dx_id}"
        item = check.mapping(item, at, ("name", "codes"), ("synonyms", "coding_note")) or {}
        codes = check.texts(item.get("codes"), f"{at}.codes")
        if not codes:
            check.fail(f"{at}.codes", "must list at least one ICD-10-CM code")
        diagnoses[str(dx_id)] = Diagnosis(
            str(dx_id),
            check.text(item.get("name"), f"{at}.name"),
            codes,
            _read_synonyms(item.get("synonyms"), f"{at}.synonyms", check),
            check.text(item.get("coding_note"), f"{at}.coding_note", required=False),
        )
    return diagnoses


def _read_synonyms(raw, where: str, check: _Checker) -> tuple[Synonym, ...]:
    """Each synonym is a text, or {term, code} where it means one code of the diagnosis."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        check.fail(where, "must be a list")
        return ()
    synonyms = []
    for i, item in enumerate(raw):
        if isinstance(item, dict):
            item = check.mapping(item, f"{where}[{i}]", ("term", "code")) or {}
            synonyms.append(
                Synonym(
                    check.text(item.get("term"), f"{where}[{i}].term"),
                    check.text(item.get("code"), f"{where}[{i}].code"),
                )
            )
        else:
            synonyms.append(Synonym(check.text(item, f"{where}[{i}]")))
    return tuple(synonyms)


_RULE_REQUIRED = ("id", "title", "diagnosis", "outcome", "rationale", "evidence")
_RULE_OPTIONAL = (
    "when",
    "priority",
    "labelled_indication",
    "conflict",
    "dosing",
    "authorisation",
    "review_criteria",
    "courses",
    "urgent",
    "tier",
    "tier_basis",
)
# Rule fields of an earlier rulebook format, and where they are now.
_MOVED_FROM_RULE = {"authorisation_days": "authorisation.initial_days (rulebook format of 2026.12.2)"}


@dataclass(frozen=True)
class References:
    """What a rule may refer to by id, read before the rules so each reference can be checked."""

    diagnoses: dict[str, Diagnosis]
    products: dict[str, Product]
    indications: dict[str, str]
    therapies: dict[str, Therapy]
    sources: dict[str, Source]
    dosing_profiles: dict[str, DosingProfile]
    measures: dict[str, Measure] = field(default_factory=dict)
    specialties: dict[str, Specialty] = field(default_factory=dict)
    phases: dict[str, Phase] = field(default_factory=dict)
    supply: Supply | None = None


def _read_rules(raw, path: Path, check: _Checker, references: References) -> tuple[Rule, ...]:
    if not isinstance(raw, list) or not raw:
        check.fail(f"{path}: rules", "must be a non-empty list of rules")
        return ()
    rules = []
    seen_ids: set[str] = set()
    for position, item in enumerate(raw):
        rule_id = item.get("id") if isinstance(item, dict) else None
        at = f"{path}: rule {rule_id}" if rule_id else f"{path}: rules[{position}]"
        rules.append(_read_rule(item, at, position, check, references, seen_ids))
    return tuple(rules)


def _read_rule(raw, at: str, position: int, check: _Checker, references: References, seen_ids: set[str]) -> Rule:
    if isinstance(raw, dict):
        for old, new in _MOVED_FROM_RULE.items():
            if old in raw:
                check.fail(f"{at}.{old}", f"has moved to {new}")
        raw = {key: value for key, value in raw.items() if key not in _MOVED_FROM_RULE}
    item = check.mapping(raw, at, _RULE_REQUIRED, _RULE_OPTIONAL) or {}
    rule_id = _read_rule_id(item.get("id"), f"{at}.id", check, seen_ids)
    diagnosis = check.text(item.get("diagnosis"), f"{at}.diagnosis")
    if diagnosis and diagnosis not in references.diagnoses:
        check.fail(f"{at}.diagnosis", f"'{diagnosis}' is not defined under diagnoses")
    outcome = check.text(item.get("outcome"), f"{at}.outcome")
    if outcome and outcome not in OUTCOMES:
        check.fail(f"{at}.outcome", f"'{outcome}' is not one of: {', '.join(OUTCOMES)}")
    evidence = _read_evidence(item.get("evidence"), f"{at}.evidence", check, references.sources)
    indication = item.get("labelled_indication")
    if indication is not None and indication not in references.indications:
        check.fail(f"{at}.labelled_indication", f"'{indication}' is not an indication in products.yaml")
    _check_outcome_basis(outcome, indication, evidence, at, check)
    dosing = item.get("dosing")
    if dosing is not None and dosing not in references.dosing_profiles:
        check.fail(f"{at}.dosing", f"'{dosing}' is not a dosing profile")
    periods = check.mapping(
        item.get("authorisation", {}), f"{at}.authorisation", (), ("initial_days", "continuing_days")
    )
    if periods is not None and "authorisation" in item and not periods:
        check.fail(f"{at}.authorisation", "give initial_days, continuing_days or both")
    initial_days, continuing_days = (
        _days(periods[name], f"{at}.authorisation.{name}", check) if periods and name in periods else None
        for name in ("initial_days", "continuing_days")
    )
    priority = _priority(item.get("priority", 0), f"{at}.priority", check)
    tier, tier_basis = _read_tier(item, at, check, references.supply)
    return Rule(
        id=rule_id,
        title=check.text(item.get("title"), f"{at}.title"),
        diagnosis=diagnosis,
        outcome=outcome,
        rationale=check.text(item.get("rationale"), f"{at}.rationale"),
        evidence=evidence,
        when=_read_conditions(item.get("when"), f"{at}.when", check, references),
        priority=priority,
        labelled_indication=indication,
        conflict=check.text(item.get("conflict"), f"{at}.conflict", required=False),
        position=position,
        dosing=dosing,
        initial_days=initial_days,
        continuing_days=continuing_days,
        review_criteria=_read_review_criteria(item.get("review_criteria"), f"{at}.review_criteria", check, references),
        courses=_read_course_limit(item.get("courses"), f"{at}.courses", check),
        urgent=_flag(item["urgent"], f"{at}.urgent", check) if "urgent" in item else False,
        tier=tier,
        tier_basis=tier_basis,
    )


def _read_tier(item: dict, at: str, check: _Checker, supply: Supply | None) -> tuple[str | None, str]:
    """A rule's priority tier, one of the rulebook's supply.tiers, and where it comes from (a
    published ranking, or how it was inferred). Every rule has one when the rulebook declares tiers."""
    if "tier" not in item:
        if supply is not None:
            check.fail(
                f"{at}.tier",
                f"missing: the rulebook declares priority tiers ({', '.join(supply.tiers)}), so every rule has one",
            )
        if "tier_basis" in item:
            check.fail(f"{at}.tier_basis", "a tier_basis without a tier")
        return None, ""
    tier = check.text(item["tier"], f"{at}.tier")
    if supply is None:
        check.fail(f"{at}.tier", "the rulebook declares no priority tiers (supply.tiers)")
    elif tier and tier not in supply.tiers:
        check.fail(f"{at}.tier", f"'{tier}' is not a tier of supply.tiers ({', '.join(supply.tiers)})")
    basis = check.text(item.get("tier_basis"), f"{at}.tier_basis")  # every clinical fact carries its source
    return tier, basis


def _read_course_limit(raw, where: str, check: _Checker) -> CourseLimit | None:
    """`courses: {max, per_days}`: how many authorisations of the diagnosis one patient may have in a period."""
    if raw is None:
        return None
    item = check.mapping(raw, where, ("max", "per_days")) or {}
    most = item.get("max")
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 10:
        check.fail(f"{where}.max", f"must be a whole number of courses from 1 to 10, found {most!r}")
        most = None
    per_days = _days(item["per_days"], f"{where}.per_days", check) if "per_days" in item else None
    return CourseLimit(most, per_days) if most and per_days else None


_BENEFIT_PARTS = ("improved_by", "stable_within", "at_least", "at_most")


def _read_review_criteria(raw, where: str, check: _Checker, references: References) -> ReviewCriteria | None:
    """What a continuation needs: `{measures: {measure: {improved_by|stable_within|at_least|at_most: N,
    unit: U}}, benefit: all|any, within_days: D, source: S}`, or `{reviewer_judges: why}`."""
    if raw is None:
        return None
    item = check.mapping(raw, where, (), ("measures", "benefit", "within_days", "source", "reviewer_judges")) or {}
    if "reviewer_judges" in item:
        if set(item) != {"reviewer_judges"}:
            check.fail(where, "reviewer_judges stands alone: a reviewer judges, or the measures do, not both")
        return ReviewCriteria(reviewer_judges=check.text(item["reviewer_judges"], f"{where}.reviewer_judges"))
    benefit = item.get("benefit", "all")
    if benefit not in BENEFIT_RULES:
        check.fail(f"{where}.benefit", f"must be one of {', '.join(BENEFIT_RULES)}, found {benefit!r}")
    within = item.get("within_days", 90)
    if isinstance(within, bool) or not isinstance(within, int) or not 1 <= within <= MAX_WINDOW_DAYS:
        check.fail(f"{where}.within_days", f"must be a whole number from 1 to {MAX_WINDOW_DAYS}, found {within!r}")
    source = check.text(item.get("source"), f"{where}.source")
    if source and source not in references.sources:
        check.fail(f"{where}.source", f"'{source}' is not defined in sources.yaml")
    measures = item.get("measures")
    if not isinstance(measures, dict) or not measures:
        check.fail(f"{where}.measures", "must map at least one measure to what counts as benefit on it")
        measures = {}
    tests = tuple(
        test
        for measure_id, spec in measures.items()
        if (test := _read_benefit_test(str(measure_id), spec, f"{where}.measures.{measure_id}", check, references))
    )
    return ReviewCriteria(tests, str(benefit), within if isinstance(within, int) else 90, source)


def _measure_spec(
    measure_id: str, spec, at: str, check: _Checker, references: References, fields: tuple[str, ...]
) -> tuple[Measure, dict, str] | None:
    """A rule's entry for one measure: the measure, its fields (checked against `fields` and
    `unit`), and the unit its values are written in (the measure's own when not given)."""
    measure = references.measures.get(measure_id)
    if measure is None:
        check.fail(at, f"'{measure_id}' is not a measure in measures.yaml")
        return None
    item = check.mapping(spec, at, (), (*fields, "unit")) or {}
    unit = item.get("unit", measure.unit)
    if unit not in measure.units:
        check.fail(f"{at}.unit", f"'{unit}' is not a unit of {measure_id} (accepted: {', '.join(measure.units)})")
        return None
    return measure, item, str(unit)


def _in_range(measure: Measure, value: float, unit: str, canonical: float, where: str, check: _Checker) -> bool:
    """Whether a value written in `unit` (`canonical` once converted) is within the measure's range."""
    if measure.low <= canonical <= measure.high:
        return True
    check.fail(
        where,
        f"{value:g} {unit} is outside {measure.id}'s range ({measure.low:g} to {measure.high:g} {measure.unit})",
    )
    return False


def _read_benefit_test(measure_id: str, spec, at: str, check: _Checker, references: References) -> BenefitTest | None:
    found = _measure_spec(measure_id, spec, at, check, references, _BENEFIT_PARTS)
    if found is None:
        return None
    measure, item, unit = found
    if not any(part in item for part in _BENEFIT_PARTS):
        check.fail(at, f"say what counts as benefit: {', '.join(_BENEFIT_PARTS)}")
    span = measure.high - measure.low
    values: dict[str, float] = {}
    for part in _BENEFIT_PARTS:
        if part not in item:
            continue
        value = check.number(item[part], f"{at}.{part}", -1e9, 1e9)
        if value is None:
            continue
        canonical = measure.to_canonical(value, unit)
        if part in ("at_least", "at_most"):
            _in_range(measure, value, unit, canonical, f"{at}.{part}", check)
        elif part == "improved_by" and not 0 < canonical <= span:
            check.fail(
                f"{at}.{part}", f"must be above 0 and at most {measure_id}'s whole range ({span:g} {measure.unit})"
            )
        elif part == "stable_within" and not 0 <= canonical <= span:
            check.fail(f"{at}.{part}", f"must be from 0 to {measure_id}'s whole range ({span:g} {measure.unit})")
        values[part] = canonical
    if ("improved_by" in values or "stable_within" in values) and measure.better is None:
        check.fail(at, f"comparing with the baseline needs {measure_id}'s `better` (higher or lower) in measures.yaml")
    if "improved_by" in values and "stable_within" in values:
        check.fail(at, "give improved_by or stable_within: stability already counts an improvement")
    if values.get("at_least", measure.low) > values.get("at_most", measure.high):
        check.fail(at, "at_least is above at_most: no value can show benefit")
    return BenefitTest(
        measure_id,
        values.get("improved_by"),
        values.get("stable_within"),
        values.get("at_least"),
        values.get("at_most"),
        measure.unit,
    )


def _read_rule_id(raw, where: str, check: _Checker, seen_ids: set[str]) -> str:
    rule_id = check.text(raw, where)
    if rule_id and not _RULE_ID.match(rule_id):
        check.fail(where, "use lower-case letters, digits and hyphens")
    if rule_id in seen_ids:
        check.fail(where, "another rule has the same id")
    seen_ids.add(rule_id)
    return rule_id


def _check_outcome_basis(
    outcome: str, indication: str | None, evidence: tuple[Evidence, ...], at: str, check: _Checker
):
    """The outcome scale's strict lines: approval rests on a label, off-label use on a controlled
    finding of benefit, a refusal on a controlled finding of no benefit or a review that found nothing."""
    if (outcome == "approved") != (indication is not None):
        check.fail(at, "an approved rule needs labelled_indication, and only an approved rule may have one")
    if outcome == "off_label_with_evidence" and not any(e.shows("benefit") for e in evidence):
        check.fail(
            f"{at}.evidence",
            "off_label_with_evidence needs a controlled finding of benefit (strength controlled, effect benefit)",
        )
    if outcome == "not_supported" and not any(e.shows("no_benefit") or e.strength == "none_found" for e in evidence):
        check.fail(
            f"{at}.evidence",
            "not_supported needs controlled studies reporting no benefit (strength "
            "controlled, effect no_benefit) or a review that found no evidence (none_found); "
            "limited, mixed or absent evidence is needs_review",
        )


def _priority(value, where: str, check: _Checker) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        check.fail(where, f"must be a whole number from 0 to 100, found {value!r}")
        return 0
    return value


def _read_evidence(raw, where: str, check: _Checker, sources) -> tuple[Evidence, ...]:
    if not isinstance(raw, list) or not raw:
        check.fail(where, "must list at least one evidence entry (source, finding, strength)")
        return ()
    entries = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        item = check.mapping(item, at, ("source", "finding", "strength"), ("effect",)) or {}
        source = check.text(item.get("source"), f"{at}.source")
        if source and source not in sources:
            check.fail(f"{at}.source", f"'{source}' is not defined in sources.yaml")
        strength = check.text(item.get("strength"), f"{at}.strength")
        if strength and strength not in STRENGTHS:
            check.fail(f"{at}.strength", f"'{strength}' is not one of: {', '.join(STRENGTHS)}")
        effect = item.get("effect")
        if effect is not None and effect not in EFFECTS:
            check.fail(f"{at}.effect", f"'{effect}' is not one of: {', '.join(EFFECTS)}")
        if (effect is None) == (strength in _EFFECT_NEEDED):
            check.fail(
                f"{at}.effect",
                f"a {strength} finding needs an effect ({', '.join(EFFECTS)})"
                if effect is None
                else f"a {strength} finding reports no effect: only controlled and limited findings take one",
            )
        entries.append(Evidence(source, check.text(item.get("finding"), f"{at}.finding"), strength, effect))
    return tuple(entries)


def _read_conditions(raw, where: str, check: _Checker, references: "References") -> Conditions:
    if raw is None:
        return Conditions()
    fields = (
        "age_years",
        "sex",
        "pregnant",
        "severity",
        "failed_therapies",
        "concurrent_therapies",
        "product",
        "observations",
        "confirmed_by",
        "prescriber_specialty",
        "phase",
        "course",
    )
    therapies = references.therapies
    raw = check.mapping(raw, where, (), fields) or {}
    age_at_least, age_under = _age_limits(raw.get("age_years"), f"{where}.age_years", check)
    pregnant = None if raw.get("pregnant") is None else _flag(raw["pregnant"], f"{where}.pregnant", check)
    min_weeks: dict[str, int] = {}

    def therapy_list(block: str, key: str) -> frozenset[str]:
        at = f"{where}.{block}.{key}"
        items = raw[block].get(key) if isinstance(raw.get(block), dict) else None
        if items is None:
            return frozenset()
        if not isinstance(items, list):
            check.fail(at, "must be a list")
            return frozenset()
        if not items:
            check.fail(at, "must list at least one therapy")
        names = []
        for i, item in enumerate(items):
            if isinstance(item, dict) and block == "failed_therapies":
                entry = check.mapping(item, f"{at}[{i}]", ("therapy", "min_weeks")) or {}
                name = check.text(entry.get("therapy"), f"{at}[{i}].therapy")
                weeks = entry.get("min_weeks")
                if isinstance(weeks, bool) or not isinstance(weeks, int) or not 1 <= weeks <= MAX_WEEKS:
                    check.fail(f"{at}[{i}].min_weeks", f"must be a whole number from 1 to {MAX_WEEKS}, found {weeks!r}")
                elif name:
                    min_weeks[name] = weeks
            else:
                name = check.text(item, f"{at}[{i}]")
            if name and name not in therapies:
                check.fail(at, f"'{name}' is not a therapy in therapies.yaml")
            names.append(name)
        return frozenset(names)

    if "failed_therapies" in raw:
        check.mapping(raw["failed_therapies"], f"{where}.failed_therapies", ("includes",))
    if "concurrent_therapies" in raw:
        block = check.mapping(
            raw["concurrent_therapies"], f"{where}.concurrent_therapies", (), ("includes", "excludes")
        )
        if block is not None and not block:
            check.fail(f"{where}.concurrent_therapies", "give includes, excludes or both")
    conditions = Conditions(
        age_under=age_under,
        age_at_least=age_at_least,
        sex=check.choices(raw.get("sex"), f"{where}.sex", SEXES),
        pregnant=pregnant,
        severity=check.choices(raw.get("severity"), f"{where}.severity", SEVERITIES),
        failed_includes=therapy_list("failed_therapies", "includes"),
        concurrent_includes=therapy_list("concurrent_therapies", "includes"),
        concurrent_excludes=therapy_list("concurrent_therapies", "excludes"),
        product=check.choices(raw.get("product"), f"{where}.product", references.products),
        failed_min_weeks=tuple(sorted(min_weeks.items())),
        observations=_read_observation_tests(raw.get("observations"), f"{where}.observations", check, references),
        confirmed_by=_vocabulary_choice(raw, "confirmed_by", where, check, references.specialties, "specialties.yaml"),
        prescriber_specialty=_vocabulary_choice(
            raw, "prescriber_specialty", where, check, references.specialties, "specialties.yaml"
        ),
        phase=_vocabulary_choice(raw, "phase", where, check, references.phases, "phases.yaml"),
        course=check.choices(raw.get("course"), f"{where}.course", COURSES) if "course" in raw else None,
    )
    if "course" in raw and raw.get("course") is None:
        check.fail(f"{where}.course", "must list at least one value")
    if conditions.pregnant and conditions.sex is not None and conditions.sex <= {"male"}:
        check.fail(where, "pregnant with sex male: the condition can never be true")
    both = conditions.concurrent_includes & conditions.concurrent_excludes
    if both:
        check.fail(f"{where}.concurrent_therapies", f"{', '.join(sorted(both))} both included and excluded")
    return conditions


def _vocabulary_choice(
    raw: dict, key: str, where: str, check: _Checker, known: dict, file: str
) -> frozenset[str] | None:
    """A list of words from a reference file; an empty list (no request could match) is refused."""
    if key not in raw:
        return None
    at = f"{where}.{key}"
    value = raw[key]
    if not isinstance(value, list) or not value:
        check.fail(at, "must list at least one value" if isinstance(value, list) or value is None else "must be a list")
        return None
    items = check.texts(value, at)
    for item in items:
        if item and item not in known:
            check.fail(at, f"'{item}' is not defined in {file}")
    return frozenset(items)


def _read_observation_tests(raw, where: str, check: _Checker, references: "References") -> tuple[ObservationTest, ...]:
    """`observations: {measure: {below|at_most|above|at_least: N, unit: U, within_days: D}}`; the
    thresholds are converted to the measure's canonical unit here, once."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        check.fail(where, "must map at least one measure to its threshold")
        return ()
    tests = []
    for measure_id, spec in raw.items():
        at = f"{where}.{measure_id}"
        found = _measure_spec(str(measure_id), spec, at, check, references, (*THRESHOLDS, "within_days"))
        if found is None:
            continue
        measure, item, unit = found
        written, bounds = [], []
        for op in THRESHOLDS:
            if op not in item:
                continue
            value = check.number(item[op], f"{at}.{op}", -1e9, 1e9)
            if value is None:
                continue
            canonical = measure.to_canonical(value, unit)
            if not _in_range(measure, value, unit, canonical, f"{at}.{op}", check):
                continue
            written.append((op, value))
            bounds.append((op, canonical))
        if not any(op in item for op in THRESHOLDS):
            check.fail(at, f"give a threshold: {', '.join(THRESHOLDS)}")
        lower = [(v, op == "at_least") for op, v in bounds if op in ("above", "at_least")]
        upper = [(v, op == "at_most") for op, v in bounds if op in ("below", "at_most")]
        if lower and upper:
            low, high = max(lower), min(upper)
            if low[0] > high[0] or (low[0] == high[0] and not (low[1] and high[1])):
                check.fail(at, "no value can meet both thresholds: the condition can never be true")
        if sum(op in item for op in ("above", "at_least")) > 1 or sum(op in item for op in ("below", "at_most")) > 1:
            check.fail(at, "give at most one lower (above, at_least) and one upper (below, at_most) threshold")
        window = None
        if "within_days" in item:
            window = item["within_days"]
            if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW_DAYS:
                check.fail(f"{at}.within_days", f"must be a whole number from 1 to {MAX_WINDOW_DAYS}, found {window!r}")
                window = None
        tests.append(ObservationTest(str(measure_id), tuple(bounds), window, str(unit), tuple(written)))
    return tuple(tests)
