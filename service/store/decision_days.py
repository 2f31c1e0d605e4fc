"""The decision records counted a day, by outcome and rule (issue 17).

The stewardship report's decisions by outcome and by evidence grouped a year's ~600,000 decision
records by (outcome, rule): 1.5-3.9 s on SQLite, sorting them. The writer counts each committed
batch's decision records by (day, outcome, rule) and adds the counts to `decision_days` in the
batch's transaction, under the chain head's lock (so two writers never add to a day at once), and
the report sums the period's days: a period is whole days. Records are never rewritten (a
rows_bound record rewrites bound rows, not records), so a count only grows. The table is derived:
migration 0017 counts the records already written, and tests/test_reports.py checks that what the
service counts is what the migration derives.
"""

from collections import Counter

from sqlalchemy import text

NONE = ""  # an outcome or rule the record does not name (the columns are its primary key)

_ADD = text(
    "INSERT INTO decision_days (day, outcome, rule_id, decisions) VALUES (:day, :outcome, :rule_id, :decisions)"
    " ON CONFLICT (day, outcome, rule_id) DO UPDATE SET decisions = decision_days.decisions + excluded.decisions"
)


def add(connection, records: list[dict]):
    """Count the committed records that are decisions into their days (SQLite and PostgreSQL alike)."""
    counts = Counter(
        (fields["created_at"][:10], fields.get("outcome") or NONE, fields.get("rule_id") or NONE)
        for fields in records
        if fields["kind"] == "decision"
    )
    if counts:
        rows = [{"day": d, "outcome": o, "rule_id": r, "decisions": n} for (d, o, r), n in sorted(counts.items())]
        connection.execute(_ADD, rows)
