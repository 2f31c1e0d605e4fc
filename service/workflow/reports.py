"""Stewardship reports (issue 17): utilisation by a grouping, and the stewardship figures.

Both are computed in the database: each figure is one SQL aggregate (SQLAlchemy Core, the same
statement on SQLite and PostgreSQL) over indexed columns of the window's rows, so a report reads
a handful of rows whatever the size of the log. A pre-approval's figures that its signed content
holds (grams, weights, ordered dose) are read from preapproval_figures, where the pre-approval
copies them with its record's indexed fields (service/store/preapproval_figures.py).
Percentiles are computed in SQL too: the nearest-rank values, read by each value's rank in order
(row_number) among the window's resolved cases, each case's first resolution kept on the case.

The utilisation figures that add up are summed from report_days, where each row written adds
them under its day and the values it is grouped by (service/store/report_days.py). Groups that
the rulebook names (a diagnosis, a rule's evidence strength) are mapped from the stored codes and
rule ids with the rulebook served now, in Python over the rows grouped by the stored value.
Distinct patients are counted from report_patients, each stored value's patients read in order
off an index (service/store/report_patients.py); groups of several stored values are counted in
one pass in patient order. A figure that what is stored cannot give is reported as null with the
reason, never estimated.
"""

import datetime
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    or_,
    select,
    text,
)

from service import clock
from service.decide.request import RequestError
from service.rulebook import icd10
from service.rulebook.model import OUTCOMES, STRENGTHS, Rulebook
from service.store import report_days as report_days_module
from service.store.tables import (
    administrations,
    authorisation_measurements,
    authorisations,
    decision_days,
    discrepancies,
    discrepancy_resolutions,
    preapproval_figures,
    report_days,
    report_patients,
    review_cases,
)
from service.workflow.cases import OPEN_STATUSES

_TIMESTAMPTZ = TIMESTAMP(timezone=True)

GROUPS = ("diagnosis", "rule", "outcome", "evidence", "product", "requester", "month")
ARGUMENTS = ("since", "until", "group_by")
DEFAULT_DAYS = 365  # the period when `since` is not given: the year up to `until`
MAX_DAYS = 3660
# Discrepancy kinds that put an administration outside the authorised dose and interval, and the
# kinds that mean it could not be checked against them.
OUTSIDE_DOSE_OR_INTERVAL = ("dose", "above_preapproved", "interval", "courses")
NOT_CHECKED = ("no_authorisation", "integrity", "dose_unchecked")
NO_GROUP = {
    "diagnosis": "no diagnosis code",
    "rule": "no rule",
    "outcome": "no decision",
    "evidence": "no rule",
    "product": "no product",
    "requester": "no requester",
    "month": "no month",
}
UNMAPPED_RULE = "rule not in the rulebook served now"
CAPTURE_TARGET = 0.9  # NHS England's commissioning criteria ask for outcomes on at least 90% of episodes
TURNAROUND_BUCKETS = ((24, "under 1 day"), (72, "1 to 3 days"), (168, "3 to 7 days"), (None, "7 days or more"))


@dataclass(frozen=True)
class Period:
    """Whole days, both inclusive."""

    since: datetime.date
    until: datetime.date

    @property
    def start(self) -> str:
        return clock.day_start(self.since)

    @property
    def end(self) -> str:
        return clock.day_start(self.until + datetime.timedelta(days=1))

    def to_dict(self) -> dict:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}


def _day(value: str, field: str) -> datetime.date:
    try:
        if len(value) != 10:
            raise ValueError
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise RequestError(
            "invalid_value", f"{field} must be a date as YYYY-MM-DD, found {value[:40]!r}", field
        ) from None


def period_from(args: Mapping[str, str], today: datetime.date) -> Period:
    """The report's period from `since` and `until` (dates, inclusive): by default the year to today."""
    until = _day(args["until"], "until") if args.get("until") else today
    since = _day(args["since"], "since") if args.get("since") else until - datetime.timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise RequestError("out_of_range", f"since ({since}) is after until ({until})", "since")
    if (until - since).days >= MAX_DAYS:
        raise RequestError("out_of_range", f"the period is longer than {MAX_DAYS} days", "since")
    return Period(since, until)


def group_from(args: Mapping[str, str]) -> str:
    group = args.get("group_by") or "diagnosis"
    if group not in GROUPS:
        raise RequestError(
            "unknown_value", f"group_by must be one of {', '.join(GROUPS)}, found {group[:40]!r}", "group_by"
        )
    return group


def _hours_between(later, earlier, dialect: str):
    """Hours between two stored UTC stamps, in SQL."""
    if dialect == "postgresql":
        seconds = func.extract("epoch", cast(later, _TIMESTAMPTZ) - cast(earlier, _TIMESTAMPTZ))
        return seconds / 3600.0
    return (func.julianday(later) - func.julianday(earlier)) * 24.0


def evidence_label(rulebook: Rulebook, rule_id: str) -> str:
    """A rule's evidence strengths as the rulebook served now grades them ("controlled+limited")."""
    rule = rulebook.rule(rule_id)
    if rule is None:
        return UNMAPPED_RULE
    found = {e.strength for e in rule.evidence}
    return "+".join(s for s in STRENGTHS if s in found) or "no evidence listed"


class _Keys:
    """The group of each stored value for one grouping. SQL groups by the stored value (a code, a
    rule id, an outcome, a requester, a product, a month; None: not attributable), and `key` maps
    it to the group the report lists, in Python over the grouped rows: a diagnosis for a code, an
    evidence label for a rule id."""

    def __init__(self, rulebook: Rulebook, terminology, group: str):
        self.group = group
        self.rulebook = rulebook
        self.labels: dict[str, str] = {}
        # stored value -> group, for diagnosis and evidence, filled as values are met
        self.mapped: dict[str, str] | None = {} if group in ("diagnosis", "evidence") else None
        self.terminology = terminology

    def key(self, value):
        """The group of a stored value."""
        if value is None or self.mapped is None:
            return value
        if value not in self.mapped:
            self.mapped[value] = (
                evidence_label(self.rulebook, value) if self.group == "evidence" else self._diagnosis(value)
            )
        return self.mapped[value]

    def _diagnosis(self, code: str) -> str:
        """The rulebook's diagnosis of a code (its id), else "code:" and the code; its label noted."""
        owner = self.terminology.diagnosis_of(code)
        if owner is not None:
            self.labels[owner] = self.rulebook.diagnoses[owner].name
            return owner
        self.labels["code:" + code] = f"{icd10.dotted(code)} (no diagnosis in the rulebook)"
        return "code:" + code

    def label(self, key) -> str:
        if key is None:
            return NO_GROUP[self.group]
        if self.group == "diagnosis":
            return self.labels.get(key, key)
        if self.group == "outcome" and key == "review":
            return "approved on review"
        return str(key).replace("_", " ") if self.group == "outcome" else str(key)


@contextmanager
def _reading(instance):
    """A connection for one report. PostgreSQL's JIT compiles each large aggregate before running it
    (about 1 s a statement at a year of history, more than most take to run), so it is off for the
    report's transaction."""
    with instance.sql_engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL jit = off"))
        yield connection


NOT_BY_PRODUCT = (
    "a decision request's and a pre-approval's product are kept in the signed record only, and an "
    "authorisation names a list of products (or any), so only what was given is grouped by product"
)
NOT_BY_REQUESTER = "what was given is recorded by the pharmacist, not the requester, so it is not grouped by requester"


# The stored value each grouping groups by: a report_patients column, and the report_days grouping
# of that name (by month, report_days' outcome grouping summed by the day's month: every row has one).
_GROUPED_BY = {
    "diagnosis": "code",
    "rule": "rule_id",
    "evidence": "rule_id",
    "outcome": "outcome",
    "requester": "requester",
    "product": "product",
    "month": "month",
}


def _summed(connection, group: str, period: Period):
    """Per stored value (a code, a rule id, an outcome, a requester, a product, a month; None: not
    attributable) and currency: the period's figures, summed from its days in report_days."""
    t = report_days.c
    value = func.substr(t.day, 1, 7) if group == "month" else t.value
    figures = [func.sum(c).label(c.name) for c in t if c.name in report_days_module.FIGURES]
    rows = connection.execute(
        select(value.label("value"), t.currency, *figures)
        .where(
            t.grouping == ("outcome" if group == "month" else _GROUPED_BY[group]),
            t.day >= period.since.isoformat(),
            t.day <= period.until.isoformat(),
        )
        .group_by(value, t.currency)
    )
    for row in rows:
        m = row._mapping
        yield (
            m["value"] or None,
            {
                "requests": int(m["requests"]),
                "decisions": {o: int(m[f"decided_{o}"]) for o in OUTCOMES},
                "preapprovals": int(m["preapprovals"]),
                "grams_authorised": float(m["grams_authorised"]),
                "authorisations": int(m["authorisations"]),
                "administrations": int(m["administrations"]),
                "grams_given": float(m["grams_given"]),
                "grams_wasted": float(m["grams_wasted"]),
                "grams_without_price": float(m["grams_without_price"]),
                "cost": {m["currency"] or None: float(m["cost"])} if m["cost"] is not None else {},
            },
        )


# A group of several stored values (a diagnosis of two codes, an evidence label of many rules)
# counts its patients with each value's bit, up to this many groups a pass (a 64-bit sum).
BITS_A_PASS = 62


def _patients(connection, keys: _Keys, period: Period, stored: set) -> tuple[dict, int]:
    """Distinct patients per group and in all, from report_patients, for the groups of the stored
    values `stored`. A group of one value counts its patients read in order off that value's
    index (value, patient, day), so the database counts them without sorting a year's rows. Groups
    of several values are counted in one pass over the period's rows in patient order: each row's
    value is looked up in a temporary table of its group's bit, each patient's groups are the sum
    of its distinct bits, and that pass counts the patients in all too."""
    t = report_patients.c
    column = t[_GROUPED_BY[keys.group]]
    rows = [t.day >= period.since.isoformat(), t.day <= period.until.isoformat()]
    in_all = rows  # the total's rows, read off ix_report_patients_patient (patient, day, source, ...)
    if keys.group == "product":  # what was given only: the rows with a product (an administration's have one)
        rows, in_all = [*rows, t.product.is_not(None)], [*rows, t.source == "administration"]
    if keys.group == "requester":
        rows = in_all = [*rows, t.source != "administration"]
    values: dict = {}
    for value in stored:
        values.setdefault(keys.key(value), []).append(value)
    several = {key: group for key, group in values.items() if len(group) > 1}
    if several and len(values) <= BITS_A_PASS:
        several = values  # one pass counts every group, and the total
    counts: dict = {}
    if len(several) < len(values):
        patients = func.count(t.patient_ref_hash.distinct())
        by_value = dict(connection.execute(select(column, patients).where(*rows).group_by(column)).all())
        counts = {key: by_value.get(group[0], 0) for key, group in values.items() if key not in several}
    total = None
    listed = list(several.items())
    for first in range(0, len(listed), BITS_A_PASS):
        found, total = _patients_of_several(connection, column, rows, dict(listed[first : first + BITS_A_PASS]))
        counts |= found
    if total is None or in_all is not rows:  # a pass over other rows than the total's
        # The count of a DISTINCT subquery: SQLite skips through the patient index, and PostgreSQL
        # hashes (count(DISTINCT) would sort every row).
        distinct = select(t.patient_ref_hash).where(*in_all).distinct().subquery("distinct_patients")
        total = int(connection.execute(select(func.count()).select_from(distinct)).scalar() or 0)
    return counts, total


def _patients_of_several(connection, column, rows: list, groups: dict) -> tuple[dict, int]:
    """Patients per group (at most BITS_A_PASS groups, each listing its stored values; None: the
    rows without one), and patients in all."""
    bits = Table(
        "report_group_bits",
        MetaData(),
        Column("value", String(128), primary_key=True),
        Column("bit", BigInteger, nullable=False),
        prefixes=["TEMPORARY"],
        sqlite_with_rowid=False,  # a lookup a row: the key's b-tree holds the bit
    )
    bits.drop(connection, checkfirst=True)  # on SQLite a failed report's is left on its connection
    bits.create(connection)
    bit_of = {key: 1 << n for n, key in enumerate(groups)}
    listed = [{"value": v, "bit": bit_of[key]} for key, stored in groups.items() for v in stored if v is not None]
    if listed:
        connection.execute(bits.insert(), listed)
    t = report_patients.c
    bit = case((column.is_(None), bit_of.get(None, 0)), else_=bits.c.bit)
    mask = (
        select(cast(func.sum(bit.distinct()), BigInteger).label("mask"))
        .select_from(report_patients.outerjoin(bits, bits.c.value == column))
        .where(*rows)
        .group_by(t.patient_ref_hash)
        .subquery("per_patient")
    )
    has = [func.sum(case((mask.c.mask.op("&")(b) != 0, 1), else_=0)) for b in bit_of.values()]
    total, *found = connection.execute(select(func.count(), *has)).one()
    bits.drop(connection)
    return {key: int(n or 0) for key, n in zip(groups, found, strict=True)}, int(total)


# The figures of a utilisation group (and of the total), in the order the API lists them.
FIGURES = (
    "requests",
    "decisions",
    "preapprovals",
    "authorisations",
    "administrations",
    "patients",
    "grams_authorised",
    "grams_given",
    "grams_wasted",
    "grams_opened",
    "cost",
    "grams_without_price",
    "cost_note",
)


def _empty_group() -> dict:
    return {
        "requests": 0,
        "decisions": dict.fromkeys(OUTCOMES, 0),
        "preapprovals": 0,
        "authorisations": 0,
        "administrations": 0,
        "patients": 0,
        "grams_authorised": 0.0,
        "grams_given": 0.0,
        "grams_wasted": 0.0,
        "cost": {},
        "grams_without_price": 0.0,
    }


def _g(value) -> float:
    return round(float(value or 0), 2)


def utilisation(instance, rulebook: Rulebook, terminology, period: Period, group: str) -> dict:
    """Requests, decisions by outcome, pre-approvals, authorisations, administrations, patients,
    grams (authorised, given, wasted) and cost, per group, with the totals."""
    with _reading(instance) as connection:
        keys = _Keys(rulebook, terminology, group)
        groups: dict = {}
        total = _empty_group()
        stored = set()  # the values the period's rows are grouped by
        for value, figures in _summed(connection, group, period):
            stored.add(value)
            for target in (groups.setdefault(keys.key(value), _empty_group()), total):
                for name, amount in figures.items():
                    if name == "decisions":
                        for outcome, n in amount.items():
                            target["decisions"][outcome] += n
                    elif name == "cost":
                        for currency, cost in amount.items():
                            target["cost"][currency] = target["cost"].get(currency, 0.0) + cost
                    else:
                        target[name] += amount
        patients, total["patients"] = _patients(connection, keys, period, stored)
        for key, n in patients.items():
            groups.setdefault(key, _empty_group())["patients"] = n

    listed = [
        {"key": key, "label": keys.label(key), **_shown(figures)}
        for key, figures in sorted(groups.items(), key=lambda item: (item[0] is None, str(item[0])))
    ]
    notes = []
    if group == "product":
        notes.append(f"by product: {NOT_BY_PRODUCT}")
    if group == "requester":
        notes.append(NOT_BY_REQUESTER)
    if group == "evidence":
        notes.append("evidence: the strengths of each rule's evidence as the rulebook served now grades them")
    if group == "outcome":
        notes.append(
            "outcome: decisions by their outcome; authorisations and what was given under them by the "
            "authorisation's basis (approved on review: a reviewer's approval); pre-approvals by the decision they made"
        )
    return {
        "period": period.to_dict(),
        "group_by": group,
        "groups": listed,
        "total": _shown(total),
        "notes": [
            "grams authorised: the dose of each pre-approval that said dispense, in whole vials where a "
            "combination fits, else exact; authorisations themselves grant a dose per kg, not grams",
            "cost: grams opened (given and wasted) x the committee's local price per gram when recorded "
            "(data/products.yaml price_per_g); grams_without_price were given with no price known",
            "patients: distinct patients among the decisions, pre-approvals, authorisations and administrations",
            *notes,
        ],
    }


def _shown(figures: dict) -> dict:
    shown = dict(figures)
    for name in ("grams_authorised", "grams_given", "grams_wasted", "grams_without_price"):
        shown[name] = _g(figures[name])
    shown["grams_opened"] = _g(figures["grams_given"] + figures["grams_wasted"])
    shown["cost"] = [
        {"currency": currency, "amount": round(amount, 2)} for currency, amount in sorted(figures["cost"].items())
    ]
    if not shown["cost"] and shown["grams_opened"]:
        shown["cost_note"] = "no price: data/products.yaml gives no price_per_g for what was given"
    elif shown["grams_without_price"]:
        shown["cost_note"] = f"{shown['grams_without_price']:g} g given with no price are not in the cost"
    else:
        shown["cost_note"] = ""
    return shown


# The CSV's columns: each figure, the decisions one per outcome and the cost with its currency.
_CSV_COLUMNS = {"decisions": tuple(f"decisions_{o}" for o in OUTCOMES), "cost": ("cost", "currency")}
UTILISATION_CSV = ("group", "label", *(column for figure in FIGURES for column in _CSV_COLUMNS.get(figure, (figure,))))


def utilisation_rows(report: dict):
    """The utilisation report as CSV rows (the header first); a group with several currencies has a row each."""
    yield UTILISATION_CSV
    for item in [*report["groups"], {"key": "total", "label": "total", **report["total"]}]:
        costs = item["cost"] or [{"currency": "", "amount": ""}]
        for cost in costs:
            yield (
                "" if item["key"] is None else item["key"],
                item["label"],
                item["requests"],
                *(item["decisions"][o] for o in OUTCOMES),
                item["preapprovals"],
                item["authorisations"],
                item["administrations"],
                item["patients"],
                item["grams_authorised"],
                item["grams_given"],
                item["grams_wasted"],
                item["grams_opened"],
                cost["amount"],
                cost["currency"],
                item["grams_without_price"],
                item["cost_note"],
            )


def stewardship_rows(report: dict):
    """The stewardship figures as (figure, value) rows, the header first: each figure named by its
    path in the report ("adherence.share_within"; a listed bucket by its label); null stays empty."""
    yield ("figure", "value")
    yield from _leaves("", report)


def _leaves(path: str, value):
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _leaves(f"{path}.{name}" if path else name, inner)
    elif isinstance(value, list):
        for item in value:
            rest = {name: inner for name, inner in item.items() if name != "label"}
            yield from _leaves(f"{path}.{item['label']}", rest if len(rest) != 1 else next(iter(rest.values())))
    else:
        yield (path, "" if value is None else value)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def stewardship(instance, rulebook: Rulebook, period: Period) -> dict:
    """The stewardship figures for the period (see the README's Reports section for each)."""
    dialect = instance.sql_engine.dialect.name
    now = clock.utc_now()
    with _reading(instance) as connection:
        t = decision_days.c
        by_outcome: dict[str | None, int] = {o: 0 for o in OUTCOMES}
        by_evidence: dict[str, int] = {}
        # The period's decisions by outcome and rule, summed over its days (a period is whole days):
        # each sums into both figures.
        days = and_(t.day >= period.since.isoformat(), t.day <= period.until.isoformat())
        grouped = select(t.outcome, t.rule_id, func.sum(t.decisions)).where(days).group_by(t.outcome, t.rule_id)
        for outcome, rule_id, n in connection.execute(grouped):
            n = int(n)
            by_outcome[outcome or None] = by_outcome.get(outcome or None, 0) + n
            # Mapped here, a few grouped rows: not the distinct rule ids of the whole log read first.
            strength = evidence_label(rulebook, rule_id) if rule_id else NO_GROUP["evidence"]
            by_evidence[strength] = by_evidence.get(strength, 0) + n
        decisions = sum(by_outcome.values())
        figures = {
            "period": period.to_dict(),
            "decisions": {
                "total": decisions,
                "by_outcome": {o: {"count": n, "share": _share(n, decisions)} for o, n in by_outcome.items()},
                "by_evidence": {s: {"count": n, "share": _share(n, decisions)} for s, n in sorted(by_evidence.items())},
                "evidence_note": "the strengths of each deciding rule's evidence as the rulebook served now grades them",
            },
            "adherence": _adherence(connection, period),
            "preapprovals": _preapproval_figures(connection, period),
            "review_turnaround": _turnaround(connection, period, dialect, now),
            "outcome_capture": _capture(connection, rulebook, period),
            "discrepancies": _open_discrepancies(connection, period),
        }
    return figures


def _adherence(connection, period: Period) -> dict:
    d = administrations.c
    x = discrepancies.c
    given = and_(d.given_on >= period.since.isoformat(), d.given_on <= period.until.isoformat())
    # The period's administrations counted off their index; the kinds of discrepancy each one has
    # read from the discrepancies (far fewer rows), each joined to its administration for the day.
    flagged = (
        select(
            func.max(case((x.kind.in_(NOT_CHECKED), 1), else_=0)).label("unchecked"),
            func.max(case((x.kind.in_(OUTSIDE_DOSE_OR_INTERVAL), 1), else_=0)).label("outside"),
            func.max(case((x.kind == "dose", 1), else_=0)).label("dose"),
        )
        .select_from(discrepancies.join(administrations, d.id == x.administration_id))
        .where(given)
        .group_by(x.administration_id)
        .subquery("flagged")
    )
    f = flagged.c
    row = connection.execute(
        select(
            select(func.count()).select_from(administrations).where(given).scalar_subquery(),
            func.sum(f.unchecked),
            func.sum(case((and_(f.unchecked == 0, f.outside == 1), 1), else_=0)),
            func.sum(f.dose),
        )
    ).one()
    total, not_checked, outside_n, over_maximum = (int(v or 0) for v in row)
    checked = total - not_checked
    return {
        "administrations": total,
        "checked": checked,
        "not_checked": not_checked,
        "within_dose_and_interval": checked - outside_n,
        "outside_dose_or_interval": outside_n,
        "share_within": _share(checked - outside_n, checked),
        "above_maximum": over_maximum,
        "note": "within: no discrepancy of kind "
        + ", ".join(OUTSIDE_DOSE_OR_INTERVAL)
        + "; not checked (left out of the share): "
        + ", ".join(NOT_CHECKED),
    }


def _preapproval_figures(connection, period: Period) -> dict:
    f = preapproval_figures.c
    dispensed = f.dispense
    ordered, maximum, per_kg = f.ordered_g_per_kg, f.max_g_per_kg, f.g_per_kg
    actual, dosing, exact, rounded = f.actual_kg, f.dosing_kg, f.grams, f.rounded_grams
    weighed = and_(dispensed, actual.is_not(None), dosing.is_not(None), per_kg.is_not(None))
    both = and_(dispensed, exact.is_not(None), rounded.is_not(None))
    row = connection.execute(
        select(
            func.count(),
            func.sum(case((dispensed, 1), else_=0)),
            func.sum(case((and_(ordered.is_not(None), maximum.is_not(None), ordered > maximum), 1), else_=0)),
            func.sum(case((weighed, 1), else_=0)),
            func.sum(case((weighed, (actual - dosing) * per_kg), else_=None)),
            func.sum(case((both, 1), else_=0)),
            func.sum(case((both, exact), else_=None)),
            func.sum(case((both, rounded), else_=None)),
        ).where(f.created_at >= period.start, f.created_at < period.end)
    ).one()
    total, dispense, above, weighed_n, saved, rounded_n, exact_g, rounded_g = row
    return {
        "preapprovals": int(total or 0),
        "dispensed": int(dispense or 0),
        "orders_above_maximum": int(above or 0),
        "orders_above_maximum_note": "orders whose dose per kg is above the maximum of the dosing profile applied",
        "weight_saving": {
            "preapprovals": int(weighed_n or 0),
            "grams_saved": _g(saved),
            "note": "dispensed pre-approvals that computed both weights: (actual - dose-determining kg) x g/kg",
        },
        "rounding": {
            "preapprovals": int(rounded_n or 0),
            "grams_exact": _g(exact_g),
            "grams_rounded": _g(rounded_g),
            "grams_difference": _g(float(rounded_g or 0) - float(exact_g or 0)),
            "note": "dispensed pre-approvals whose dose was rounded to whole vials: rounded minus exact grams",
        },
    }


def _turnaround(connection, period: Period, dialect: str, now: str) -> dict:
    c = review_cases.c
    opened = and_(c.opened_at >= period.start, c.opened_at < period.end)
    # Once, materialised, off ix_review_opened: each case with its first resolution's time, which
    # the case keeps (migration 0019), not looked up again by each figure that reads it.
    found = (
        select(c.opened_at, c.due_at, c.status, c.first_resolved_at.label("resolved_at"))
        .where(opened)
        .cte("found")
        .prefix_with("MATERIALIZED")
    )
    hours = _hours_between(found.c.resolved_at, found.c.opened_at, dialect).label("hours")
    cases = select(found, hours).cte("cases")
    k = cases.c
    # Nearest-rank percentiles in the same statement: each resolved case's rank in order of hours,
    # and the hours at rank ceil(n x permille / 1000) (integers, so no float drift).
    ranked = (
        select(k.hours, func.row_number().over(order_by=k.hours).label("rank"), func.count().over().label("n"))
        .where(k.hours.is_not(None))
        .cte("ranked")
    )
    at_rank = [
        select(ranked.c.hours).where(ranked.c.rank == (ranked.c.n * permille + 999) // 1000).scalar_subquery()
        for permille in (500, 900)
    ]
    row = connection.execute(
        select(
            func.count(),
            func.sum(case((k.resolved_at.is_not(None), 1), else_=0)),
            func.sum(case((and_(k.due_at.is_not(None), k.status.in_(OPEN_STATUSES), k.due_at < now), 1), else_=0)),
            func.sum(case((and_(k.due_at.is_not(None), k.resolved_at > k.due_at), 1), else_=0)),
            *(
                func.sum(case((and_(k.hours.is_not(None), *_bucket(k.hours, i)), 1), else_=0))
                for i in range(len(TURNAROUND_BUCKETS))
            ),
            *at_rank,
        )
    ).one()
    total, resolved, overdue, late, *buckets = (int(v or 0) for v in row[: -len(at_rank)])
    median, p90 = (None if v is None else round(float(v), 1) for v in row[-len(at_rank) :])
    return {
        "cases_opened": total,
        "resolved": resolved,
        "median_hours": median,
        "p90_hours": p90,
        "overdue_open": overdue,
        "resolved_after_due": late,
        "buckets": [{"label": label, "cases": n} for (_, label), n in zip(TURNAROUND_BUCKETS, buckets, strict=True)],
        "note": "cases opened in the period, hours from opening to the first resolution (approved, denied or "
        "more information asked); nearest-rank percentiles computed in SQL; overdue: open past due_at now",
    }


def _bucket(hours, index: int):
    low = TURNAROUND_BUCKETS[index - 1][0] if index else None
    high = TURNAROUND_BUCKETS[index][0]
    return [*([hours >= low] if low is not None else []), *([hours < high] if high is not None else [])]


def _capture(connection, rulebook: Rulebook, period: Period) -> dict:
    measured_rules = sorted(rule for rule, measures in rulebook.continuation_measures().items() if measures)
    u = authorisations.c
    nxt = authorisations.alias("next")
    m = authorisation_measurements.c
    continued = exists().where(
        nxt.c.previous_id == u.id, nxt.c.created_at >= period.start, nxt.c.created_at < period.end
    )
    due = and_(u.valid_until >= period.since.isoformat(), u.valid_until <= period.until.isoformat())
    measured = exists().where(m.authorisation_id == u.id, m.taken_on >= u.valid_from)
    row = connection.execute(
        select(func.count(), func.sum(case((measured, 1), else_=0))).where(
            u.rule_id.in_(measured_rules), or_(due, continued)
        )
    ).one()
    total, with_measure = int(row[0] or 0), int(row[1] or 0)
    share = _share(with_measure, total)
    return {
        "authorisations": total,
        "with_measurement": with_measure,
        "share": share,
        "target": CAPTURE_TARGET,
        "meets_target": None if share is None else share >= CAPTURE_TARGET,
        "note": "authorisations under rules whose review criteria name outcome measures, due (valid_until) "
        "in the period or continued by an authorisation granted in it, with a measurement taken since they began",
    }


def _open_discrepancies(connection, period: Period) -> dict:
    x = discrepancies.c
    resolved = exists().where(discrepancy_resolutions.c.discrepancy_id == x.id)
    by_kind = dict(connection.execute(select(x.kind, func.count()).where(~resolved).group_by(x.kind)).all())
    recorded = connection.execute(
        select(func.count()).where(x.created_at >= period.start, x.created_at < period.end)
    ).scalar()
    return {
        "open": sum(by_kind.values()),
        "open_by_kind": dict(sorted(by_kind.items())),
        "recorded_in_period": int(recorded or 0),
        "note": "open: every discrepancy without a resolution now, whenever it was recorded",
    }
