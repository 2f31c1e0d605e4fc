"""Authorisations: permission to give IVIG to one patient for one diagnosis until a date.

A positive decision for an identified patient, or an approved review, grants one (see
service/workflow/cases.py). It carries the dosing profile and the rulebook version it was
granted under, so a new rulebook applies at the next continuation, not to an authorisation
already given. Pre-approval looks up the valid one for an order, and refuses one that is not as
the service wrote it (its binding to the granting audit record fails: service/store/audit.py).
"""

import datetime
import json
import uuid
from dataclasses import asdict

from sqlalchemy import select

from service import clock
from service.rulebook import icd10
from service.rulebook.model import DosingProfile, Range
from service.store.tables import authorisations


class Tampered(Exception):
    """A stored authorisation fails its integrity check: it was forged or altered in the database."""

    def __init__(self, authorisation_id: str):
        super().__init__(authorisation_id)
        self.authorisation_id = authorisation_id


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
) -> dict:
    """The row of a new authorisation (valid_until is the last valid day)."""
    start = today or clock.utc_today()
    profile = rulebook.dosing_for(rule)
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
    }


def authorisation_view(row) -> dict:
    """An authorisation as the API shows it (the dosing profile expanded, the code dotted)."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    data["products"] = json.loads(data["products"])
    data["dosing"] = json.loads(data["dosing"])
    data["code"] = icd10.dotted(data["code"])
    data.pop("patient_ref_hash", None)
    data.pop("binding", None)
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
