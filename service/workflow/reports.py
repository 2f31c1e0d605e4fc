"""Stewardship reports (issue 17): utilisation by a grouping, and the stewardship figures.

Both are computed in the database: each figure is one SQL aggregate (SQLAlchemy Core, the same
statement on SQLite and PostgreSQL) over indexed columns of the window's rows, so a report reads
a handful of rows whatever the size of the log. A pre-approval's figures that its signed content
holds (grams, weights, ordered dose) are read from preapproval_figures, where the pre-approval
copies them with its record's indexed fields (service/store/preapproval_figures.py).
Percentiles are computed in SQL too: the nearest-rank values, read by each value's rank in order
(row_number) among the window's resolved cases.

Groups that the rulebook names (a diagnosis, a rule's evidence strength) are mapped from the
stored codes and rule ids with the rulebook served now, in Python over the rows grouped by the
stored value. Distinct patients are counted from report_patients, each stored value's patients
read in order off an index (service/store/report_patients.py); a group of several stored values
counts its own. A figure that what is stored cannot give is reported as null with the reason,
never estimated.
"""

import datetime
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    TIMESTAMP,
    ColumnElement,
    FromClause,
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
from service.store.tables import (
    administrations,
    audit_records,
    authorisation_measurements,
    authorisations,
    decision_days,
    discrepancies,
    discrepancy_resolutions,
    preapproval_figures,
    report_patients,
    review_cases,
    review_resolutions,
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
    """The group key of each source for one grouping. SQL groups by the stored value (a code, a rule
    id, an outcome, a requester, a month; None: not attributable), and `key` maps it to the group
    the report lists, in Python over the grouped rows: a diagnosis for a code, an evidence label
    for a rule id. Only distinct patients need the mapping inside SQL, where `mapping` gives it as
    a temporary table to join."""

    def __init__(self, connection, rulebook: Rulebook, terminology, group: str):
        self.group = group
        self.rulebook = rulebook
        self.labels: dict[str, str] = {}
        self.mapped: dict[str, str] | None = None  # stored value -> group, for diagnosis and evidence
        self.terminology = terminology
        if group == "diagnosis":
            codes = _distinct(connection, audit_records.c.code) | _distinct(connection, authorisations.c.code)
            codes |= _distinct(connection, administrations.c.code)
            self.mapped = {code: self._diagnosis(code) for code in codes}
        if group == "evidence":
            rules = _distinct(connection, audit_records.c.rule_id) | _distinct(connection, authorisations.c.rule_id)
            self.mapped = {rule_id: evidence_label(rulebook, rule_id) for rule_id in rules}

    def key(self, value):
        """The group of a stored value (a code written after the mapping was read is mapped here too)."""
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

    def of_audit(self, a, *, outcome=True):
        """A decision or pre-approval record's stored value."""
        g = self.group
        if g == "diagnosis":
            return a.code
        if g in ("rule", "evidence"):
            return a.rule_id
        if g == "outcome":
            return a.outcome if outcome else None
        if g == "requester":
            return a.requester
        if g == "month":
            return func.substr(a.created_at, 1, 7)
        return None  # product: a decision request's product is not an indexed column

    def of_authorisation(self, u, requester=None):
        g = self.group
        if g == "diagnosis":
            return u.code
        if g in ("rule", "evidence"):
            return u.rule_id
        if g == "outcome":
            return u.basis
        if g == "requester":
            return requester
        if g == "month":
            return func.substr(u.created_at, 1, 7)
        return None  # product: an authorisation names a list of products (or any)

    def of_administration(self, d, u):
        g = self.group
        if g == "diagnosis":
            return d.code
        if g == "product":
            return d.product
        if g == "month":
            return func.substr(d.given_on, 1, 7)
        if g == "requester":
            return None  # who requested the authorisation is one more join away; not attributed
        return self.of_authorisation(u)

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


def _distinct(connection, column) -> set[str]:
    """A column's distinct values, read off its index."""
    return {v for (v,) in connection.execute(select(column).where(column.is_not(None)).distinct()) if v}


NOT_BY_PRODUCT = (
    "a decision request's and a pre-approval's product are kept in the signed record only, and an "
    "authorisation names a list of products (or any), so only what was given is grouped by product"
)
NOT_BY_REQUESTER = "what was given is recorded by the pharmacist, not the requester, so it is not grouped by requester"


def _sources(period: Period, keys: _Keys):
    """Per source: its aggregate select for this period, grouped by key."""
    a = audit_records.alias("a")
    u = authorisations.alias("u")
    r = audit_records.alias("r")
    d = administrations.alias("d")
    ua = authorisations.alias("ua")

    out = {}
    in_window = lambda t: and_(t.c.created_at >= period.start, t.c.created_at < period.end)  # noqa: E731

    key = keys.of_audit(a.c)
    if key is not None:
        label = key.label("key")
        counts = [func.sum(case((a.c.outcome == o, 1), else_=0)).label(o) for o in OUTCOMES]
        where = and_(a.c.kind == "decision", in_window(a))
        out["decisions"] = select(label, func.count().label("requests"), *counts).where(where).group_by(label)

    p = preapproval_figures.c
    key = keys.of_audit(p)
    if key is not None:
        label = key.label("key")
        where = and_(p.created_at >= period.start, p.created_at < period.end)
        out["preapprovals"] = (
            select(
                label,
                func.count().label("preapprovals"),
                func.sum(case((p.dispense, func.coalesce(p.rounded_grams, p.grams)), else_=None)).label(
                    "grams_authorised"
                ),
            )
            .where(where)
            .group_by(label)
        )

    key = keys.of_authorisation(u.c, requester=r.c.requester)
    if key is not None:
        label = key.label("key")
        joined = u.outerjoin(r, r.c.decision_id == u.c.decision_id) if keys.group == "requester" else u
        where = in_window(u)
        out["authorisations"] = (
            select(label, func.count().label("authorisations")).select_from(joined).where(where).group_by(label)
        )

    key = keys.of_administration(d.c, ua.c)
    if key is not None:
        label = key.label("key")
        joined = d.outerjoin(ua, ua.c.id == d.c.authorisation_id)
        where = and_(d.c.given_on >= period.since.isoformat(), d.c.given_on <= period.until.isoformat())
        opened = d.c.grams_given + d.c.grams_wasted
        out["administrations"] = (
            select(
                label,
                d.c.currency,
                func.count().label("administrations"),
                func.sum(d.c.grams_given).label("grams_given"),
                func.sum(d.c.grams_wasted).label("grams_wasted"),
                func.sum(case((d.c.price_per_g.is_not(None), opened * d.c.price_per_g), else_=None)).label("cost"),
                func.sum(case((d.c.price_per_g.is_(None), opened), else_=None)).label("unpriced"),
            )
            .select_from(joined)
            .where(where)
            .group_by(label, d.c.currency)
        )
    return out


# The report_patients column each grouping counts patients by, and which of its rows count: by
# product what was given only, by requester all but what was given (as the other figures).
_PATIENTS_BY = {
    "diagnosis": "code",
    "rule": "rule_id",
    "evidence": "rule_id",
    "outcome": "outcome",
    "requester": "requester",
    "product": "product",
    "month": "month",
}


def _patients(connection, keys: _Keys, period: Period) -> tuple[dict, int]:
    """Distinct patients per group and in all, from report_patients: each stored value's patients
    read in order off its index (value, patient, day), so the database counts them without sorting
    a year's rows; a group of several stored values (a diagnosis of two codes) counts its own."""
    t = report_patients.c
    column = t[_PATIENTS_BY[keys.group]]
    rows = [t.day >= period.since.isoformat(), t.day <= period.until.isoformat()]
    in_all = list(rows)  # the total's rows, read off ix_report_patients_patient (patient, day, source, ...)
    if keys.group == "product":  # what was given only: the rows with a product (an administration's have one)
        rows.append(t.product.is_not(None))
        in_all.append(t.source == "administration")
    if keys.group == "requester":
        rows.append(t.source != "administration")
        in_all.append(t.source != "administration")
    patients = func.count(t.patient_ref_hash.distinct())
    by_value = dict(connection.execute(select(column, patients).where(*rows).group_by(column)).all())
    # The total as the count of a DISTINCT subquery: SQLite skips through the patient index, and
    # PostgreSQL hashes (count(DISTINCT) would sort every row).
    distinct = select(t.patient_ref_hash).where(*in_all).distinct().subquery("distinct_patients")
    total = int(connection.execute(select(func.count()).select_from(distinct)).scalar() or 0)
    values: dict = {}
    for value in by_value:
        values.setdefault(keys.key(value), []).append(value)
    counts = {key: by_value[stored[0]] for key, stored in values.items() if len(stored) == 1}
    several = {key: stored for key, stored in values.items() if len(stored) > 1}
    if several:  # one pass over the period's rows in patient order (ix_report_patients_patient), no sort
        has = [
            func.max(case((column.in_(stored), 1), else_=0)).label(f"g{n}") for n, stored in enumerate(several.values())
        ]
        per_patient = select(*has).where(*rows).group_by(t.patient_ref_hash).subquery("per_patient")
        found = connection.execute(select(*(func.sum(c) for c in per_patient.c))).one()
        counts |= {key: int(n or 0) for key, n in zip(several, found, strict=True)}
    return counts, total


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
        keys = _Keys(connection, rulebook, terminology, group)
        sources = _sources(period, keys)
        groups: dict = {}
        total = _empty_group()

        def add(value, figures: dict):
            key = keys.key(value)
            for target in (groups.setdefault(key, _empty_group()), total):
                for name, value in figures.items():
                    if name == "decisions":
                        for outcome, n in value.items():
                            target["decisions"][outcome] += n
                    elif name == "cost":
                        for currency, amount in value.items():
                            target["cost"][currency] = target["cost"].get(currency, 0.0) + amount
                    else:
                        target[name] += value

        if "decisions" in sources:
            for row in connection.execute(sources["decisions"]):
                m = row._mapping
                add(m["key"], {"requests": m["requests"], "decisions": {o: int(m[o] or 0) for o in OUTCOMES}})
        if "preapprovals" in sources:
            for row in connection.execute(sources["preapprovals"]):
                add(row.key, {"preapprovals": row.preapprovals, "grams_authorised": float(row.grams_authorised or 0)})
        if "authorisations" in sources:
            for row in connection.execute(sources["authorisations"]):
                add(row.key, {"authorisations": row.authorisations})
        if "administrations" in sources:
            for row in connection.execute(sources["administrations"]):
                add(
                    row.key,
                    {
                        "administrations": row.administrations,
                        "grams_given": float(row.grams_given or 0),
                        "grams_wasted": float(row.grams_wasted or 0),
                        "grams_without_price": float(row.unpriced or 0),
                        "cost": {row.currency: float(row.cost)} if row.cost is not None else {},
                    },
                )
        patients, total["patients"] = _patients(connection, keys, period)
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
    r = review_resolutions.c
    opened = and_(c.opened_at >= period.start, c.opened_at < period.end)
    if dialect == "postgresql":
        # Every case's first resolution grouped once and hash-joined to the period's cases: at a
        # year of 150,000 cases 0.3 s, against 0.5-0.66 s probing the index once a case.
        firsts = select(r.case_id, func.min(r.created_at).label("resolved_at")).group_by(r.case_id).subquery()
        first_at: ColumnElement = firsts.c.resolved_at
        cases_with: FromClause = review_cases.outerjoin(firsts, firsts.c.case_id == c.id)
    else:
        # Each case's first resolution read off ix_resolution_case_time for the period's cases only
        # (SQLite has no hash aggregate: grouping every resolution was slower).
        first_at = select(func.min(r.created_at)).where(r.case_id == c.id).scalar_subquery()
        cases_with = review_cases
    # Once, materialised: not looked up again by each figure that reads it.
    found = (
        select(c.opened_at, c.due_at, c.status, first_at.label("resolved_at"))
        .select_from(cases_with)
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
