"""Validating a decision request (the JSON body of POST /v1/decisions, or the CLI's options).

Everything that reaches the engine is checked and typed here, because durable-rules coerces
silently ("5" compares as a number, "true" as true). A bad value is refused with an error that
names the field and the value; nothing is guessed.
"""

import datetime
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service import clock
from service.rulebook.facts import Facts, Observation
from service.rulebook.frozen import quick_init
from service.rulebook.model import (
    COURSES,
    FAILURE_REASONS,
    MAX_AGE_YEARS,
    MAX_WEEKS,
    ROUTES,
    SEVERITIES,
    SEXES,
    Measure,
    Phase,
    Rulebook,
)

MAX_TEXT = 200
AGE_DECIMALS = 4
MAX_REF = 64
MAX_OBSERVATIONS = 100
MAX_URGENT_REASON = 500
_NO_DAY = datetime.date.min  # no dated fact in the request: no date is compared with it


class RequestError(ValueError):
    """A request the service refuses; `code` is machine-readable, `field` the dotted path."""

    def __init__(self, code: str, message: str, field: str | None = None, suggestions: list[dict] | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.suggestions = suggestions or []  # for a code that does not exist: the nearest valid ones

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "field": self.field}


@dataclass(frozen=True)
class Dose:
    g_per_kg: float | None = None
    interval_days: int | None = None


@quick_init
@dataclass(frozen=True)
class DecisionRequest:
    code: str | None
    text: str | None
    facts: Facts
    patient_ref: str | None = None
    weight_kg: float | None = None
    height_cm: float | None = None
    dose: Dose | None = None
    urgent_reason: str | None = None  # why it cannot wait for review: asks for a provisional authorisation


def _object(value, field: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        # Only the kind: a value where an object belongs may be anything, a patient identifier included.
        raise RequestError("wrong_type", f"{field or 'the body'} must be an object, found {_kind_of(value)}", field)
    for key in value:
        if key not in allowed:
            raise RequestError(
                "unknown_field",
                f"{_join(field, key)} is not a known field (allowed: {', '.join(allowed)})",
                _join(field, key),
            )
    return value


def _join(parent: str, key) -> str:
    return f"{parent}.{key}" if parent else str(key)


def _kind_of(value) -> str:
    """What a value is, without the value: for fields that may hold a patient identifier."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    return {str: "text", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value, field: str, low: float, high: float, whole: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        kind = "a whole number" if whole else "a number"
        raise RequestError("wrong_type", f"{field} must be {kind}, found {_shown(value)}", field)
    if not low <= value <= high:  # NaN fails this too
        raise RequestError(
            "out_of_range", f"{field} must be between {low:g} and {high:g}, found {_shown(value)}", field
        )
    return value


# Characters that show nothing: whitespace, controls, and format characters (zero-width spaces and
# joiners, the byte order mark, direction marks).
_INVISIBLE = frozenset(("Cc", "Cf", "Zs", "Zl", "Zp"))


def known_arguments(args: Mapping[str, str], allowed: Sequence[str], what: str) -> None:
    """Refuses a query argument (API or console) that is not one of `allowed`, naming it as `what`."""
    for key in args:
        if key not in allowed:
            raise RequestError("unknown_field", f"'{key}' is not {what} (allowed: {', '.join(allowed)})", key)


def whole_argument(given: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """A whole-number query argument (API or console) between low and high, or None when absent."""
    if name not in given:
        return None
    try:
        value = int(given[name])
    except ValueError:
        raise RequestError("wrong_type", f"{name} must be a whole number, found {given[name][:20]!r}", name) from None
    if not low <= value <= high:
        raise RequestError("out_of_range", f"{name} must be between {low} and {high}, found {value}", name)
    return value


def _invisible(character: str) -> bool:
    return character.isspace() or unicodedata.category(character) in _INVISIBLE


def visible(text: str) -> str:
    """The text without the invisible characters at either end: a text of nothing else is empty."""
    if text[:1].isalnum() and text[-1:].isalnum():  # letters and digits are visible: nothing to trim
        return text
    start, end = 0, len(text)
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def patient_ref(value, field: str = "patient.ref") -> str | None:
    """A patient identifier as every path reads it before hashing (a decision, an order, a CSV row,
    a look-up by patient): text, its invisible ends trimmed, in Unicode NFC (one spelling of "É"),
    with no control character inside."""
    ref = _text(value, field, MAX_REF, identifier=True)
    if ref is None:
        return None
    if any(unicodedata.category(character) == "Cc" for character in ref):  # a tab or a NUL inside: a mistyped id
        raise RequestError("invalid_value", f"{field} must not contain control characters", field)
    return unicodedata.normalize("NFC", ref)


def _text(value, field: str, limit: int, identifier: bool = False) -> str | None:
    """Checked text; an identifier's value is never repeated in the error, which is kept forever."""
    if value is None:
        return None
    if not isinstance(value, str):
        found = _kind_of(value) if identifier else _shown(value)
        raise RequestError("wrong_type", f"{field} must be text, found {found}", field)
    value = visible(value)
    if not value:
        raise RequestError("empty_value", f"{field} is empty", field)
    if len(value) > limit:
        raise RequestError("too_long", f"{field} is {len(value)} characters long; at most {limit} are accepted", field)
    return value


def _choice(value, field: str, allowed: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise RequestError(
            "unknown_value", f"{field} must be one of {', '.join(allowed)}, found {_shown(value)}", field
        )
    return value.strip().lower()


def _bool(value, field: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise RequestError("wrong_type", f"{field} must be true or false, found {_shown(value)}", field)
    return value


class Vocabulary:
    """Therapy and product names as prescribers write them -> the rulebook's own names."""

    def __init__(self, rulebook: Rulebook):
        self.therapies = {}
        for therapy in rulebook.therapies.values():
            for spelling in (therapy.id, therapy.name, *therapy.synonyms):
                self.therapies[_key(spelling)] = therapy.id
        # The spellings as the rulebook writes them, looked up as given (most requests use them).
        self._as_written = {
            spelling: self.therapies[_key(spelling)]
            for therapy in rulebook.therapies.values()
            for spelling in (therapy.id, therapy.name, *therapy.synonyms)
        } | {key: therapy for key, therapy in self.therapies.items()}
        self.products = {_key(name): name for name in rulebook.products}
        self.measures: dict[str, Measure] = dict(rulebook.measures)
        self.specialties: tuple[str, ...] = tuple(rulebook.specialties)
        self.phases: dict[str, Phase] = dict(rulebook.phases)

    def therapy(self, value, field: str) -> str:
        if not isinstance(value, str):
            raise RequestError("wrong_type", f"{field} must be a therapy name, found {_shown(value)}", field)
        found = self.therapies.get(_key(value))
        if found is None:
            raise RequestError("unknown_therapy", f"{field}: '{value}' is not in the therapy vocabulary", field)
        return found

    def therapy_set(self, values: list, field: str) -> frozenset[str]:
        """A list of therapy names (at `field`) as the rulebook's therapy ids."""
        try:
            return frozenset([self._as_written[value] for value in values])
        except (KeyError, TypeError):  # a spelling of its own, or no name: each one checked
            return frozenset(self.therapy(value, f"{field}[{i}]") for i, value in enumerate(values))

    def product(self, value, field: str) -> str | None:
        if value is None:
            return None
        found = self.products.get(_key(value)) if isinstance(value, str) else None
        if found is None:
            raise RequestError(
                "unknown_product",
                f"{field}: {_shown(value)} is not a formulary product (formulary: {', '.join(self.products.values())})",
                field,
            )
        return found


def _key(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def _date(value, field: str, today: datetime.date) -> datetime.date | None:
    """A calendar date as YYYY-MM-DD, not after today."""
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise RequestError(
            "invalid_value", f"{field} must be a date as YYYY-MM-DD, found {_shown(value)}", field
        ) from None
    if day > today:
        raise RequestError("out_of_range", f"{field} is after today ({today.isoformat()}): {value}", field)
    return day


@dataclass(frozen=True)
class Measured:
    """One observation, validated: its value in the measure's canonical unit."""

    measure: Measure
    value: float
    taken_on: datetime.date


def observation(raw, at: str, vocabulary: Vocabulary, today: datetime.date) -> Measured:
    """One `{measure, value, unit, taken_on}` object (a request's observation, or a measurement
    recorded against an authorisation), fields named under `at` ("observations[0]", or "")."""
    item = _object(raw, at, ("measure", "value", "unit", "taken_on"))
    for name in ("measure", "value", "unit", "taken_on"):
        if item.get(name) is None:
            raise RequestError("missing_field", f"{_join(at, name)} is required", _join(at, name))
    measure = vocabulary.measures.get(item["measure"]) if isinstance(item["measure"], str) else None
    if measure is None:
        raise RequestError(
            "unknown_value",
            f"{_join(at, 'measure')} must be one of {', '.join(vocabulary.measures) or '(none defined)'}, "
            f"found {_shown(item['measure'])}",
            _join(at, "measure"),
        )
    unit = item["unit"]
    if not isinstance(unit, str) or unit not in measure.units:
        raise RequestError(
            "unknown_unit",
            f"{_join(at, 'unit')} must be one of {', '.join(measure.units)} for {measure.id}, found {_shown(unit)}",
            _join(at, "unit"),
        )
    number = item["value"]
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise RequestError(
            "wrong_type", f"{_join(at, 'value')} must be a number, found {_shown(number)}", _join(at, "value")
        )
    canonical = measure.to_canonical(number, unit) if abs(number) < 1e12 else float("inf")
    if not measure.low <= canonical <= measure.high:  # NaN fails this too
        raise RequestError(
            "out_of_range",
            f"{_join(at, 'value')} must be between {measure.low:g} and {measure.high:g} {measure.unit} "
            f"(after conversion from {unit}), found {_shown(number)}",
            _join(at, "value"),
        )
    taken_on = _date(item["taken_on"], _join(at, "taken_on"), today)
    assert taken_on is not None
    return Measured(measure, canonical, taken_on)


def _observations(value, vocabulary: Vocabulary, today: datetime.date) -> tuple[Observation, ...]:
    """The latest observation of each measure, its value in the measure's canonical unit."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError("wrong_type", f"observations must be a list, found {_kind_of(value)}", "observations")
    if len(value) > MAX_OBSERVATIONS:
        raise RequestError("too_long", f"observations: at most {MAX_OBSERVATIONS} are accepted", "observations")
    latest: dict[str, tuple[datetime.date, float, int]] = {}
    for i, raw in enumerate(value):
        at = f"observations[{i}]"
        measured = observation(raw, at, vocabulary, today)
        measure, canonical, taken_on = measured.measure, measured.value, measured.taken_on
        seen = latest.get(measure.id)
        if seen is not None and seen[0] == taken_on and seen[1] != canonical:
            # Two values of one day: which one holds is a guess; the requester says which.
            raise RequestError(
                "conflicting_values",
                f"{at}: observations[{seen[2]}] gives another {measure.id} value taken on the same day",
                f"{at}.value",
            )
        if seen is None or taken_on > seen[0]:
            latest[measure.id] = (taken_on, canonical, i)
    return tuple(
        Observation(measure, value, (today - taken_on).days) for measure, (taken_on, value, _) in sorted(latest.items())
    )


def _months_between(start: datetime.date, end: datetime.date) -> int:
    """Whole calendar months from start to end (2026-01-31 to 2026-02-28: 0)."""
    return (end.year - start.year) * 12 + end.month - start.month - (end.day < start.day)


def _phases(diagnosis: dict, vocabulary: Vocabulary, today: datetime.date) -> frozenset[str] | None:
    """The phase given, or the phase of each scheme that the onset date gives; a given phase that its
    scheme's months since onset contradict is refused: the request says two things and either would be a guess."""
    phase = _choice(diagnosis.get("phase"), "diagnosis.phase", tuple(vocabulary.phases))
    onset = _date(diagnosis.get("onset_date"), "diagnosis.onset_date", today)
    if onset is None:
        return None if phase is None else frozenset({phase})
    months = _months_between(onset, today)
    derived = {
        p.scheme: p.id
        for p in vocabulary.phases.values()
        if p.months_at_least <= months and (p.months_under is None or months < p.months_under)
    }
    if phase is None:
        return frozenset(derived.values())
    scheme = vocabulary.phases[phase].scheme
    if derived.get(scheme, phase) != phase:
        raise RequestError(
            "conflicting_values",
            f"diagnosis.phase is {phase}, but diagnosis.onset_date ({months} months ago) gives {derived[scheme]}",
            "diagnosis.phase",
        )
    return frozenset({phase})


def _failed(value, vocabulary: Vocabulary) -> tuple[frozenset[str] | None, tuple[tuple[str, int], ...]]:
    """therapies.failed: names, or {name, weeks, reason} objects; (therapies, (therapy, weeks) pairs)."""
    if value is None:
        return None, ()
    if all(type(item) is str for item in value):  # plain names, the common case
        return vocabulary.therapy_set(value, "therapies.failed"), ()
    names: set[str] = set()
    weeks: dict[str, int] = {}
    for i, item in enumerate(value):
        at = f"therapies.failed[{i}]"
        if isinstance(item, dict):
            entry = _object(item, at, ("name", "weeks", "reason"))
            if entry.get("name") is None:
                raise RequestError("missing_field", f"{at}.name is required", f"{at}.name")
            therapy = vocabulary.therapy(entry["name"], f"{at}.name")
            tried = _number(entry.get("weeks"), f"{at}.weeks", 0, MAX_WEEKS, whole=True)
            _choice(entry.get("reason"), f"{at}.reason", FAILURE_REASONS)
            if tried is not None:
                weeks[therapy] = max(int(tried), weeks.get(therapy, 0))
        else:
            therapy = vocabulary.therapy(item, at)
        names.add(therapy)
    return frozenset(names), tuple(sorted(weeks.items()))


def parse_request(payload, vocabulary: Vocabulary, as_of: datetime.date | None = None) -> DecisionRequest:
    """A request body, checked; dated facts (observations, the onset date) are read as of `as_of`
    (default today: a replay reads a recorded request as of the day it was decided)."""
    body = _object(
        payload,
        "",
        (
            "diagnosis",
            "patient",
            "therapies",
            "severity",
            "product",
            "route",
            "dose",
            "observations",
            "prescriber",
            "course",
            "urgent",
        ),
    )
    if "diagnosis" not in body:
        raise RequestError("missing_field", "diagnosis is required (a code, a text or both)", "diagnosis")
    diagnosis = _object(body["diagnosis"], "diagnosis", ("code", "text", "confirmed_by", "phase", "onset_date"))
    code = _text(diagnosis.get("code"), "diagnosis.code", 16)
    text = _text(diagnosis.get("text"), "diagnosis.text", MAX_TEXT)
    if code is None and text is None:
        raise RequestError("missing_field", "diagnosis needs a code or a text", "diagnosis")

    patient = _object(
        body.get("patient") or {}, "patient", ("age_years", "sex", "pregnant", "weight_kg", "height_cm", "ref")
    )
    sex = _choice(patient.get("sex"), "patient.sex", SEXES)
    pregnant = _bool(patient.get("pregnant"), "patient.pregnant")
    if pregnant and sex == "male":
        raise RequestError("conflicting_values", "patient.pregnant is true but patient.sex is male", "patient.pregnant")
    if pregnant is None and sex == "male":
        pregnant = False

    therapies = _object(body.get("therapies") or {}, "therapies", ("failed", "concurrent"))
    lists = {}
    failed_weeks: tuple[tuple[str, int], ...] = ()
    for kind in ("failed", "concurrent"):
        value = therapies.get(kind)
        if value is not None and not isinstance(value, list):
            raise RequestError(
                "wrong_type", f"therapies.{kind} must be a list, found {_shown(value)}", f"therapies.{kind}"
            )
        if kind == "failed":
            lists[kind], failed_weeks = _failed(value, vocabulary)
        else:
            lists[kind] = None if value is None else vocabulary.therapy_set(value, f"therapies.{kind}")

    dose = None
    if body.get("dose") is not None:
        raw = _object(body["dose"], "dose", ("g_per_kg", "interval_days"))
        interval = _number(raw.get("interval_days"), "dose.interval_days", 1, 365, whole=True)
        dose = Dose(
            _number(raw.get("g_per_kg"), "dose.g_per_kg", 0.01, 5.0), None if interval is None else int(interval)
        )

    age = _number(patient.get("age_years"), "patient.age_years", 0, MAX_AGE_YEARS)
    if age is not None:
        # Four decimals (under an hour) is finer than any rule; it also keeps the number out of
        # exponent notation (1e-05), which durable-rules' JSON reader refuses.
        age = round(age, AGE_DECIMALS)
    # Only facts with dates depend on the day (and a Facts without them stays one cache entry).
    dated = body.get("observations") is not None or diagnosis.get("onset_date") is not None
    today = (as_of or clock.utc_today()) if dated else _NO_DAY
    prescriber = _object(body.get("prescriber") or {}, "prescriber", ("specialty",)) if "prescriber" in body else {}
    return DecisionRequest(
        code=code,
        text=text,
        facts=Facts(
            age_years=None if age is None else float(age),
            sex=sex,
            pregnant=pregnant,
            severity=_choice(body.get("severity"), "severity", SEVERITIES),
            failed=lists["failed"],
            concurrent=lists["concurrent"],
            product=vocabulary.product(body.get("product"), "product"),
            route=_choice(body.get("route"), "route", ROUTES) or "intravenous",
            failed_weeks=failed_weeks,
            observations=_observations(body.get("observations"), vocabulary, today),
            confirmed_by=_choice(diagnosis.get("confirmed_by"), "diagnosis.confirmed_by", vocabulary.specialties),
            specialty=_choice(prescriber.get("specialty"), "prescriber.specialty", vocabulary.specialties),
            phases=_phases(diagnosis, vocabulary, today),
            course=_choice(body.get("course"), "course", COURSES),
            as_of=today if dated else None,
        ),
        patient_ref=patient_ref(patient.get("ref")),
        weight_kg=_number(patient.get("weight_kg"), "patient.weight_kg", 0.3, 500),
        height_cm=_number(patient.get("height_cm"), "patient.height_cm", 20, 260),
        dose=dose,
        urgent_reason=_urgent_reason(body),
    )


def _urgent_reason(body: dict) -> str | None:
    """`urgent: {reason}`: why the request cannot wait for a review (kept with the request)."""
    if body.get("urgent") is None:
        return None
    urgent = _object(body["urgent"], "urgent", ("reason",))
    reason = _text(urgent.get("reason"), "urgent.reason", MAX_URGENT_REASON)
    if reason is None:
        raise RequestError(
            "missing_field", "urgent.reason is required: say why the request cannot wait", "urgent.reason"
        )
    return reason
