"""The rulebook as typed, immutable objects: what the reader builds and everything else reads.

The vocabularies (outcomes, evidence strengths, sexes, ...) are defined here once, so the reader,
the compiler, request validation and the OpenAPI document all check against the same words.
Reading and checking YAML lives in `service.rulebook.reader`.
"""

from dataclasses import dataclass, field
from pathlib import Path

OUTCOMES = ("approved", "off_label_with_evidence", "needs_review", "not_supported")
# The outcomes that say yes: only these may grant an authorisation, and the rulebook's
# `authorisations.granted_by` says which of them do.
POSITIVE_OUTCOMES = ("approved", "off_label_with_evidence")
STRENGTHS = ("controlled", "limited", "mixed", "none_found", "guideline_listed", "case_experience", "not_addressed")
# What a controlled or limited finding reports; the outcome scale (README) is checked against it.
EFFECTS = ("benefit", "no_benefit", "unclear")
SEXES = ("female", "male", "other", "unknown")
SEVERITIES = ("mild", "moderate", "severe")
ROUTES = ("intravenous", "subcutaneous")
COURSES = ("initial", "continuation", "one_off")
# Why a therapy is recorded as failed: a word from this list, never free text (the request is kept).
FAILURE_REASONS = ("inadequate_response", "intolerance", "contraindication", "other")
# Observation thresholds as rules write them -> the comparison the engine makes.
THRESHOLDS = {"below": "$lt", "at_most": "$lte", "above": "$gt", "at_least": "$gte"}
MAX_WINDOW_DAYS = 3660
MAX_WEEKS = 520
MAX_AGE_YEARS = 130
# How a continuation's measures add up to benefit: every one of them, or any one.
BENEFIT_RULES = ("all", "any")
DIRECTIONS = ("higher", "lower")
# What a supply phase does with a tier's decisions: decide them as the rule says, send them to
# review, or refuse them. Only ever more cautious than the rule: a phase never approves.
PHASE_ACTIONS = ("as_usual", "needs_review", "not_supported")


class RulebookError(Exception):
    """A rulebook that cannot be loaded; `problems` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    publisher: str
    date: str
    note: str = ""


@dataclass(frozen=True)
class Evidence:
    source: str
    finding: str
    strength: str
    effect: str | None = None  # benefit, no_benefit or unclear: required for controlled and limited findings

    def shows(self, effect: str) -> bool:
        """A controlled finding of this effect: what off_label_with_evidence and not_supported rest on."""
        return self.strength == "controlled" and self.effect == effect


@dataclass(frozen=True)
class Synonym:
    """Another name for a diagnosis; `code` pins the code it means within the diagnosis's codes."""

    term: str
    code: str | None = None


@dataclass(frozen=True)
class Diagnosis:
    id: str
    name: str
    codes: tuple[str, ...]
    synonyms: tuple[Synonym, ...] = ()
    coding_note: str = ""


@dataclass(frozen=True)
class ObservationTest:
    """A threshold on one measure, in the measure's canonical unit, on an observation taken within
    `within_days` (None: at any time). `bounds` are (operator, value) pairs, operator a key of THRESHOLDS."""

    measure: str
    bounds: tuple[tuple[str, float], ...]
    within_days: int | None = None
    unit: str = ""  # the unit the rule was written in, for messages
    written: tuple[tuple[str, float], ...] = ()  # the bounds as written in `unit`

    def describe(self) -> str:
        words = {"below": "<", "at_most": "<=", "above": ">", "at_least": ">="}
        parts = [f"{self.measure} {words[op]} {value:g} {self.unit}".rstrip() for op, value in self.written]
        window = f" (within {self.within_days} days)" if self.within_days is not None else ""
        return " and ".join(parts) + window


@dataclass(frozen=True)
class Conditions:
    """What a request must show for a rule to apply; None (or empty) means "any"."""

    age_under: float | None = None
    age_at_least: float | None = None
    sex: frozenset[str] | None = None
    pregnant: bool | None = None
    severity: frozenset[str] | None = None
    failed_includes: frozenset[str] = frozenset()
    concurrent_includes: frozenset[str] = frozenset()
    concurrent_excludes: frozenset[str] = frozenset()
    product: frozenset[str] | None = None
    failed_min_weeks: tuple[tuple[str, int], ...] = ()  # (therapy, weeks): failed after at least so many weeks
    observations: tuple[ObservationTest, ...] = ()
    confirmed_by: frozenset[str] | None = None
    prescriber_specialty: frozenset[str] | None = None
    phase: frozenset[str] | None = None
    course: frozenset[str] | None = None

    def describe(self) -> str:
        """The conditions in a pharmacist's words, for tables and messages."""
        parts = []
        if self.age_at_least is not None:
            parts.append(f"age >= {self.age_at_least:g}")
        if self.age_under is not None:
            parts.append(f"age < {self.age_under:g}")
        if self.sex is not None:
            parts.append("sex " + "/".join(sorted(self.sex)))
        if self.pregnant is not None:
            parts.append("pregnant" if self.pregnant else "not pregnant")
        if self.severity is not None:
            parts.append("severity " + "/".join(sorted(self.severity)))
        parts += [f"failed {t}" for t in sorted(self.failed_includes)]
        parts += [f"with {t}" for t in sorted(self.concurrent_includes)]
        parts += [f"without {t}" for t in sorted(self.concurrent_excludes)]
        if self.product is not None:
            parts.append("product " + "/".join(sorted(self.product)))
        parts += [f"failed {t} for at least {w} weeks" for t, w in self.failed_min_weeks]
        parts += [o.describe() for o in self.observations]
        for label, values in (
            ("confirmed by", self.confirmed_by),
            ("prescriber", self.prescriber_specialty),
            ("phase", self.phase),
            ("course", self.course),
        ):
            if values is not None:
                parts.append(f"{label} " + "/".join(sorted(values)))
        return ", ".join(parts) or "any"


@dataclass(frozen=True)
class Range:
    """An inclusive range; either end may be open (None)."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class DosingProfile:
    """Dose per course and the interval between courses, as the product labels give them."""

    id: str
    g_per_kg: Range
    interval_days: Range  # Range() for a one-off course: no interval applies
    note: str = ""
    courses: int | None = None  # a one-off (acute) course: how many courses one request allows
    monthly: bool = False  # g_per_kg is a total over 28 days (MMN), not per course


@dataclass(frozen=True)
class WeightRule:
    """The dose-determining weight that g/kg multiplies: an ideal weight from height and sex, an
    adjusted weight between it and the actual one, and the patients dosed on their actual weight.

    The clinical numbers come from the rulebook (`dosing.weight`); service.decide.dosing computes.
    """

    source: str
    ideal_kg_at_five_feet: dict[str, float]  # by sex
    ideal_kg_per_inch_over_five_feet: float
    other_sexes_use: str  # whose base a sex without one uses
    adjustment_factor: float  # adjusted = ideal + factor x (actual - ideal)
    actual_weight_under_age_years: float
    actual_weight_under_height_cm: float
    actual_weight_when_pregnant: bool


@dataclass(frozen=True)
class RoundingRule:
    """How near the exact dose the amount a product's vials make must be to be given instead."""

    source: str
    tolerance: float  # a share of the exact dose: 0.1 is within 10%


@dataclass(frozen=True)
class Provisional:
    """The urgent pathway: an urgent request that needs review may be given a provisional
    authorisation for one course, lasting `days`, whose review case is due within `review_within_hours`."""

    days: int
    review_within_hours: int


@dataclass(frozen=True)
class Authorisations:
    """What a decision grants: the outcomes that grant an authorisation, and for how many days."""

    granted_by: frozenset[str]  # a subset of POSITIVE_OUTCOMES
    days: int  # an initial authorisation's period, unless a rule sets its own
    continuing_days: int | None = None  # a continuation's period; None: `days`
    provisional: Provisional | None = None  # None: no urgent pathway


@dataclass(frozen=True)
class BenefitTest:
    """What counts as benefit on one measure at a continuation, in the measure's canonical unit:
    better than the baseline by at least `improved_by`, no worse than it by more than
    `stable_within`, and within the absolute bounds; every part given must hold."""

    measure: str
    improved_by: float | None = None
    stable_within: float | None = None
    at_least: float | None = None
    at_most: float | None = None
    unit: str = ""  # the unit the rule was written in, for messages

    @property
    def needs_baseline(self) -> bool:
        return self.improved_by is not None or self.stable_within is not None

    def describe(self) -> str:
        parts = []
        if self.improved_by is not None:
            parts.append(f"improved by at least {self.improved_by:g} {self.unit}".rstrip())
        if self.stable_within is not None:
            parts.append(f"no worse than the baseline by more than {self.stable_within:g} {self.unit}".rstrip())
        if self.at_least is not None:
            parts.append(f"at least {self.at_least:g} {self.unit}".rstrip())
        if self.at_most is not None:
            parts.append(f"at most {self.at_most:g} {self.unit}".rstrip())
        return f"{self.measure} " + " and ".join(parts)


@dataclass(frozen=True)
class ReviewCriteria:
    """What a continuation of a maintenance rule's authorisation needs: measures taken within
    `within_days`, compared with the baseline of the initial authorisation, `benefit` saying
    whether all or any of them must show benefit. Or, where no measure fits, `reviewer_judges`:
    why every continuation goes to a reviewer."""

    measures: tuple[BenefitTest, ...] = ()
    benefit: str = "all"
    within_days: int = 90
    source: str = ""
    reviewer_judges: str = ""

    def describe(self) -> str:
        if not self.measures:
            return "a reviewer judges each continuation"
        joined = f" {'and' if self.benefit == 'all' else 'or'} ".join(t.describe() for t in self.measures)
        return f"{joined} (measured within {self.within_days} days)"


@dataclass(frozen=True)
class CourseLimit:
    """At most `max` authorisations of a rule's diagnosis for one patient within `per_days`."""

    max: int
    per_days: int


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    diagnosis: str
    outcome: str
    rationale: str
    evidence: tuple[Evidence, ...]
    when: Conditions = Conditions()
    priority: int = 0
    labelled_indication: str | None = None
    conflict: str = ""
    position: int = 0
    dosing: str | None = None  # a dosing profile id; None: the rulebook's default
    initial_days: int | None = None  # an initial authorisation's period; None: the rulebook's default
    continuing_days: int | None = None  # a continuation's period; None: the rulebook's default
    review_criteria: ReviewCriteria | None = None
    courses: CourseLimit | None = None
    urgent: bool = False  # an urgent request that needs review may be given a provisional authorisation
    tier: str | None = None  # its priority tier in a shortage (the rulebook's supply.tiers)
    tier_basis: str = ""  # where the tier comes from: a published ranking, or how it was inferred


@dataclass(frozen=True)
class LabelDose:
    """The dose a label gives for one indication: g/kg per course and the days between courses."""

    g_per_kg: Range
    interval_days: Range | None = None  # None: the label gives no interval (a one-off course)
    note: str = ""
    monthly: bool = False  # g_per_kg is a total over 28 days, however it is divided


@dataclass(frozen=True)
class Label:
    """One labelled indication of a product, with the patients and routes the label covers."""

    indication: str
    age_at_least: float | None = None  # inclusive: 2 means from the second birthday
    age_under: float | None = None  # exclusive: 18 means before the eighteenth birthday
    routes: frozenset[str] = frozenset({"intravenous"})
    dose: LabelDose | None = None
    note: str = ""

    def covers_age(self, age_years: float | None) -> bool:
        """Whether this label covers a patient of this age; an unknown age passes no age limit."""
        if self.age_at_least is None and self.age_under is None:
            return True
        if age_years is None:
            return False
        return (self.age_at_least is None or age_years >= self.age_at_least) and (
            self.age_under is None or age_years < self.age_under
        )

    def covers(self, age_years: float | None, route: str) -> bool:
        return route in self.routes and self.covers_age(age_years)


@dataclass(frozen=True)
class PrescribingInformation:
    """Where a product's label facts come from: the document, its revision, and when we checked it."""

    source: str
    revised: str
    checked: str = ""
    note: str = ""


@dataclass(frozen=True)
class Hcpcs:
    """The product's HCPCS Level II code (the billing unit is the code's, e.g. 500 mg), and where it was read."""

    code: str
    source: str


@dataclass(frozen=True)
class Price:
    """The committee's local price of one gram of a product: not a label fact, the hospital's own figure."""

    per_g: float
    currency: str  # ISO 4217, e.g. USD
    source: str  # who set it (the committee's local price, a contract)
    as_of: str  # YYYY-MM-DD


@dataclass(frozen=True)
class Product:
    name: str
    labels: tuple[Label, ...]
    manufacturer: str = ""
    concentration: str = ""
    routes: frozenset[str] = frozenset({"intravenous"})
    vial_sizes_g: tuple[float, ...] = ()
    prescribing_information: PrescribingInformation | None = None
    verified: bool = True  # False: label facts not confirmed; never approves
    note: str = ""
    hcpcs: Hcpcs | None = None
    price_per_g: Price | None = None  # None: no local price (cost is reported as "no price")
    rxnorm: tuple[str, ...] = ()  # RxNorm codes (RXCUI) an EHR order names this product by


@dataclass(frozen=True)
class Therapy:
    id: str
    name: str
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measure:
    """Something a request may report an observation of, in `unit` (canonical) or any of `units`.

    `units` maps each accepted unit to its value in the canonical unit (g/L: 1, mg/dL: 0.01);
    `low`..`high` bound a plausible value, in the canonical unit."""

    id: str
    name: str
    measures: str
    unit: str
    units: dict[str, float]
    low: float
    high: float
    source: str = ""
    better: str | None = None  # which way is improvement: "higher" or "lower" (a continuation compares)

    def to_canonical(self, value: float, unit: str) -> float:
        # Four decimals: finer than any threshold, and never exponent notation (durable-rules refuses it).
        return round(value * self.units[unit], 4)


@dataclass(frozen=True)
class Specialty:
    id: str
    name: str


@dataclass(frozen=True)
class Phase:
    """One phase of a disease, by whole months since diagnosis: [at_least, under)."""

    id: str
    name: str
    scheme: str
    months_at_least: int = 0
    months_under: int | None = None


@dataclass(frozen=True)
class SupplyPhase:
    """One supply phase: what it does with each tier's decisions (a word of PHASE_ACTIONS per tier)."""

    id: str
    description: str
    actions: dict[str, str]

    def action_for(self, tier: str | None) -> str:
        """What this phase does with a decision of a rule in `tier` (a rule without one: as usual)."""
        return self.actions.get(tier, "as_usual") if tier is not None else "as_usual"


@dataclass(frozen=True)
class Supply:
    """Priority tiers (the committee's names and meanings) and the supply phases that act on them.

    `default_phase` is the phase of an instance whose phase was never set, and decides every tier
    as usual."""

    source: str
    tiers: dict[str, str]  # tier -> what it means
    phases: dict[str, SupplyPhase]
    default_phase: str


@dataclass(frozen=True)
class OrderObservation:
    """An observation an EHR sends (by its LOINC code) and the request field it fills (`measure`: an id in measures.yaml)."""

    loinc: str
    fills: str  # the request field: patient.weight_kg, patient.height_cm, patient.pregnant, or measure
    measure: str | None = None
    units: dict[str, str] = field(default_factory=dict)  # UCUM code as sent -> the unit the field or measure takes
    pregnant_codes: frozenset[str] = frozenset()  # for patient.pregnant: value codes that mean pregnant
    not_pregnant_codes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class OrderEntry:
    """What order entry (CDS Hooks, service/decide/order_entry.py) reads from data/order_entry.yaml:
    the words that name IVIG in an order without a formulary product, the observations it reads,
    and the override reasons a prescriber may give for not following a card."""

    generic_names: tuple[str, ...]
    observations: tuple[OrderObservation, ...]
    override_system: str
    override_reasons: tuple[tuple[str, str], ...]  # (code, display)


@dataclass(frozen=True)
class Rulebook:
    name: str
    version: str
    effective: str
    path: Path
    digest: str
    diagnoses: dict[str, Diagnosis]
    rules: tuple[Rule, ...]
    products: dict[str, Product]
    indications: dict[str, str]
    therapies: dict[str, Therapy]
    sources: dict[str, Source]
    authorisations: Authorisations
    weight_rule: WeightRule
    rounding_rule: RoundingRule
    cited_sources: tuple[str, ...] = field(default=())
    abbreviations: dict[str, str] = field(default_factory=dict)
    qualifiers: tuple[str, ...] = ()  # words that change which condition a text names
    dosing_profiles: dict[str, DosingProfile] = field(default_factory=dict)
    default_dosing: str | None = None
    measures: dict[str, Measure] = field(default_factory=dict)
    specialties: dict[str, Specialty] = field(default_factory=dict)
    phases: dict[str, Phase] = field(default_factory=dict)
    supply: Supply | None = None  # priority tiers and supply phases; None: the rulebook declares none
    order_entry: OrderEntry | None = None  # data/order_entry.yaml, when the rulebook has one
    # The exact texts it was read from and its digest is computed over: the rulebook by its file
    # name, each reference data file as "data/<name>" (service.rulebook.reader.digest_texts).
    texts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def dosing_for(self, rule: Rule | None) -> DosingProfile:
        """The dose range a rule (or, for a case no rule covers, the rulebook) sets."""
        name = (rule.dosing if rule and rule.dosing else None) or self.default_dosing
        if name is None:
            raise KeyError("the rulebook names no default dosing profile")  # the reader requires one
        return self.dosing_profiles[name]

    def grants_authorisation(self, outcome: str) -> bool:
        """Whether a decision with this outcome grants the patient an authorisation."""
        return outcome in self.authorisations.granted_by

    def authorisation_days_for(self, rule: Rule | None, continuing: bool = False) -> int:
        """How long an initial (or continuing) authorisation lasts: the rule's period, else the rulebook's."""
        defaults = self.authorisations
        if continuing:
            return (rule.continuing_days if rule else None) or defaults.continuing_days or defaults.days
        return (rule.initial_days if rule else None) or defaults.days

    def is_maintenance(self, rule: Rule) -> bool:
        """A rule whose dosing repeats at an interval (not a one-off course)."""
        return self.dosing_for(rule).courses is None

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def continuation_measures(self) -> dict[str, tuple[str, ...]]:
        """Each rule's review-criteria measures: what a continuation of its authorisations needs measured."""
        return {r.id: tuple(t.measure for t in r.review_criteria.measures) for r in self.rules if r.review_criteria}

    def labels_for(self, indication: str) -> list[tuple[str, Label]]:
        """(product name, label) for every formulary product labelled for this indication."""
        return [(p.name, label) for p in self.products.values() for label in p.labels if label.indication == indication]

    def labelled_products(
        self, indication: str, age_years: float | None, product: str | None, route: str = "intravenous"
    ) -> tuple[str, ...]:
        """Formulary products whose label covers this indication for this patient, product and route."""
        return tuple(
            dict.fromkeys(
                name
                for name, label in self.labels_for(indication)
                if product in (None, name) and label.covers(age_years, route)
            )
        )

    def label_of(self, product: str | None, indication: str | None, route: str = "intravenous") -> Label | None:
        """The named product's label for this indication and route, if it has one."""
        item = self.products.get(product or "")
        return (
            next((label for label in item.labels if label.indication == indication and route in label.routes), None)
            if item
            else None
        )
