"""Authorisations: permission to give IVIG to one patient for one diagnosis until a date.

A positive decision for an identified patient, or an approved review, grants one (see
service/workflow/cases.py). It carries the dosing profile and the rulebook version it was
granted under, so a new rulebook applies at the next continuation, not to an authorisation
already given. Pre-approval looks up the valid one for an order, and refuses one that is not as
the service wrote it (its binding to the granting audit record fails: service/store/audit.py).
"""

import base64
import binascii
import copy
import datetime
import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from sqlalchemy import bindparam, exists, or_, select, tuple_
from sqlalchemy.orm import aliased

from service import clock
from service.decide.continuation import Reading
from service.decide.request import (
    MAX_OBSERVATIONS,
    RequestError,
    Vocabulary,
    known_arguments,
    observation,
    whole_argument,
)
from service.rulebook import icd10
from service.rulebook.model import DosingProfile, Range
from service.store.tables import audit_records, authorisation_measurements, authorisations, review_cases

MAX_DUE_DAYS = 365
MAX_PAGE = 200
MAX_CHAIN = 100  # authorisations followed along previous_id, each way
DUE_ARGUMENTS = ("expiring_within_days", "include_overdue", "patient_ref", "limit", "cursor")


class Tampered(Exception):
    """A stored authorisation fails its integrity check: it was forged or altered in the database."""

    def __init__(self, authorisation_id: str):
        super().__init__(authorisation_id)
        self.authorisation_id = authorisation_id


class NoSuchAuthorisation(Exception):
    """No such authorisation."""


class AlreadyContinued(Exception):
    """The authorisation was continued already: a continuation continues the latest one."""

    def __init__(self, authorisation_id: str, later_id: str):
        super().__init__(
            f"authorisation {authorisation_id} is already continued by authorisation {later_id}; "
            "ask for the continuation of that one"
        )


@dataclass(frozen=True)
class Continuing:
    """A continuation being decided: the authorisation it continues (its stored row), and the
    readings of the outcome measures at the initial authorisation and since this one began."""

    previous: dict
    baseline: tuple[Reading, ...]
    current: tuple[Reading, ...]


def grant(
    patient_hash,
    code,
    diagnosis_id,
    basis,
    rule,
    rulebook,
    products,
    valid_days,
    decision_id=None,
    case_id=None,
    today=None,
    previous_id=None,
    one_course=False,
) -> dict:
    """The row of a new authorisation (valid_until is the last valid day); `one_course` limits
    its dosing profile to a single course (a provisional authorisation)."""
    start = today or clock.utc_today()
    profile = rulebook.dosing_for(rule)
    if one_course:
        profile = replace(profile, interval_days=Range(), courses=1)
    return {
        "id": str(uuid.uuid4()),
        "created_at": clock.utc_now(),
        "patient_ref_hash": patient_hash,
        "diagnosis_id": diagnosis_id,
        "code": code,
        "basis": basis,
        "rule_id": rule.id if rule else None,
        "products": json.dumps(list(products)),
        "dosing": json.dumps(asdict(profile)),
        "valid_from": start.isoformat(),
        "valid_until": (start + datetime.timedelta(days=valid_days - 1)).isoformat(),
        "decision_id": decision_id,
        "case_id": case_id,
        "rulebook_version": rulebook.version,
        "rulebook_digest": rulebook.digest,
        "previous_id": previous_id,
    }


@dataclass(frozen=True)
class History:
    """What a patient already had for a diagnosis, as a new request's decision needs it: the
    authorisations granted within the rule's course period, the latest one a new request should
    continue instead (active, or ended within a continuing period, and not continued), and
    whether a provisional authorisation is active."""

    courses_given: int = 0
    to_continue: dict | None = None
    provisional_active: bool = False


# Built once: a decision reads it twice (to decide, and in the writer's transaction), and building a
# Core statement and its cache key costs more CPU than running it.
_HISTORY_ROWS = select(
    authorisations.c.id,
    authorisations.c.created_at,
    authorisations.c.valid_from,
    authorisations.c.valid_until,
    authorisations.c.basis,
    authorisations.c.previous_id,
).where(
    authorisations.c.patient_ref_hash == bindparam("patient_ref_hash"),
    authorisations.c.diagnosis_id == bindparam("diagnosis_id"),
)


def history(connection, patient_hash: str, diagnosis_id: str, course_days: int | None, lookback_days: int) -> History:
    """The patient's History for a diagnosis, read on `connection` (in the writer's transaction, to
    check it has not changed since the decision was made)."""
    now = clock.now()
    today = now.date()
    rows = [
        dict(r._mapping)
        for r in connection.execute(_HISTORY_ROWS, {"patient_ref_hash": patient_hash, "diagnosis_id": diagnosis_id})
    ]
    continued = {row["previous_id"] for row in rows if row["previous_id"]}
    since = clock.stamp(now - datetime.timedelta(days=course_days)) if course_days else None
    oldest_end = (today - datetime.timedelta(days=lookback_days)).isoformat()
    candidates = [
        row
        for row in rows
        if row["basis"] != "provisional" and row["id"] not in continued and row["valid_until"] >= oldest_end
    ]
    latest = max(candidates, key=lambda row: (row["valid_until"], row["created_at"]), default=None)
    return History(
        courses_given=sum(1 for row in rows if since is not None and row["created_at"] >= since),
        to_continue={"id": latest["id"], "valid_until": latest["valid_until"]} if latest else None,
        provisional_active=any(
            row["basis"] == "provisional" and row["valid_from"] <= today.isoformat() <= row["valid_until"]
            for row in rows
        ),
    )


def authorisation_view(row) -> dict:
    """An authorisation as the API shows it (the dosing profile expanded, the code dotted)."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    data["products"] = json.loads(data["products"])
    data["dosing"] = json.loads(data["dosing"])
    data["code"] = icd10.dotted(data["code"])
    data.pop("patient_ref_hash", None)
    data.pop("binding", None)
    data.setdefault("previous_id", None)
    data["active"] = data["valid_until"] >= clock.utc_today().isoformat()
    return data


def profile_of(authorisation: dict) -> DosingProfile:
    dosing = authorisation["dosing"]
    return DosingProfile(
        dosing["id"],
        Range(**dosing["g_per_kg"]),
        Range(**dosing["interval_days"]),
        dosing.get("note", ""),
        dosing.get("courses"),
        dosing.get("monthly", False),
    )


def _rows_for(instance, patient_hash: str) -> list[dict]:
    with instance.sql_engine.connect() as connection:
        rows = connection.execute(
            select(authorisations)
            .where(authorisations.c.patient_ref_hash == patient_hash)
            .order_by(authorisations.c.valid_until.desc())
        ).all()
    return [dict(row._mapping) for row in rows]


def authorisations_for(instance, patient_hash: str) -> list[dict]:
    return [authorisation_view(row) for row in _rows_for(instance, patient_hash)]


def active_authorisation(
    instance, patient_hash: str, code: str, diagnosis_id: str | None, today: datetime.date
) -> dict | None:
    """The longest-running valid authorisation for this patient and diagnosis, if any.

    Raises Tampered if any authorisation that would cover the order fails its integrity check:
    the order is then not dispensed under any of them until someone has looked.
    """
    covering = [
        row
        for row in _rows_for(instance, patient_hash)
        if ((diagnosis_id is not None and row["diagnosis_id"] == diagnosis_id) or code.startswith(row["code"]))
        and row["valid_from"] <= today.isoformat() <= row["valid_until"]
    ]
    for row in covering:
        if not instance.audit.row_intact(authorisations, row):
            raise Tampered(row["id"])
    return authorisation_view(covering[0]) if covering else None


def _row(connection, authorisation_id: str) -> dict:
    row = connection.execute(select(authorisations).where(authorisations.c.id == authorisation_id)).first()
    if row is None:
        raise NoSuchAuthorisation(authorisation_id)
    return dict(row._mapping)


def _granting_decision(instance, connection, row: dict) -> dict | None:
    """The signed record of the decision behind an authorisation: its own, or, for one a review
    granted, its case's latest decision."""
    decision_id = row["decision_id"]
    if decision_id is None and row["case_id"] is not None:
        decision_id = connection.execute(
            select(review_cases.c.latest_decision_id).where(review_cases.c.id == row["case_id"])
        ).scalar()
    return instance.audit.decision(decision_id) if decision_id else None


def requester_of(instance, authorisation_id: str) -> str | None:
    """Who requested the decision that granted the authorisation (404 when there is none)."""
    with instance.sql_engine.connect() as connection:
        record = _granting_decision(instance, connection, _row(connection, authorisation_id))
    return record["requester"] if record else None


def record_measurement(instance, vocabulary: Vocabulary, authorisation_id: str, body, requester: str) -> dict:
    """Validate a measurement as a request's observation is validated, and record it against the
    authorisation (ended ones too: benefit is assessed at expiry), bound to its audit record."""
    with instance.sql_engine.connect() as connection:
        authorisation = _row(connection, authorisation_id)
    measured = observation(body, "", vocabulary, clock.utc_today())
    row = {
        "id": str(uuid.uuid4()),
        "authorisation_id": authorisation_id,
        "created_at": clock.utc_now(),
        "measure": measured.measure.id,
        "value": measured.value,
        "unit": measured.measure.unit,
        "value_given": float(body["value"]),
        "unit_given": body["unit"],
        "taken_on": measured.taken_on.isoformat(),
        "recorded_by": requester,
    }
    instance.audit.append(
        "measurement",
        {"measurement": row},
        bind=[(authorisation_measurements, row)],
        created_at=row["created_at"],
        requester=requester,
        status=201,
        code=authorisation["code"],
        patient_ref_hash=authorisation["patient_ref_hash"],
    )
    return _measurement_view(row)


def _measurement_view(row) -> dict:
    data = dict(row)
    data.pop("record_id", None)
    data.pop("binding", None)
    return data


def _chain(connection, row: dict) -> list[dict]:
    """The authorisations linked to this one by previous_id, oldest first (this one included)."""
    chain = [row]
    while chain[0]["previous_id"] is not None and len(chain) < MAX_CHAIN:
        earlier = connection.execute(
            select(authorisations).where(authorisations.c.id == chain[0]["previous_id"])
        ).first()
        if earlier is None:
            break
        chain.insert(0, dict(earlier._mapping))
    for _ in range(MAX_CHAIN):
        later = connection.execute(
            select(authorisations)
            .where(authorisations.c.previous_id == chain[-1]["id"])
            .order_by(authorisations.c.created_at)
        ).first()
        if later is None:
            break
        chain.append(dict(later._mapping))
    return chain


def _baseline(record: dict | None) -> list[dict]:
    """The observations of the request a decision record kept, as given."""
    request = record["body"]["request"] if record else {}
    return (request.get("observations") or []) if isinstance(request, dict) else []


def authorisation_detail(instance, authorisation_id: str) -> dict:
    """The authorisation, its baseline (the observations of the decision that granted it, as
    given), its measurements oldest first, and its chain of continuations; with the requester of
    its decision, for the owner check."""
    with instance.sql_engine.connect() as connection:
        row = _row(connection, authorisation_id)
        record = _granting_decision(instance, connection, row)
        measurements = [_measurement_view(m._mapping) for m in connection.execute(_measurements_of(authorisation_id))]
        chain = _chain(connection, row)
    return {
        "authorisation": authorisation_view(row),
        "requester": record["requester"] if record else None,
        "baseline": _baseline(record),
        "measurements": measurements,
        "chain": [authorisation_view(link) for link in chain],
    }


@dataclass(frozen=True)
class Due:
    days: int
    include_overdue: bool = False
    patient_hash: str | None = None
    limit: int = 50
    cursor: str | None = None
    requester: str | None = None  # only the authorisations this requester's decisions or cases were granted


def due_from(args: Mapping[str, str], patient_hash: str | None, requester: str | None = None) -> Due:
    """The due-for-review query arguments (API or console), checked; `patient_hash` of patient_ref,
    `requester` for a caller who may see only their own requests' authorisations."""
    known_arguments(args, DUE_ARGUMENTS, "an argument here")
    given = {key: value.strip() for key, value in args.items() if value.strip()}
    overdue = given.get("include_overdue", "false")
    if overdue not in ("true", "false"):
        raise RequestError(
            "unknown_value", f"include_overdue must be true or false, found {overdue[:20]!r}", "include_overdue"
        )
    days = whole_argument(given, "expiring_within_days", 1, MAX_DUE_DAYS)
    if days is None:
        raise RequestError("missing_field", "expiring_within_days is required", "expiring_within_days")
    due = Due(
        days=days,
        include_overdue=overdue == "true",
        patient_hash=patient_hash,
        limit=whole_argument(given, "limit", 1, MAX_PAGE) or 50,
        cursor=given.get("cursor"),
        requester=requester,
    )
    _after(due)  # a cursor this service did not give is refused here
    return due


def _cursor_of(row: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps([row["valid_until"], row["id"]]).encode()).decode().rstrip("=")


def _after(due: Due) -> list[str] | None:
    if due.cursor is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(due.cursor + "=" * (-len(due.cursor) % 4)))
    except (ValueError, binascii.Error):
        decoded = None
    if not isinstance(decoded, list) or len(decoded) != 2 or not all(isinstance(v, str) for v in decoded):
        raise RequestError("unknown_value", "cursor is not one this service gave", "cursor")
    return decoded


def due_for_review(instance, due: Due, criteria: Mapping[str, tuple[str, ...]] | None = None) -> dict:
    """Authorisations whose last valid day is within `days` from today, soonest first; with
    include_overdue, also those that ended in the last `days` days and were not continued. Each
    with `unmeasured`: the measures of its baseline, and those its rule's review criteria name
    (`criteria`: rule id -> measures, from the rulebook served), with no measurement taken since
    it started. {"authorisations", "next_cursor"}."""
    criteria = criteria or {}
    c = authorisations.c
    today = clock.utc_today()
    horizon = (today + datetime.timedelta(days=due.days)).isoformat()
    later = aliased(authorisations)
    continued = exists().where(later.c.previous_id == c.id)
    if due.include_overdue:
        start = (today - datetime.timedelta(days=due.days)).isoformat()
        conditions = [c.valid_until >= start, or_(c.valid_until >= today.isoformat(), ~continued)]
    else:
        conditions = [c.valid_until >= today.isoformat()]
    conditions.append(c.valid_until <= horizon)
    if due.patient_hash is not None:
        conditions.append(c.patient_ref_hash == due.patient_hash)
    if due.requester is not None:
        a, r = audit_records.c, review_cases.c
        conditions.append(
            or_(
                exists().where(a.decision_id == c.decision_id, a.requester == due.requester),
                exists().where(r.id == c.case_id, r.requester == due.requester),
            )
        )
    after = _after(due)
    if after is not None:
        conditions.append(tuple_(c.valid_until, c.id) > tuple_(*after))
    query = select(authorisations).where(*conditions).order_by(c.valid_until, c.id).limit(due.limit + 1)
    m = authorisation_measurements.c
    with instance.sql_engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(query)]
        more = len(rows) > due.limit
        rows = rows[: due.limit]
        starts = {row["id"]: row["valid_from"] for row in rows}
        measured = {
            (r.authorisation_id, r.measure)
            for r in connection.execute(
                select(m.authorisation_id, m.measure, m.taken_on).where(m.authorisation_id.in_(starts))
            )
            if r.taken_on >= starts[r.authorisation_id]
        }
        baselines = {row["id"]: _baseline(_granting_decision(instance, connection, row)) for row in rows}
    return {
        "authorisations": [
            {
                **authorisation_view(row),
                "days_left": (datetime.date.fromisoformat(row["valid_until"]) - today).days,
                "unmeasured": sorted(
                    ({o["measure"] for o in baselines[row["id"]]} | set(criteria.get(row["rule_id"] or "", ())))
                    - {name for i, name in measured if i == row["id"]}
                ),
            }
            for row in rows
        ],
        "next_cursor": _cursor_of(rows[-1]) if more else None,
    }


def continuation_request(
    instance, vocabulary: Vocabulary, authorisation_id: str, extra, base: dict | None = None
) -> tuple[dict, Continuing]:
    """The request a continuation of this authorisation is decided on, and what its benefit is
    judged from.

    The request is the granting decision's (or `base`, a continuation case's request) with the
    `extra` facts, the authorisation's code and `course: continuation`, the patient's age moved on
    by the time since the initial decision and pregnancy asked again; its observations add the
    measurements recorded against the authorisation and the extra ones, so the rules see the
    patient as now. Current readings are those taken since the authorisation began (never the
    baseline's own); the baseline: the initial authorisation's decision's observations, and
    measurements recorded against it taken before the day it began. Readings of a measure the
    rulebook no longer knows are left out. Refuses an authorisation, a link of its chain or a
    measurement that fails its integrity check (Tampered), or one continued already (AlreadyContinued).
    """
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise RequestError("wrong_type", "the body must be an object of request fields to add (or empty)", "")
    given_diagnosis: dict = extra["diagnosis"] if isinstance(extra.get("diagnosis"), dict) else {}
    for name, present in (
        ("diagnosis.code", "code" in given_diagnosis),
        ("diagnosis.text", "text" in given_diagnosis),
        ("diagnosis", "diagnosis" in extra and not isinstance(extra["diagnosis"], dict)),
        ("course", "course" in extra),
    ):
        if present:
            raise RequestError(
                "conflicting_values",
                f"{name} cannot be given: a continuation is of the authorisation's diagnosis, as a continuation",
                name,
            )
    if isinstance(extra.get("patient"), dict) and ("ref" in extra["patient"] or "ref_hash" in extra["patient"]):
        raise RequestError("conflicting_values", "the patient is the authorisation's and cannot change", "patient.ref")
    today = clock.utc_today()
    with instance.sql_engine.connect() as connection:
        row = _row(connection, authorisation_id)
        chain = _chain(connection, row)
        if chain[-1]["id"] != authorisation_id:
            raise AlreadyContinued(authorisation_id, chain[chain.index(row) + 1]["id"])
        first = chain[0]
        for link in (first, row):
            if not instance.audit.row_intact(authorisations, link):
                raise Tampered(link["id"])
        initial = _granting_decision(instance, connection, first)
        granting = initial if first["id"] == row["id"] else _granting_decision(instance, connection, row)
        measured = {
            link["id"]: [dict(m._mapping) for m in connection.execute(_measurements_of(link["id"]))]
            for link in {first["id"]: first, row["id"]: row}.values()
        }
    for rows in measured.values():
        for m in rows:
            if not instance.audit.row_intact(authorisation_measurements, m):
                raise Tampered(m["authorisation_id"])

    def known(o) -> bool:  # a reading the rulebook can still read (stored data, not the caller's)
        measure = vocabulary.measures.get(str(o.get("measure"))) if isinstance(o, dict) else None
        return measure is not None and o.get("unit") in measure.units

    stored = copy.deepcopy(base if base is not None else (granting["body"]["request"] if granting else {}))
    stored_observations = [o for o in stored.get("observations") or [] if known(o)]
    extra_observations = extra.get("observations") or []
    if not isinstance(extra_observations, list):
        raise RequestError("wrong_type", "observations must be a list", "observations")
    extra_readings = [_reading(o, f"observations[{i}]", vocabulary, today) for i, o in enumerate(extra_observations)]
    baseline_given = [o for o in _baseline(initial) if known(o)]
    baseline_days = {(o["measure"], o["taken_on"]) for o in baseline_given}
    since_start = [
        m for m in measured[row["id"]] if m["taken_on"] >= row["valid_from"] and m["measure"] in vocabulary.measures
    ]
    current_given = [
        {"measure": m["measure"], "value": m["value_given"], "unit": m["unit_given"], "taken_on": m["taken_on"]}
        for m in since_start
    ]
    baseline = [_reading(o, "", vocabulary, today) for o in baseline_given] + [
        Reading(m["measure"], m["value"], datetime.date.fromisoformat(m["taken_on"]))
        for m in measured[first["id"]]
        if m["taken_on"] < first["valid_from"] and m["measure"] in vocabulary.measures
    ]  # a reading on the first day counts as current, not both
    # A continuation case's request (`base`) holds this continuation's earlier extra readings; the
    # granting request holds the previous link's, which are not this one's. Later in the list wins a tie.
    earlier_extra = stored_observations if base is not None else []
    current = [
        reading
        for reading in (
            *(_reading(o, "", vocabulary, today) for o in earlier_extra + current_given),
            *extra_readings,
        )
        if reading.taken_on.isoformat() >= row["valid_from"]
        and (reading.measure, reading.taken_on.isoformat()) not in baseline_days
    ]
    payload = merged(
        stored, {name: value for name, value in extra.items() if name not in ("observations", "diagnosis")}
    )
    patient = payload.get("patient") if isinstance(payload.get("patient"), dict) else None
    if patient is not None:
        patient.pop("ref_hash", None)
        patient.pop("ref", None)
        given_patient: dict = extra["patient"] if isinstance(extra.get("patient"), dict) else {}
        if "pregnant" not in given_patient:
            patient.pop("pregnant", None)  # asked again: a pregnancy at the initial request may be over
        if "age_years" not in given_patient:
            _age_now(patient, initial)
    diagnosis = payload.get("diagnosis")
    if not isinstance(diagnosis, dict):
        diagnosis = {}
    payload["diagnosis"] = {
        **{k: v for k, v in {**diagnosis, **given_diagnosis}.items() if k not in ("code", "text")},
        "code": icd10.dotted(row["code"]),
    }
    payload["course"] = "continuation"
    payload["observations"] = _latest_per_day([*stored_observations, *current_given, *extra_observations])
    return payload, Continuing(row, tuple(baseline), tuple(current))


def _age_now(patient: dict, initial: dict | None) -> None:
    """The age the initial request gave, moved on by the time since its decision (to 0.01 year)."""
    request = initial["body"]["request"] if initial else {}
    given = (request.get("patient") or {}).get("age_years") if isinstance(request, dict) else None
    if isinstance(given, (int, float)) and not isinstance(given, bool) and initial is not None:
        elapsed = clock.seconds_since(initial["created_at"]) / (365.25 * 86400)
        patient["age_years"] = round(given + max(elapsed, 0), 2)


def _reading(raw, at: str, vocabulary: Vocabulary, today: datetime.date) -> Reading:
    measured = observation(raw, at, vocabulary, today)
    return Reading(measured.measure.id, measured.value, measured.taken_on)


def _latest_per_day(observations: list) -> list:
    """One observation per measure and day (the one given last), the latest MAX_OBSERVATIONS."""
    kept: dict[tuple, object] = {}
    for item in observations:
        key = (item.get("measure"), item.get("taken_on")) if isinstance(item, dict) else (id(item), None)
        kept.pop(key, None)
        kept[key] = item
    dated = sorted(kept.values(), key=lambda o: str(o.get("taken_on")) if isinstance(o, dict) else "")
    return dated[-MAX_OBSERVATIONS:]


def merged(base: dict, extra: dict) -> dict:
    """A request with extra fields; an object field is merged one level deep."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        merged[key] = (
            {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _measurements_of(authorisation_id: str):
    m = authorisation_measurements.c
    return (
        select(authorisation_measurements)
        .where(m.authorisation_id == authorisation_id)
        .order_by(m.taken_on, m.created_at)
    )
