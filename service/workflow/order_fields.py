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
# The console's decision form also asks for qualifying criteria (issue 16); an infusion list does not.
CRITERIA_COLUMNS = (
    ("confirmed_by", "diagnosis.confirmed_by", "text"),
    ("phase", "diagnosis.phase", "text"),
    ("onset_date", "diagnosis.onset_date", "text"),
    ("prescriber_specialty", "prescriber.specialty", "text"),
    ("course", "course", "text"),
    ("urgent_reason", "urgent.reason", "text"),
)
OBSERVATION_ROWS = 3  # observation rows on the form: obs_measure_0, obs_value_0, obs_unit_0, obs_taken_on_0, ...
OBSERVATION_PARTS = ("measure", "value", "unit", "taken_on")
_NAME_OF_PATH = {path: name for name, path, _ in COLUMNS + CRITERIA_COLUMNS} | {"diagnosis": "diagnosis_code"}
_INDEX = re.compile(r"\[\d+\]$")
_FAILED_WEEKS_FIELD = re.compile(r"^therapies\.failed\[\d+\]\.(weeks|name)$")
_OBSERVATION_FIELD = re.compile(r"^observations\[(\d+)\]\.(measure|value|unit|taken_on)$")


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


def add_criteria(request: dict, fields: dict) -> list[int]:
    """Adds the form's qualifying criteria and observation rows (blank ones left out) to the request;
    returns the form row of each observation, for name_of.

    A row given in part is refused naming its first blank field; values are checked by request
    validation, which names the row's field (observations[1].unit -> obs_unit_1)."""
    for name, path, _ in CRITERIA_COLUMNS:
        value = (fields.get(name) or "").strip()
        if value:
            *parents, leaf = path.split(".")
            place = request
            for parent in parents:
                place = place.setdefault(parent, {})
            place[leaf] = value
    _add_failed_weeks(request, fields.get("failed_weeks") or "")
    observations: list[dict] = []
    rows: list[int] = []
    for i in range(OBSERVATION_ROWS):
        row = {part: (fields.get(f"obs_{part}_{i}") or "").strip() for part in OBSERVATION_PARTS}
        if not any(row.values()):
            continue
        for part in OBSERVATION_PARTS:
            if not row[part]:
                raise RequestError(
                    "missing_field", f"obs_{part}_{i}: the observation needs its {part}", f"obs_{part}_{i}"
                )
        try:
            number = float(row["value"])
        except ValueError:
            raise RequestError(
                "wrong_type", f"obs_value_{i} must be a number, found {row['value']!r}", f"obs_value_{i}"
            ) from None
        observations.append({**row, "value": number})
        rows.append(i)
    if observations:
        request["observations"] = observations
    return rows


def _add_failed_weeks(request: dict, text: str) -> None:
    """`corticosteroids:12; rituximab:4` (the CLI's NAME:WEEKS): how long each failed therapy was
    tried. Each becomes a `{name, weeks}` item of therapies.failed, replacing the plain name."""
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        name, colon, weeks = (piece.strip() for piece in item.rpartition(":"))
        if not colon or not name or not weeks.isdigit():
            raise RequestError(
                "wrong_type",
                f"failed_weeks: write each therapy as NAME:WEEKS, separated by ';' (corticosteroids:12), found {item!r}",
                "failed_weeks",
            )
        failed = request.setdefault("therapies", {}).setdefault("failed", [])
        failed[:] = [entry for entry in failed if entry != name] + [{"name": name, "weeks": int(weeks)}]


def name_of(field: str | None, rows: list[int] | None = None) -> str | None:
    """The flat name for an API error's field (`therapies.failed[2]` -> `failed_therapies`,
    `observations[0].unit` -> `obs_unit_<the form row it came from>`)."""
    if _FAILED_WEEKS_FIELD.match(field or ""):
        return "failed_weeks"
    observed = _OBSERVATION_FIELD.match(field or "")
    if observed:
        index = int(observed.group(1))
        row = rows[index] if rows and index < len(rows) else index
        return f"obs_{observed.group(2)}_{row}"
    return _NAME_OF_PATH.get(_INDEX.sub("", field or ""), field)


def measurement_from_fields(fields: dict) -> dict:
    """A measurement form's fields (measure, value, unit, taken_on) as the API's body; blanks are
    absent and a value that is not a number is left as typed, for validation to name."""
    body: dict = {part: (fields.get(part) or "").strip() or None for part in OBSERVATION_PARTS}
    try:
        body["value"] = None if body["value"] is None else float(body["value"])
    except ValueError:
        pass
    return body
