"""A pre-approval as the reports read it, copied out of its signed record (issue 17).

A pre-approval's grams, weights and doses per kg are in its record's signed content only; reading
them there with the database's JSON functions took about 40% of each report over a year. So the
pre-approval writes them, in the same transaction as its record, to `preapproval_figures`: one
narrow row keyed by the record's id, with the record's indexed fields the reports group by (the
audit store copies those), so a report reads this table alone. The row is derived from the record and adds nothing to it, so
it carries no binding of its own (the record is what the chain signs); migration 0015 fills it
from the records' content the same way, and can rebuild it at any time.
"""

from service.store.tables import preapproval_figures

# Each column and where its value is in the record's body ({"order": ..., "result": ...}).
PATHS = {
    "grams": ("result", "dose", "grams"),
    "rounded_grams": ("result", "dose", "rounded_grams"),
    "g_per_kg": ("result", "dose", "g_per_kg"),
    "actual_kg": ("result", "weight", "actual_kg"),
    "dosing_kg": ("result", "weight", "dosing_kg"),
    "ordered_g_per_kg": ("order", "dose", "g_per_kg"),
    "max_g_per_kg": ("result", "dosing_profile", "g_per_kg", "max"),
}


def _number(body: dict, path: tuple[str, ...]) -> float | None:
    value: object = body
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def row(body: dict) -> tuple:
    """(table, row) to bind with the pre-approval's record: its figures, as the report reads them."""
    result = body.get("result")
    dispense = isinstance(result, dict) and result.get("dispense") is True
    figures = {name: _number(body, path) for name, path in PATHS.items()}
    return preapproval_figures, {"dispense": dispense, **figures}
