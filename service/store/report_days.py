"""What the utilisation report sums, added up a day at a time for each grouping (issue 17).

A year's utilisation grouped and summed the period's ~600,000 decision records, 200,000
pre-approvals, 150,000 authorisations and 200,000 administrations (these joined to their
authorisations): 2-4 s on SQLite. So each of those rows, as it is written and in its transaction,
adds its figures to `report_days` under its day and each value it is grouped by (its code, rule,
outcome, requester or product), and the report sums a period's days for one grouping: a few
thousand rows (by month: every row is grouped by outcome, so those are summed by month). Only distinct patients, which do not add up, are counted
from the rows themselves (service/store/report_patients.py).

The groups are those the report lists: a decision or pre-approval by its record's code, rule,
outcome and requester; an authorisation by its basis as outcome and its decision's requester; what
was given by its authorisation's rule and basis and by its product, not by requester. The values
an authorisation or administration takes from another row are the ones report_patients reads when
the row is written. The table is derived: migration 0018 derives it from the four tables with the
same joins, and tests/test_reports.py checks that what the service adds is what it derives.
"""

from collections import defaultdict

from sqlalchemy import text

from service.store.tables import administrations, authorisations, preapproval_figures, report_days

NONE = ""  # a value the row does not name (the columns are the table's primary key)
OUTCOMES = tuple(c.name.removeprefix("decided_") for c in report_days.c if c.name.startswith("decided_"))
_KEY = tuple(c.name for c in report_days.primary_key)  # grouping, day, value, currency
FIGURES = tuple(c.name for c in report_days.c if c.name not in _KEY)
# The groupings each kind of row is counted in (every kind by outcome: the report by month sums those).
GROUPINGS = {
    "decision": ("code", "rule_id", "outcome", "requester"),
    "preapproval": ("code", "rule_id", "outcome", "requester"),
    "authorisation": ("code", "rule_id", "outcome", "requester"),
    "administration": ("code", "rule_id", "outcome", "product"),
}


class Tally:
    """One written row's figures under each of its groups; `source`, `source_id` as report_patients'."""

    __slots__ = ("source", "source_id", "day", "values", "currency", "figures")

    def __init__(self, source: str, source_id, day: str, values: dict, figures: dict, currency: str | None = None):
        self.source, self.source_id, self.day = source, str(source_id), day
        self.values, self.figures, self.currency = values, figures, currency or NONE

    def keys(self):
        for grouping in GROUPINGS[self.source]:
            yield (grouping, self.day, self.values.get(grouping) or NONE, self.currency)


def of_decision(record_id: int, fields: dict) -> Tally | None:
    """A decision record's tally (None: another kind of record; a pre-approval's is its figures')."""
    if fields.get("kind") != "decision":
        return None
    outcome = fields.get("outcome")
    figures = {"requests": 1} | ({f"decided_{outcome}": 1} if outcome in OUTCOMES else {})
    return Tally("decision", record_id, fields["created_at"][:10], fields, figures)


def of_bound(table, row: dict, grouped: dict | None) -> Tally | None:
    """The tally of a row written with a record: a pre-approval's figures (`row` with its record's
    fields), an authorisation or administration grouped as `grouped`, its report_patients row, is."""
    if table is preapproval_figures:
        grams = row.get("rounded_grams") if row.get("rounded_grams") is not None else row.get("grams")
        figures = {"preapprovals": 1, "grams_authorised": (grams or 0.0) if row.get("dispense") else 0.0}
        return Tally("preapproval", row["record_id"], row["created_at"][:10], row, figures)
    if grouped is None:
        return None
    if table is authorisations:
        return Tally("authorisation", row["id"], grouped["day"], grouped, {"authorisations": 1})
    if table is administrations:
        given, wasted, price = row["grams_given"], row["grams_wasted"], row.get("price_per_g")
        figures = {"administrations": 1, "grams_given": given, "grams_wasted": wasted}
        figures |= {"cost": (given + wasted) * price} if price is not None else {"grams_without_price": given + wasted}
        return Tally("administration", row["id"], grouped["day"], grouped, figures, row.get("currency"))
    return None


def _added(columns: tuple[str, ...]) -> str:
    """Each figure plus the one added; a cost stays null until a priced row adds to it."""
    return ", ".join(
        f"{c} = CASE WHEN report_days.{c} IS NULL THEN excluded.{c} WHEN excluded.{c} IS NULL THEN report_days.{c}"
        f" ELSE report_days.{c} + excluded.{c} END"
        if c == "cost"
        else f"{c} = report_days.{c} + excluded.{c}"
        for c in columns
    )


ADD = text(
    f"INSERT INTO report_days ({', '.join(_KEY + FIGURES)}) VALUES ({', '.join(':' + c for c in _KEY + FIGURES)})"
    f" ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {_added(FIGURES)}"
)


def rows(tallies: list[Tally | None]) -> list[dict]:
    """The rows to ADD for the tallies (None: a row without one): one a key, summed, in key order so
    two transactions never wait on each other's rows in opposite orders."""
    sums: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(FIGURES, 0) | {"cost": None})
    for tally in tallies:
        if tally is None:
            continue
        for key in tally.keys():
            into = sums[key]
            for name, amount in tally.figures.items():
                into[name] = amount if into[name] is None else into[name] + amount
    return [dict(zip(_KEY, key, strict=True)) | figures for key, figures in sorted(sums.items())]


def add(connection, tallies: list[Tally | None]):
    """Add the tallies to their days through Core (the audit writer runs ADD on its cursor)."""
    added = rows(tallies)
    if added:
        connection.execute(ADD, added)
