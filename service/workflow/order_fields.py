"""Requests and orders as flat named fields: the columns of an infusion-list CSV, and the
fields of the console's forms. One table maps each flat name to its place in the JSON request,
so a CSV row, a form and the API are read alike, and an API error names the form field.
"""

import re

from service.decide.request import RequestError

# (flat name, dotted path in the JSON request or order, kind of value)
COLUMNS = (
    ("patient_ref", "patient.ref", "text"),
    ("age_years", "patient.age_years", "number"),
    ("sex", "patient.sex", "text"),
    ("pregnant", "patient.pregnant", "yes_no"),
    ("weight_kg", "patient.weight_kg", "number"),
    ("height_cm", "patient.height_cm", "number"),
    ("diagnosis_code", "diagnosis.code", "text"),
    ("diagnosis_text", "diagnosis.text", "text"),
    ("product", "product", "text"),
    ("route", "route", "text"),
    ("g_per_kg", "dose.g_per_kg", "number"),
    ("interval_days", "dose.interval_days", "whole"),
    ("last_infusion_date", "last_infusion_date", "text"),
    ("failed_therapies", "therapies.failed", "list"),
    ("concurrent_therapies", "therapies.concurrent", "list"),
    ("severity", "severity", "text"),
)
NAMES = tuple(name for name, _, _ in COLUMNS)
_NAME_OF_PATH = {path: name for name, path, _ in COLUMNS} | {"diagnosis": "diagnosis_code"}
_INDEX = re.compile(r"\[\d+\]$")


def from_fields(fields: dict, row: int | None = None) -> dict:
    """The JSON request for flat fields (blank ones left out); `row` numbers a CSV row's errors.

    A value of the wrong kind is refused here, since the API's own check would only see text.
    """
    request: dict = {}
    where = f"row {row}: " if row is not None else ""
    for name, path, kind in COLUMNS:
        value = (fields.get(name) or "").strip()
        if not value:
            continue
        if kind in ("number", "whole"):
            try:
                value = int(value) if kind == "whole" else float(value)
            except ValueError:
                raise RequestError(
                    "wrong_type",
                    f"{where}{name} must be a {'whole number' if kind == 'whole' else 'number'}, found {value!r}",
                    name,
                ) from None
        elif kind == "yes_no":
            if value.lower() not in ("true", "false", "yes", "no"):
                raise RequestError("wrong_type", f"{where}{name} must be true or false (yes or no)", name)
            value = value.lower() in ("true", "yes")
        elif kind == "list":
            value = [item.strip() for item in value.split(";") if item.strip()]
        *parents, leaf = path.split(".")
        place = request
        for parent in parents:
            place = place.setdefault(parent, {})
        place[leaf] = value
    return request


def name_of(field: str | None) -> str | None:
    """The flat name for an API error's field (`therapies.failed[2]` -> `failed_therapies`)."""
    return _NAME_OF_PATH.get(_INDEX.sub("", field or ""), field)
