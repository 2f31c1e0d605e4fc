"""What changed between two rulebooks, rule by rule and field by field, in words a committee reads.

`diff(old, new)` compares two loaded Rulebooks: the rulebook's own settings (version, effective
date, authorisation defaults, the default dosing profile, the weight and rounding rules), each
rule (added, removed, or changed: outcome, diagnosis and its codes and synonyms, conditions,
evidence, dosing profile, authorisation periods, courses, review criteria, urgency, labelled
indication, priority, supply tier, title, rationale, conflict), then the diagnoses, dosing profiles, products
and their labels, and the other reference data (therapies, sources, measures, specialties,
phases, indications). Each difference is one Change: what kind of thing, its id, the field, the
old and new values as JSON, and a line in plain words
("rule gbs-adults: outcome needs_review -> off_label_with_evidence").

Pure: no files, no database; the callers load the two rulebooks.
"""

from dataclasses import asdict, dataclass, fields, is_dataclass, replace

from service.rulebook.model import Conditions, Evidence, Label, Rule, Rulebook

ABSENT = "none"  # how words say a value that is not set


@dataclass(frozen=True)
class Change:
    kind: str  # rulebook, rule, diagnosis, dosing_profile, product, therapy, source, measure, ...
    id: str
    field: str | None  # None: the whole thing was added or removed
    old: object  # JSON values; None when added
    new: object  # None when removed
    words: str

    def as_data(self) -> dict:
        return {
            "kind": self.kind,
            "id": self.id,
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "words": self.words,
        }


def diff(old: Rulebook, new: Rulebook) -> list[Change]:
    """Every difference from `old` to `new`; empty when they decide, dose and cite alike."""
    changes = _settings(old, new)
    changes += _rules(old, new)
    changes += _records("diagnosis", old.diagnoses, new.diagnoses)
    changes += _records("dosing_profile", old.dosing_profiles, new.dosing_profiles)
    changes += _products(old, new)
    for kind, attribute in (
        ("indication", "indications"),
        ("therapy", "therapies"),
        ("source", "sources"),
        ("measure", "measures"),
        ("specialty", "specialties"),
        ("phase", "phases"),
        ("abbreviation", "abbreviations"),
    ):
        changes += _records(kind, getattr(old, attribute), getattr(new, attribute))
    return changes


def words(changes: list[Change]) -> list[str]:
    return [change.words for change in changes] or ["no differences"]


def diff_as_data(old: Rulebook, new: Rulebook) -> dict:
    """The comparison as the API returns it and `formulary rulebook diff --json` prints it."""
    changes = diff(old, new)
    return {
        "old": _ref(old),
        "new": _ref(new),
        "changes": [change.as_data() for change in changes],
        "words": words(changes),
    }


def _ref(rulebook: Rulebook) -> dict:
    return {"name": rulebook.name, "version": rulebook.version, "digest": rulebook.digest}


# --- the rulebook's own settings ---


def _settings(old: Rulebook, new: Rulebook) -> list[Change]:
    pairs = [
        ("name", old.name, new.name),
        ("version", old.version, new.version),
        ("effective", old.effective, new.effective),
        ("default_dosing", old.default_dosing, new.default_dosing),
        ("qualifiers", sorted(old.qualifiers), sorted(new.qualifiers)),
    ]
    pairs += _supply_pairs(old, new)
    for block, before, after in (
        ("authorisations", old.authorisations, new.authorisations),
        ("dosing.weight", old.weight_rule, new.weight_rule),
        ("dosing.rounding", old.rounding_rule, new.rounding_rule),
    ):
        pairs += [(f"{block}.{f.name}", getattr(before, f.name), getattr(after, f.name)) for f in fields(before)]
    return [_changed("rulebook", old.name, name, a, b, "rulebook") for name, a, b in pairs if _plain(a) != _plain(b)]


def _supply_pairs(old: Rulebook, new: Rulebook) -> list[tuple]:
    """The priority tiers and supply phases, field by field and phase by phase."""
    before, after = old.supply, new.supply
    pairs = [
        (f"supply.{name}", getattr(before, name, None), getattr(after, name, None))
        for name in ("source", "default_phase", "tiers")
    ]
    phases = dict.fromkeys([*(before.phases if before else {}), *(after.phases if after else {})])
    for phase in phases:
        was = before.phases.get(phase) if before else None
        now = after.phases.get(phase) if after else None
        pairs.append((f"supply.phases.{phase}", was.actions if was else None, now.actions if now else None))
    return pairs


# --- rules ---


def _rules(old: Rulebook, new: Rulebook) -> list[Change]:
    before = {rule.id: rule for rule in old.rules}
    after = {rule.id: rule for rule in new.rules}
    changes = []
    for rule_id, rule in before.items():
        if rule_id not in after:
            changes.append(
                Change(
                    "rule",
                    rule_id,
                    None,
                    _rule_data(old, rule),
                    None,
                    f"rule {rule_id} removed: {_rule_line(old, rule)}",
                )
            )
    for rule_id, rule in after.items():
        if rule_id not in before:
            changes.append(
                Change(
                    "rule", rule_id, None, None, _rule_data(new, rule), f"rule {rule_id} added: {_rule_line(new, rule)}"
                )
            )
        else:
            changes += _rule_changes(old, before[rule_id], new, rule)
    return changes


def _rule_line(rulebook: Rulebook, rule: Rule) -> str:
    codes = ", ".join(rulebook.diagnoses[rule.diagnosis].codes)
    return f"{rule.title} ({rule.diagnosis}: {codes}; when {rule.when.describe()}) -> {rule.outcome}"


def _rule_data(rulebook: Rulebook, rule: Rule) -> dict:
    return {
        "title": rule.title,
        "diagnosis": rule.diagnosis,
        "codes": list(rulebook.diagnoses[rule.diagnosis].codes),
        "when": rule.when.describe(),
        "outcome": rule.outcome,
    }


def _rule_changes(old: Rulebook, before: Rule, new: Rulebook, after: Rule) -> list[Change]:
    what = f"rule {after.id}"
    changes = []

    def compare(name: str, a, b):
        if _plain(a) != _plain(b):
            changes.append(_changed("rule", after.id, name, a, b, what))

    compare("title", before.title, after.title)
    compare("outcome", before.outcome, after.outcome)
    compare("diagnosis", before.diagnosis, after.diagnosis)
    old_diagnosis, new_diagnosis = old.diagnoses[before.diagnosis], new.diagnoses[after.diagnosis]
    compare("codes", list(old_diagnosis.codes), list(new_diagnosis.codes))
    compare("synonyms", [s.term for s in old_diagnosis.synonyms], [s.term for s in new_diagnosis.synonyms])
    changes += _conditions(after.id, before.when, after.when)
    changes += _evidence(after.id, before.evidence, after.evidence)
    compare("dosing", old.dosing_for(before).id, new.dosing_for(after).id)
    compare("authorisation_days", old.authorisation_days_for(before), new.authorisation_days_for(after))
    compare(
        "continuing_days",
        old.authorisation_days_for(before, continuing=True),
        new.authorisation_days_for(after, continuing=True),
    )
    compare("courses", _courses(before), _courses(after))
    if _plain(before.review_criteria) != _plain(after.review_criteria):
        said = [c.describe() if c else ABSENT for c in (before.review_criteria, after.review_criteria)]
        if said[0] == said[1]:  # the same measures, another source or reviewer's reason
            said = [_say(before.review_criteria), _say(after.review_criteria)]
        changes.append(
            Change(
                "rule",
                after.id,
                "review_criteria",
                _plain(before.review_criteria),
                _plain(after.review_criteria),
                f"{what}: review criteria {said[0]} -> {said[1]}",
            )
        )
    compare("urgent", before.urgent, after.urgent)
    compare("labelled_indication", before.labelled_indication, after.labelled_indication)
    compare("priority", before.priority, after.priority)
    compare("tier", before.tier, after.tier)
    compare("tier_basis", before.tier_basis or None, after.tier_basis or None)
    compare("rationale", before.rationale, after.rationale)
    compare("conflict", before.conflict or None, after.conflict or None)
    return changes


def _courses(rule: Rule) -> str | None:
    return f"at most {rule.courses.max} per {rule.courses.per_days} days" if rule.courses else None


def _conditions(rule_id: str, before: Conditions, after: Conditions) -> list[Change]:
    """One change per condition field that differs, said as Conditions.describe() says it."""
    changes = []
    for f in fields(Conditions):
        a, b = getattr(before, f.name), getattr(after, f.name)
        if _plain(a) == _plain(b):
            continue
        said_before = _condition_words(f.name, a)
        said_after = _condition_words(f.name, b)
        changes.append(
            Change(
                "rule",
                rule_id,
                f"when.{f.name}",
                _plain(a),
                _plain(b),
                f"rule {rule_id}: condition {said_before} -> {said_after} (conditions now: {after.describe()})",
            )
        )
    return changes


def _condition_words(name: str, value) -> str:
    said = replace(Conditions(), **{name: value}).describe()
    return ABSENT if said == "any" else said


def _evidence(rule_id: str, before: tuple[Evidence, ...], after: tuple[Evidence, ...]) -> list[Change]:
    """Entries removed and added; an entry whose source is cited once on both sides is compared field by field."""
    gone = [e for e in before if e not in after]
    came = [e for e in after if e not in before]
    changes = []
    for entry in list(gone):
        pairs = [e for e in came if e.source == entry.source]
        if len(pairs) == 1 and sum(e.source == entry.source for e in gone) == 1:
            other = pairs[0]
            gone.remove(entry)
            came.remove(other)
            for f in fields(Evidence):
                a, b = getattr(entry, f.name), getattr(other, f.name)
                if a != b:
                    changes.append(
                        Change(
                            "rule",
                            rule_id,
                            f"evidence[{entry.source}].{f.name}",
                            a,
                            b,
                            f"rule {rule_id}: evidence from {entry.source}: {f.name} {_say(a)} -> {_say(b)}",
                        )
                    )
    for entry in gone:
        changes.append(
            Change(
                "rule", rule_id, "evidence", asdict(entry), None, f"rule {rule_id}: evidence removed: {_entry(entry)}"
            )
        )
    for entry in came:
        changes.append(
            Change("rule", rule_id, "evidence", None, asdict(entry), f"rule {rule_id}: evidence added: {_entry(entry)}")
        )
    return changes


def _entry(entry: Evidence) -> str:
    graded = entry.strength + (f", {entry.effect}" if entry.effect else "")
    return f"{entry.source} ({graded}): {entry.finding}"


# --- products and their labels ---


def _products(old: Rulebook, new: Rulebook) -> list[Change]:
    changes = []
    for name in sorted(old.products.keys() - new.products.keys()):
        changes.append(Change("product", name, None, _plain(old.products[name]), None, f"product {name} removed"))
    for name in sorted(new.products.keys() - old.products.keys()):
        product = new.products[name]
        status = "verified" if product.verified else "unverified"
        changes.append(Change("product", name, None, None, _plain(product), f"product {name} added ({status})"))
    for name in sorted(old.products.keys() & new.products.keys()):
        before, after = old.products[name], new.products[name]
        for f in fields(before):
            if f.name != "labels" and _plain(getattr(before, f.name)) != _plain(getattr(after, f.name)):
                changes.append(
                    _changed(
                        "product", name, f.name, getattr(before, f.name), getattr(after, f.name), f"product {name}"
                    )
                )
        changes += _labels(name, before.labels, after.labels)
    return changes


def _labels(product: str, before: tuple[Label, ...], after: tuple[Label, ...]) -> list[Change]:
    def key(label: Label) -> str:
        return f"{label.indication} ({', '.join(sorted(label.routes))})"

    old_labels, new_labels = {key(x): x for x in before}, {key(x): x for x in after}
    changes = []
    for name in sorted(old_labels.keys() | new_labels.keys()):
        a, b = old_labels.get(name), new_labels.get(name)
        if _plain(a) == _plain(b):
            continue
        if a is None or b is None:
            verb, said = ("added", _label_words(b)) if b is not None else ("removed", _label_words(a))
        else:
            verb, said = "changed", f"{_label_words(a)} -> {_label_words(b)}"
        changes.append(
            Change(
                "product",
                product,
                f"labels[{name}]",
                _plain(a),
                _plain(b),
                f"product {product}: label {name} {verb}: {said}",
            )
        )
    return changes


def _label_words(label: Label | None) -> str:
    if label is None:
        return ABSENT
    ages = Conditions(age_at_least=label.age_at_least, age_under=label.age_under).describe()
    said = "any age" if ages == "any" else ages
    return f"{said}, dose {_say(label.dose)}" if label.dose is not None else said


# --- records by id (diagnoses, dosing profiles, reference data) ---


def _records(kind: str, before: dict, after: dict) -> list[Change]:
    changes = []
    for key in sorted(before.keys() - after.keys()):
        changes.append(Change(kind, key, None, _plain(before[key]), None, f"{_kind_words(kind)} {key} removed"))
    for key in sorted(after.keys() - before.keys()):
        said = f": {_say(after[key])}" if not is_dataclass(after[key]) else _named(after[key])
        changes.append(Change(kind, key, None, None, _plain(after[key]), f"{_kind_words(kind)} {key} added{said}"))
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key], after[key]
        if _plain(a) == _plain(b):
            continue
        if not is_dataclass(a):
            changes.append(_changed(kind, key, None, a, b, f"{_kind_words(kind)} {key}"))
            continue
        for f in fields(a):
            if _plain(getattr(a, f.name)) != _plain(getattr(b, f.name)):
                changes.append(
                    _changed(kind, key, f.name, getattr(a, f.name), getattr(b, f.name), f"{_kind_words(kind)} {key}")
                )
    return sorted(changes, key=lambda change: (change.id, change.field or ""))


def _named(value) -> str:
    name = getattr(value, "name", "") or getattr(value, "title", "")
    return f": {name}" if name else ""


def _kind_words(kind: str) -> str:
    return kind.replace("_", " ")


# --- values ---


def _changed(kind: str, key: str, name: str | None, a, b, what: str) -> Change:
    field_words = f" {name.replace('_', ' ')}" if name else ""
    old, new = _plain(a), _plain(b)
    return Change(kind, key, name, old, new, f"{what}:{field_words} {_say_change(old, new)}")


def _say_change(old, new) -> str:
    """old -> new; for two lists of words, what was added and removed (or that only the order changed)."""
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(v, str) for v in old + new):
        added = [v for v in new if v not in old]
        removed = [v for v in old if v not in new]
        if not added and not removed:
            return f"order {_say(old)} -> {_say(new)}"
        said = ([f"added {_say(added)}"] if added else []) + ([f"removed {_say(removed)}"] if removed else [])
        return "; ".join(said)
    return f"{_say(old)} -> {_say(new)}"


def _plain(value):
    """The value as JSON data: sets sorted, tuples as lists, dataclasses as mappings."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _say(value) -> str:
    """A value in words: none for nothing, lists joined, mappings as "key value" pairs."""
    value = _plain(value)
    if value is None or value == [] or value == {} or value == "":
        return ABSENT
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_say(v) for v in value)
    if isinstance(value, dict):
        shown = [f"{k} {_say(v)}" for k, v in value.items() if v not in (None, "", [], {}, False)]
        return "{" + "; ".join(shown) + "}" if shown else ABSENT
    if isinstance(value, str) and " " in value:  # a text: quoted, so where it ends shows
        return f'"{value.strip()}"'
    return str(value)
