"""Administrations: what was given against an authorisation, and the discrepancies found.

An administration names the authorisation it was given under, or the pre-approval it was
dispensed on (whose authorisation it then is). It is checked (service/decide/administration.py)
against the authorisation, the dosing profile and dose-determining weight of its pre-approval
(the one named, else the latest under the authorisation on or before the day given) and the
administrations already recorded under the authorisation. It is never refused for what it
found: each difference is a discrepancy stored with it, in one audit record, open until a
pharmacist resolves it with a reason (one more record). A `source_id` (the pharmacy system's
dispense id) is recorded once: a second administration with it is AlreadyRecorded.
"""

import csv
import datetime
import io
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import and_, exists, select
from sqlalchemy.exc import IntegrityError

from service import clock
from service.decide import administration as checking
from service.decide.dosing import Weight
from service.decide.formulary import Formulary
from service.decide.request import RequestError, known_arguments, visible, whole_argument
from service.rulebook import icd10
from service.rulebook.model import DosingProfile, Range
from service.store.audit import AuditUnavailable
from service.store.tables import (
    administrations,
    audit_records,
    authorisations,
    discrepancies,
    discrepancy_resolutions,
)
from service.workflow.authorisations import profile_of
from service.workflow.cases import required_reason

MAX_PAGE = 500
PREAPPROVALS_SEARCHED = 200  # a patient's latest pre-approval records read to find the authorisation's
STATUSES = ("open", "resolved")
# The columns of a pharmacy system's export (`formulary administrations import`); `vials` is
# "SIZExCOUNT" lines separated by ';' ("10x3;5x1": three 10 g vials and one 5 g vial).
CSV_COLUMNS = (
    "dispense_id",
    "authorisation_id",
    "preapproval_id",
    "patient_ref",
    "product",
    "lot",
    "vials",
    "grams_given",
    "grams_wasted",
    "given_on",
    "site",
)


class AlreadyRecorded(Exception):
    """An administration with this source_id is recorded already."""

    def __init__(self, source_id: str, administration_id: str):
        super().__init__(f"dispense {source_id!r} is recorded already, as administration {administration_id}")
        self.administration_id = administration_id


class AlreadyResolved(Exception):
    """The discrepancy was resolved already."""


class NoSuchAdministration(Exception):
    """No such administration."""


class NoSuchDiscrepancy(Exception):
    """No such discrepancy."""


def _preapproval(connection, record_id: int) -> dict | None:
    row = connection.execute(
        select(audit_records.c.content).where(audit_records.c.id == record_id, audit_records.c.kind == "preapproval")
    ).first()
    return None if row is None else json.loads(row.content)


def _latest_preapproval(connection, patient_hash: str, authorisation_id: str, on: datetime.date) -> dict | None:
    """The patient's latest pre-approval under this authorisation made on or before `on`."""
    a = audit_records.c
    rows = connection.execute(
        select(a.content)
        .where(
            a.patient_ref_hash == patient_hash,
            a.kind == "preapproval",
            a.created_at < clock.day_start(on + datetime.timedelta(days=1)),
        )
        .order_by(a.id.desc())
        .limit(PREAPPROVALS_SEARCHED)
    )
    for row in rows:
        record = json.loads(row.content)
        if ((record["body"].get("result") or {}).get("authorisation") or {}).get("id") == authorisation_id:
            return record
    return None


def _profile(raw: dict) -> DosingProfile:
    """A pre-approval's dosing profile (the limits it applied) as the model's."""
    return DosingProfile(
        raw["id"],
        Range(**raw["g_per_kg"]),
        Range(**raw["interval_days"]),
        courses=raw.get("courses"),
        monthly=raw.get("monthly", False),
    )


def _authorised(
    instance, formulary: Formulary, given: checking.Administration, patient_hash: str
) -> tuple[dict | None, checking.Authorised]:
    """The authorisation row (or None) and what the administration is checked against; a
    RequestError for a pre-approval or authorisation that is not this patient's or does not exist."""
    product = formulary.rulebook.products[given.product]
    vials = product.vial_sizes_g
    with instance.sql_engine.connect() as connection:
        preapproval = None
        if given.preapproval_id is not None:
            preapproval = _preapproval(connection, given.preapproval_id)
            if preapproval is None:
                raise RequestError(
                    "unknown_value", f"preapproval_id {given.preapproval_id} is not a pre-approval", "preapproval_id"
                )
            if preapproval["patient_ref_hash"] != patient_hash:
                raise RequestError(
                    "conflicting_values",
                    f"pre-approval {given.preapproval_id} is of another patient than patient.ref",
                    "preapproval_id",
                )
        result = preapproval["body"]["result"] if preapproval else {}
        from_preapproval = (result.get("authorisation") or {}).get("id")
        authorisation_id = given.authorisation_id or from_preapproval
        if given.authorisation_id and preapproval and from_preapproval != given.authorisation_id:
            raise RequestError(
                "conflicting_values",
                f"pre-approval {given.preapproval_id} was under authorisation {from_preapproval}, "
                f"not {given.authorisation_id}",
                "authorisation_id",
            )
        if authorisation_id is None:
            decision = result.get("decision") or {}
            return None, checking.Authorised(
                None,
                no_authorisation=f"pre-approval {given.preapproval_id} found none (its decision: "
                f"{decision.get('outcome', 'none')})",
                vial_sizes_g=vials,
            )
        row = connection.execute(select(authorisations).where(authorisations.c.id == authorisation_id)).first()
        if row is None:
            raise RequestError(
                "unknown_value", f"authorisation_id {authorisation_id!r} is not an authorisation", "authorisation_id"
            )
        authorisation = dict(row._mapping)
        if authorisation["patient_ref_hash"] != patient_hash:
            raise RequestError(
                "conflicting_values",
                f"authorisation {authorisation_id} is of another patient than patient.ref",
                "authorisation_id",
            )
        if not instance.audit.row_intact(authorisations, authorisation):
            return authorisation, checking.Authorised(authorisation_id, intact=False, vial_sizes_g=vials)
        if preapproval is None:
            preapproval = _latest_preapproval(connection, patient_hash, authorisation_id, given.given_on)
            result = preapproval["body"]["result"] if preapproval else {}
        a = administrations.c
        earlier = tuple(
            checking.Given(datetime.date.fromisoformat(r.given_on), r.grams_given)
            for r in connection.execute(
                select(a.given_on, a.grams_given).where(
                    a.authorisation_id == authorisation_id, a.given_on <= given.given_on.isoformat()
                )
            )
        )
    weight = result.get("weight")
    dose = result.get("dose") or {}
    ordered = (preapproval["body"].get("order") or {}).get("product") if preapproval else None
    return authorisation, checking.Authorised(
        authorisation_id,
        products=tuple(json.loads(authorisation["products"])),
        valid_from=datetime.date.fromisoformat(authorisation["valid_from"]),
        valid_until=datetime.date.fromisoformat(authorisation["valid_until"]),
        profile=_profile(result["dosing_profile"])
        if result.get("dosing_profile")
        else profile_of({"dosing": json.loads(authorisation["dosing"])}),
        weight=Weight(**weight) if weight else None,
        weight_from=f"pre-approval {preapproval['id']} on {preapproval['created_at'][:10]}" if preapproval else "",
        preapproval_id=preapproval["id"] if preapproval else None,
        preapproved_product=_product(formulary, ordered),
        preapproved_grams=dose.get("rounded_grams") if dose.get("rounded_grams") is not None else dose.get("grams"),
        preapproval_held=tuple(r["message"] for r in result.get("reasons", []) if not r["ok"])
        if preapproval and given.preapproval_id is not None
        else (),
        vial_sizes_g=vials,
        earlier=earlier,
    )


def _product(formulary: Formulary, ordered) -> str | None:
    """The product a pre-approval's order named, by its formulary name (None: none, or no longer known)."""
    try:
        return formulary.vocabulary.product(ordered, "product")
    except RequestError:
        return None


def _existing(connection, source_id: str) -> str | None:
    return connection.execute(select(administrations.c.id).where(administrations.c.source_id == source_id)).scalar()


def record(instance, formulary: Formulary, body, requester: str, today: datetime.date | None = None) -> dict:
    """Check and record one administration with its discrepancies; returns it as administration_view does."""
    given = checking.read_administration(body, formulary.vocabulary, today or clock.utc_today())
    if given.source_id is not None:
        with instance.sql_engine.connect() as connection:
            existing = _existing(connection, given.source_id)
        if existing:
            raise AlreadyRecorded(given.source_id, existing)
    patient_hash = instance.audit.patient_hash(given.patient_ref)
    authorisation, authorised = _authorised(instance, formulary, given, patient_hash)
    price = formulary.rulebook.products[given.product].price_per_g
    now = clock.utc_now()
    row = {
        "id": str(uuid.uuid4()),
        "created_at": now,
        "source_id": given.source_id,
        "authorisation_id": authorised.authorisation_id,
        "preapproval_id": authorised.preapproval_id,
        "patient_ref_hash": patient_hash,
        "code": authorisation["code"] if authorisation else None,
        "product": given.product,
        "lot": given.lot,
        "vials": json.dumps([{"size_g": v.size_g, "count": v.count} for v in given.vials]),
        "grams_given": given.grams_given,
        "grams_wasted": given.grams_wasted,
        "given_on": given.given_on.isoformat(),
        "site": given.site,
        "recorded_by": requester,
        "price_per_g": price.per_g if price else None,
        "currency": price.currency if price else None,
    }
    found = [
        {"id": str(uuid.uuid4()), "administration_id": row["id"], "created_at": now, **d.to_dict()}
        for d in checking.discrepancies(given, authorised)
    ]
    try:
        instance.audit.append(
            "administration",
            {"administration": row, "discrepancies": found},
            bind=[(administrations, row), *((discrepancies, d) for d in found)],
            created_at=now,
            requester=requester,
            status=201,
            code=row["code"],
            patient_ref_hash=patient_hash,
            rule_id=authorisation["rule_id"] if authorisation else None,
        )
    except AuditUnavailable as error:
        if given.source_id is not None and isinstance(error.__cause__, IntegrityError):
            with instance.sql_engine.connect() as connection:
                recorded = _existing(connection, given.source_id)
            if recorded:  # recorded by a concurrent request since it was looked for
                raise AlreadyRecorded(given.source_id, recorded) from None
        raise
    return administration_view(row, [{**d, "resolution": None} for d in found])


def administration_view(row: Mapping, found: list[dict]) -> dict:
    """An administration as the API shows it: its vials, its cost where a price is known, its discrepancies."""
    data = {
        k: v
        for k, v in dict(row).items()
        if k not in ("patient_ref_hash", "binding", "record_id", "price_per_g", "currency")
    }
    data["vials"] = json.loads(data["vials"])
    data["code"] = icd10.dotted(data["code"]) if data["code"] else None
    opened = round(row["grams_given"] + row["grams_wasted"], 2)
    if row["price_per_g"] is None:
        data["cost"] = {
            "amount": None,
            "currency": None,
            "note": f"no price: data/products.yaml gives no price_per_g for {row['product']}",
        }
    else:
        data["cost"] = {
            "amount": round(opened * row["price_per_g"], 2),
            "currency": row["currency"],
            "note": f"{opened:g} g opened at the committee's local price of {row['price_per_g']:g} {row['currency']}/g",
        }
    data["discrepancies"] = [_discrepancy_view(d) for d in found]
    return data


def _discrepancy_view(row: Mapping) -> dict:
    data = {k: v for k, v in dict(row).items() if k not in ("binding", "record_id")}
    resolution = data.get("resolution")
    data["status"] = "resolved" if resolution else "open"
    return data


def _resolutions(connection, ids: list[str]) -> dict[str, dict]:
    r = discrepancy_resolutions.c
    return (
        {
            row.discrepancy_id: {
                "id": row.id,
                "reason": row.reason,
                "resolved_by": row.resolved_by,
                "created_at": row.created_at,
            }
            for row in connection.execute(select(discrepancy_resolutions).where(r.discrepancy_id.in_(ids)))
        }
        if ids
        else {}
    )


def _with_discrepancies(connection, rows: list[dict]) -> list[dict]:
    d = discrepancies.c
    found: dict[str, list[dict]] = {row["id"]: [] for row in rows}
    listed = (
        [
            dict(r._mapping)
            for r in connection.execute(
                select(discrepancies).where(d.administration_id.in_(list(found))).order_by(d.created_at, d.id)
            )
        ]
        if found
        else []
    )
    resolved = _resolutions(connection, [x["id"] for x in listed])
    for item in listed:
        found[item["administration_id"]].append({**item, "resolution": resolved.get(item["id"])})
    return [administration_view(row, found[row["id"]]) for row in rows]


def administrations_of(instance, authorisation_id: str) -> list[dict]:
    """The administrations under an authorisation, in the order given, each with its discrepancies."""
    a = administrations.c
    with instance.sql_engine.connect() as connection:
        rows = [
            dict(r._mapping)
            for r in connection.execute(
                select(administrations).where(a.authorisation_id == authorisation_id).order_by(a.given_on, a.created_at)
            )
        ]
        return _with_discrepancies(connection, rows)


def get_administration(instance, administration_id: str) -> dict:
    with instance.sql_engine.connect() as connection:
        row = connection.execute(select(administrations).where(administrations.c.id == administration_id)).first()
        if row is None:
            raise NoSuchAdministration(administration_id)
        return _with_discrepancies(connection, [dict(row._mapping)])[0]


@dataclass(frozen=True)
class DiscrepancyQuery:
    status: str = "open"
    limit: int = 100


def query_from(args: Mapping[str, str]) -> DiscrepancyQuery:
    """GET /v1/discrepancies arguments (API or console), checked."""
    known_arguments(args, ("status", "limit"), "an argument here")
    status = (args.get("status") or "open").strip()
    if status not in STATUSES:
        raise RequestError("unknown_value", f"status must be open or resolved, found {status[:20]!r}", "status")
    return DiscrepancyQuery(
        status, whole_argument({k: v for k, v in args.items() if v.strip()}, "limit", 1, MAX_PAGE) or 100
    )


def list_discrepancies(instance, query: DiscrepancyQuery) -> dict:
    """Open discrepancies oldest first (the work queue), or resolved ones newest first, with the
    administration each was found in."""
    d, a, r = discrepancies.c, administrations.c, discrepancy_resolutions.c
    resolved = exists().where(r.discrepancy_id == d.id)
    condition = ~resolved if query.status == "open" else resolved
    order = (d.created_at, d.id) if query.status == "open" else (d.created_at.desc(), d.id.desc())
    statement = (
        select(discrepancies, a.authorisation_id, a.product, a.given_on, a.source_id)
        .join(administrations, and_(a.id == d.administration_id))
        .where(condition)
        .order_by(*order)
        .limit(query.limit)
    )
    with instance.sql_engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(statement)]
        resolutions = _resolutions(connection, [row["id"] for row in rows])
    return {"discrepancies": [_discrepancy_view({**row, "resolution": resolutions.get(row["id"])}) for row in rows]}


def resolve(instance, discrepancy_id: str, body, requester: str) -> dict:
    """Resolve an open discrepancy with a reason (AlreadyResolved when it was)."""
    if not isinstance(body, dict):
        raise RequestError("wrong_type", "the body must be an object", "")
    known_arguments(body, ("reason",), "a known field")
    reason = required_reason(body.get("reason"))
    d, a = discrepancies.c, administrations.c
    with instance.sql_engine.connect() as connection:
        found = connection.execute(
            select(discrepancies, a.patient_ref_hash, a.code)
            .join(administrations, a.id == d.administration_id)
            .where(d.id == discrepancy_id)
        ).first()
        if found is None:
            raise NoSuchDiscrepancy(discrepancy_id)
        if _resolutions(connection, [discrepancy_id]):
            raise AlreadyResolved(f"discrepancy {discrepancy_id} is resolved already")
    resolution = {
        "id": str(uuid.uuid4()),
        "discrepancy_id": discrepancy_id,
        "created_at": clock.utc_now(),
        "reason": reason,
        "resolved_by": requester,
    }
    try:
        instance.audit.append(
            "discrepancy_resolution",
            {"resolution": resolution, "discrepancy": {"id": discrepancy_id, "kind": found.kind}},
            bind=[(discrepancy_resolutions, resolution)],
            requester=requester,
            status=201,
            code=found.code,
            patient_ref_hash=found.patient_ref_hash,
        )
    except AuditUnavailable as error:
        if isinstance(error.__cause__, IntegrityError):  # resolved by a concurrent request
            raise AlreadyResolved(f"discrepancy {discrepancy_id} is resolved already") from None
        raise
    view = {k: v for k, v in found._mapping.items() if k not in ("binding", "record_id", "patient_ref_hash", "code")}
    return _discrepancy_view({**view, "resolution": {k: v for k, v in resolution.items() if k != "discrepancy_id"}})


# --- A pharmacy system's export, as CSV ---


def body_from_fields(row: dict[str, str]) -> dict:
    """One CSV row as the JSON body it stands for; a RequestError names the column."""
    given = {k: visible(v or "") for k, v in row.items() if k}
    body: dict = {"patient": {"ref": given.get("patient_ref") or None}}
    for name in ("authorisation_id", "product", "lot", "given_on", "site"):
        if given.get(name):
            body[name] = given[name]
    if given.get("dispense_id"):
        body["source_id"] = given["dispense_id"]
    for name in ("grams_given", "grams_wasted", "preapproval_id"):
        text = given.get(name)
        if text:
            try:
                body[name] = int(text) if name == "preapproval_id" else float(text)
            except ValueError:
                kind = "a whole number" if name == "preapproval_id" else "a number"
                raise RequestError("wrong_type", f"{name} must be {kind}, found {text[:20]!r}", name) from None
    if given.get("vials"):
        body["vials"] = []
        for part in given["vials"].split(";"):
            size, _, count = part.strip().lower().partition("x")
            try:
                body["vials"].append({"size_g": float(size), "count": int(count)})
            except ValueError:
                raise RequestError(
                    "invalid_value",
                    f"vials must be SIZExCOUNT lines separated by ';' (10x3;5x1), found {part.strip()[:20]!r}",
                    "vials",
                ) from None
    return body


def column_of(field: str | None) -> str:
    """The CSV column a body field comes from."""
    name = (field or "").split(".")[0].split("[")[0]
    return {"patient": "patient_ref", "source_id": "dispense_id"}.get(name, name or "row")


def read_csv(text: str) -> list[tuple[int, dict[str, str]]]:
    """(row number, row) for each data row of a pharmacy export; refuses unknown columns and a
    file without dispense_id (RequestError, field "file")."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = reader.fieldnames or []
        unknown = [c for c in columns if c not in CSV_COLUMNS]
        if unknown or "dispense_id" not in columns:
            raise RequestError(
                "invalid_csv",
                f"unknown or missing columns {unknown or ['dispense_id']}; the columns are {', '.join(CSV_COLUMNS)} "
                "(dispense_id required)",
                "file",
            )
        return list(enumerate(reader, start=2))  # row 1 is the header
    except csv.Error as error:
        raise RequestError("invalid_csv", f"the CSV cannot be read: {error}", "file") from None


def import_rows(
    instance, formulary: Formulary, rows: list[tuple[int, dict[str, str]]], requester: str, progress=None
) -> dict:
    """Record each row of a pharmacy export (read_csv); idempotent by dispense_id: a row whose
    dispense_id is recorded is counted already present, not recorded again.
    {"rows", "imported", "already_present", "rejected": [{"row", "column", "message"}], "discrepancies"}."""
    summary: dict = {"rows": len(rows), "imported": 0, "already_present": 0, "rejected": [], "discrepancies": 0}
    for number, row in rows:
        try:
            if not visible(row.get("dispense_id") or ""):
                raise RequestError(
                    "missing_field", "dispense_id is required: it is what makes a re-import safe", "dispense_id"
                )
            recorded = record(instance, formulary, body_from_fields(row), requester)
            summary["imported"] += 1
            summary["discrepancies"] += len(recorded["discrepancies"])
        except AlreadyRecorded:
            summary["already_present"] += 1
        except RequestError as error:
            summary["rejected"].append({"row": number, "column": column_of(error.field), "message": error.message})
        if progress:
            progress(1)
    return summary
