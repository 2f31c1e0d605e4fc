"""An administration (what was given) read from its body, and checked against what was authorised.

The infusion has already happened, so nothing here refuses it: every difference from the
authorisation is a Discrepancy, in words, with the value expected and the value found, for a
pharmacist to resolve. Pure: no database, no Flask (service/workflow/administrations.py gathers
the authorisation, the pre-approval and the earlier administrations, and stores the result).

Courses given over several days: the labels give a course as one infusion or spread over
consecutive days (Gamunex-C's ITP course: 1 g/kg on 2 days, or 0.4 g/kg on 5). Administrations
under one authorisation on the same day or on consecutive days are one course: its grams are
added up against the course's maximum, and the interval is counted from the first day of the
course before it. A monthly profile (MMN) is checked on the grams of the 28 days up to the day given.
"""

import datetime
from dataclasses import dataclass

from service.decide.dosing import MONTH_DAYS, Weight
from service.decide.request import (
    RequestError,
    Vocabulary,
    _date,
    _number,
    _object,
    _text,
    patient_ref,
)
from service.rulebook.model import DosingProfile

FIELDS = (
    "preapproval_id",
    "authorisation_id",
    "patient",
    "product",
    "lot",
    "vials",
    "grams_given",
    "grams_wasted",
    "given_on",
    "site",
    "source_id",
)
MAX_VIALS = 20  # vial lines (size and count) in one administration
MAX_GRAMS = 2000.0
GRAMS_SLACK = 0.05  # half the tenth of a gram vial sizes are given in
KINDS = (
    "no_authorisation",
    "integrity",
    "preapproval_held",
    "authorisation_period",
    "product",
    "dose",
    "dose_unchecked",
    "above_preapproved",
    "interval",
    "courses",
    "vial_size",
    "vial_total",
)


@dataclass(frozen=True)
class Vial:
    size_g: float
    count: int


@dataclass(frozen=True)
class Administration:
    """An administration as given, checked for form (not yet against the authorisation)."""

    patient_ref: str
    product: str
    lot: str
    vials: tuple[Vial, ...]
    grams_given: float
    grams_wasted: float
    given_on: datetime.date
    site: str | None = None
    authorisation_id: str | None = None
    preapproval_id: int | None = None
    source_id: str | None = None

    @property
    def vial_grams(self) -> float:
        return round(sum(v.size_g * v.count for v in self.vials), 2)


def read_administration(body, vocabulary: Vocabulary, today: datetime.date) -> Administration:
    """The body of POST /v1/administrations (or a CSV row made into one), checked; a RequestError
    names the field and the value (never a patient identifier's)."""
    item = _object(body, "", FIELDS)
    patient = _object(item.get("patient"), "patient", ("ref",)) if "patient" in item else {}
    ref = patient_ref(patient.get("ref"))
    if ref is None:
        raise RequestError("missing_field", "patient.ref is required", "patient.ref")
    authorisation_id = _text(item.get("authorisation_id"), "authorisation_id", 36)
    preapproval_id = _number(item.get("preapproval_id"), "preapproval_id", 1, 2**62, whole=True)
    if authorisation_id is None and preapproval_id is None:
        raise RequestError(
            "missing_field",
            "name what was given under: authorisation_id or preapproval_id (or both)",
            "authorisation_id",
        )
    for name in ("product", "lot", "vials", "grams_given", "grams_wasted", "given_on"):
        if item.get(name) is None:
            raise RequestError("missing_field", f"{name} is required", name)
    product = vocabulary.product(item["product"], "product")
    assert product is not None
    given_on = _date(item["given_on"], "given_on", today)
    assert given_on is not None
    return Administration(
        patient_ref=ref,
        product=product,
        lot=_text(item["lot"], "lot", 64) or "",
        vials=_vials(item["vials"]),
        grams_given=float(_number(item["grams_given"], "grams_given", 0.1, MAX_GRAMS) or 0),
        grams_wasted=float(_number(item["grams_wasted"], "grams_wasted", 0, MAX_GRAMS) or 0),
        given_on=given_on,
        site=_text(item.get("site"), "site", 128),
        authorisation_id=authorisation_id,
        preapproval_id=None if preapproval_id is None else int(preapproval_id),
        source_id=_text(item.get("source_id"), "source_id", 128),
    )


def _vials(value) -> tuple[Vial, ...]:
    if not isinstance(value, list) or not value:
        raise RequestError("wrong_type", "vials must be a list of {size_g, count}, at least one", "vials")
    if len(value) > MAX_VIALS:
        raise RequestError("too_long", f"vials has {len(value)} lines; at most {MAX_VIALS}", "vials")
    vials = []
    for i, raw in enumerate(value):
        at = f"vials[{i}]"
        line = _object(raw, at, ("size_g", "count"))
        for name in ("size_g", "count"):
            if line.get(name) is None:
                raise RequestError("missing_field", f"{at}.{name} is required", f"{at}.{name}")
        size = _number(line["size_g"], f"{at}.size_g", 0.1, 200)
        count = _number(line["count"], f"{at}.count", 1, 1000, whole=True)
        vials.append(Vial(float(size or 0), int(count or 0)))
    return tuple(vials)


@dataclass(frozen=True)
class Given:
    """An earlier administration under the same authorisation: the day and the grams given."""

    given_on: datetime.date
    grams: float


@dataclass(frozen=True)
class Authorised:
    """What an administration is checked against: its authorisation (None: none was valid), the
    dosing profile and dose-determining weight of its pre-approval (or the authorisation's profile
    and no weight), the pre-approval's verdict, the product's vial sizes, and the administrations
    already recorded under the authorisation."""

    authorisation_id: str | None
    products: tuple[str, ...] = ()  # empty: any formulary product
    valid_from: datetime.date | None = None
    valid_until: datetime.date | None = None
    profile: DosingProfile | None = None
    weight: Weight | None = None
    weight_from: str = ""  # where the weight comes from, in words ("pre-approval 42 on 2026-11-30")
    preapproval_id: int | None = None
    preapproved_product: str | None = None
    preapproved_grams: float | None = None
    preapproval_held: tuple[str, ...] = ()  # the reasons a pre-approval said hold
    no_authorisation: str = ""  # why there is no authorisation to check against
    intact: bool = True  # False: the authorisation fails its integrity check
    vial_sizes_g: tuple[float, ...] = ()
    earlier: tuple[Given, ...] = ()


@dataclass(frozen=True)
class Discrepancy:
    kind: str
    message: str
    expected: str
    actual: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "expected": self.expected, "actual": self.actual}


def _g(grams: float) -> str:
    return f"{round(grams, 2):g} g"


def discrepancies(given: Administration, authorised: Authorised) -> list[Discrepancy]:
    """Every way the administration differs from what was authorised (empty: none)."""
    found = _vial_checks(given, authorised)
    if authorised.authorisation_id is None:
        found.insert(
            0,
            Discrepancy(
                "no_authorisation",
                f"given with no valid authorisation: {authorised.no_authorisation}",
                "a valid authorisation",
                "none",
            ),
        )
        return found
    if not authorised.intact:
        found.insert(
            0,
            Discrepancy(
                "integrity",
                f"authorisation {authorised.authorisation_id} fails its integrity check (it is not as the service "
                "recorded it), so nothing was checked against it; run formulary audit verify",
                "an authorisation as recorded",
                "an altered or forged authorisation",
            ),
        )
        return found
    checks = [
        *_preapproval_checks(given, authorised),
        *_period_checks(given, authorised),
        *_product_checks(given, authorised),
        *_course_checks(given, authorised),
    ]
    return checks + found


def _vial_checks(given: Administration, authorised: Authorised) -> list[Discrepancy]:
    found = []
    sizes = authorised.vial_sizes_g
    for vial in given.vials:
        if sizes and not any(abs(vial.size_g - s) < 1e-9 for s in sizes):
            found.append(
                Discrepancy(
                    "vial_size",
                    f"{given.product} does not come in {vial.size_g:g} g vials (its vials: "
                    f"{', '.join(f'{s:g} g' for s in sorted(sizes))}, data/products.yaml)",
                    ", ".join(f"{s:g} g" for s in sorted(sizes)),
                    f"{vial.size_g:g} g",
                )
            )
    opened = given.grams_given + given.grams_wasted
    if abs(given.vial_grams - opened) > GRAMS_SLACK:
        made_of = " + ".join(f"{v.count} x {v.size_g:g} g" for v in given.vials)
        found.append(
            Discrepancy(
                "vial_total",
                f"the vials ({made_of}) hold {_g(given.vial_grams)}, but {_g(given.grams_given)} given and "
                f"{_g(given.grams_wasted)} wasted make {_g(opened)}",
                _g(given.vial_grams),
                _g(opened),
            )
        )
    return found


def _preapproval_checks(given: Administration, authorised: Authorised) -> list[Discrepancy]:
    if not authorised.preapproval_held:
        return []
    return [
        Discrepancy(
            "preapproval_held",
            f"pre-approval {authorised.preapproval_id} said hold: {'; '.join(authorised.preapproval_held)}",
            "dispense",
            "hold",
        )
    ]


def _period_checks(given: Administration, authorised: Authorised) -> list[Discrepancy]:
    start, end = authorised.valid_from, authorised.valid_until
    if start is None or end is None or start <= given.given_on <= end:
        return []
    if given.given_on > end:
        words = f"{(given.given_on - end).days} days after authorisation {authorised.authorisation_id} ended on {end}"
    else:
        words = (
            f"{(start - given.given_on).days} days before authorisation {authorised.authorisation_id} began on {start}"
        )
    return [
        Discrepancy(
            "authorisation_period",
            f"given on {given.given_on}, {words}",
            f"{start} to {end}",
            given.given_on.isoformat(),
        )
    ]


def _product_checks(given: Administration, authorised: Authorised) -> list[Discrepancy]:
    found = []
    if authorised.products and given.product not in authorised.products:
        found.append(
            Discrepancy(
                "product",
                f"{given.product} was given; authorisation {authorised.authorisation_id} is for "
                f"{', '.join(authorised.products)}",
                ", ".join(authorised.products),
                given.product,
            )
        )
    if authorised.preapproved_product and given.product != authorised.preapproved_product:
        found.append(
            Discrepancy(
                "product",
                f"{given.product} was given; pre-approval {authorised.preapproval_id} was for "
                f"{authorised.preapproved_product}",
                authorised.preapproved_product,
                given.product,
            )
        )
    return found


def _courses(given: Administration, earlier: tuple[Given, ...]) -> list[list[Given]]:
    """The administrations up to this one, in courses (same or consecutive days), oldest first;
    this one is in the last."""
    days = sorted(
        (*(e for e in earlier if e.given_on <= given.given_on), Given(given.given_on, given.grams_given)),
        key=lambda e: e.given_on,
    )
    courses: list[list[Given]] = []
    for item in days:
        if courses and (item.given_on - courses[-1][-1].given_on).days <= 1:
            courses[-1].append(item)
        else:
            courses.append([item])
    return courses


def _course_checks(given: Administration, authorised: Authorised) -> list[Discrepancy]:
    profile = authorised.profile
    if profile is None:
        return []
    found = []
    courses = _courses(given, authorised.earlier)
    course = courses[-1]
    first_of_course = len(course) == 1  # a later day of a course was checked with its first
    if profile.courses is not None and first_of_course and len(courses) > profile.courses:
        found.append(
            Discrepancy(
                "courses",
                f"this is course {len(courses)} under authorisation {authorised.authorisation_id}; "
                f"its profile ({profile.id}) allows {profile.courses}",
                f"at most {profile.courses} courses",
                f"course {len(courses)}",
            )
        )
    minimum = profile.interval_days.min
    if profile.courses is None and minimum is not None and first_of_course and len(courses) > 1:
        since = (course[0].given_on - courses[-2][0].given_on).days
        if since < minimum:
            found.append(
                Discrepancy(
                    "interval",
                    f"this course began on {course[0].given_on}, {since} days after the previous course began on "
                    f"{courses[-2][0].given_on}; the interval is at least {minimum:g} days ({profile.id})",
                    f"at least {minimum:g} days",
                    f"{since} days",
                )
            )
    found += _dose_checks(given, authorised, profile, course)
    return found


def _dose_checks(
    given: Administration, authorised: Authorised, profile: DosingProfile, course: list[Given]
) -> list[Discrepancy]:
    weight = authorised.weight
    if weight is None:
        return [
            Discrepancy(
                "dose_unchecked",
                f"the {_g(given.grams_given)} given could not be checked against the authorised dose: no "
                f"pre-approval under authorisation {authorised.authorisation_id} computed a dose-determining weight",
                "a dose-determining weight from a pre-approval",
                "none",
            )
        ]
    found = []
    maximum = profile.g_per_kg.max
    if profile.monthly:
        since = given.given_on - datetime.timedelta(days=MONTH_DAYS - 1)
        window = [e for e in authorised.earlier if since <= e.given_on <= given.given_on]
        total = given.grams_given + sum(e.grams for e in window)
        span = f"in the {MONTH_DAYS} days from {since} to {given.given_on}"
        per = f"g/kg over {MONTH_DAYS} days"
    else:
        total = sum(e.grams for e in course)
        span = f"in the course that began on {course[0].given_on}" if len(course) > 1 else f"on {given.given_on}"
        per = "g/kg a course"
    if maximum is not None:
        ceiling = round(maximum * weight.dosing_kg, 2)
        if total > ceiling + GRAMS_SLACK:
            found.append(
                Discrepancy(
                    "dose",
                    f"{_g(total)} given {span}, {_g(total - ceiling)} above the authorised dose: at most "
                    f"{maximum:g} {per} ({profile.id}) x {weight.dosing_kg:g} kg dosing weight ({weight.basis}, "
                    f"{authorised.weight_from}) = {_g(ceiling)}",
                    f"at most {_g(ceiling)}",
                    _g(total),
                )
            )
    preapproved = authorised.preapproved_grams
    if preapproved is not None and not profile.monthly and total > preapproved + GRAMS_SLACK:
        found.append(
            Discrepancy(
                "above_preapproved",
                f"{_g(total)} given {span}; pre-approval {authorised.preapproval_id} approved {_g(preapproved)}",
                _g(preapproved),
                _g(total),
            )
        )
    return found
