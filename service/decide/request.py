"""Validating a decision request (the JSON body of POST /v1/decisions, or the CLI's options).

Everything that reaches the engine is checked and typed here, because durable-rules coerces
silently ("5" compares as a number, "true" as true). A bad value is refused with an error that
names the field and the value; nothing is guessed.
"""

import unicodedata
from dataclasses import dataclass

from service.rulebook.facts import Facts
from service.rulebook.model import MAX_AGE_YEARS, ROUTES, SEVERITIES, SEXES, Rulebook

MAX_TEXT = 200
AGE_DECIMALS = 4
MAX_REF = 64


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


@dataclass(frozen=True)
class DecisionRequest:
    code: str | None
    text: str | None
    facts: Facts
    patient_ref: str | None = None
    weight_kg: float | None = None
    height_cm: float | None = None
    dose: Dose | None = None


def _object(value, field: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        # Only the kind: a value where an object belongs may be anything, a patient identifier included.
        raise RequestError("wrong_type", f"{field} must be an object, found {_kind_of(value)}", field)
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


def _invisible(character: str) -> bool:
    return character.isspace() or unicodedata.category(character) in _INVISIBLE


def visible(text: str) -> str:
    """The text without the invisible characters at either end: a text of nothing else is empty."""
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
        self.products = {_key(name): name for name in rulebook.products}

    def therapy(self, value, field: str) -> str:
        if not isinstance(value, str):
            raise RequestError("wrong_type", f"{field} must be a therapy name, found {_shown(value)}", field)
        found = self.therapies.get(_key(value))
        if found is None:
            raise RequestError("unknown_therapy", f"{field}: '{value}' is not in the therapy vocabulary", field)
        return found

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


def parse_request(payload, vocabulary: Vocabulary) -> DecisionRequest:
    body = _object(payload, "", ("diagnosis", "patient", "therapies", "severity", "product", "route", "dose"))
    if "diagnosis" not in body:
        raise RequestError("missing_field", "diagnosis is required (a code, a text or both)", "diagnosis")
    diagnosis = _object(body["diagnosis"], "diagnosis", ("code", "text"))
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
    for kind in ("failed", "concurrent"):
        value = therapies.get(kind)
        if value is not None and not isinstance(value, list):
            raise RequestError(
                "wrong_type", f"therapies.{kind} must be a list, found {_shown(value)}", f"therapies.{kind}"
            )
        lists[kind] = (
            None
            if value is None
            else frozenset(vocabulary.therapy(item, f"therapies.{kind}[{i}]") for i, item in enumerate(value))
        )

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
        ),
        patient_ref=patient_ref(patient.get("ref")),
        weight_kg=_number(patient.get("weight_kg"), "patient.weight_kg", 0.3, 500),
        height_cm=_number(patient.get("height_cm"), "patient.height_cm", 20, 260),
        dose=dose,
    )
