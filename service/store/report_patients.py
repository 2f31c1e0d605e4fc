"""The rows the utilisation report counts patients in, one a source row (issue 17).

Counting distinct patients per group over a year (about 1,150,000 decisions, pre-approvals,
authorisations and administrations) meant sorting every (group, patient) pair of the four tables
in the database's temporary storage: 3.5-4.5 s on SQLite. So each row that names a patient is
copied, as it is written and in its transaction, to `report_patients` with the values the report
groups it by and the day it counts in; an index (group, patient, day) then gives each group's
patients in order, and the database counts them without a sort. An administration is grouped by
its authorisation's rule and basis, an authorisation by the requester of its decision: both are
read when the row is written (neither changes afterwards). The table is derived and adds
nothing, so it carries no binding; migration 0016 derives it from the four tables with the same
joins the report used before, and tests/test_reports.py checks that what the service writes is
what the migration derives.
"""

from sqlalchemy import delete, select

from service.store.tables import administrations, audit_records, authorisations, report_patients

SOURCES = ("decision", "preapproval")  # the kinds of record whose own fields make a row


def _row(source: str, source_id, day: str, patient: str, **groups) -> dict:
    values = {"code": None, "rule_id": None, "outcome": None, "requester": None, "product": None} | groups
    return {
        "source": source,
        "source_id": str(source_id),
        "day": day,
        "month": day[:7],
        "patient_ref_hash": patient,
        **values,
    }


def of_record(record_id: int, fields: dict) -> dict | None:
    """A decision's or pre-approval's row, from its record's indexed fields (None: no patient)."""
    if fields.get("kind") not in SOURCES or not fields.get("patient_ref_hash"):
        return None
    groups = {name: fields.get(name) for name in ("code", "rule_id", "outcome", "requester")}
    return _row(fields["kind"], record_id, fields["created_at"][:10], fields["patient_ref_hash"], **groups)


def of_authorisation(row: dict, requester: str | None) -> dict | None:
    """An authorisation's row; `requester`: its decision's (None: no patient)."""
    if not row.get("patient_ref_hash"):
        return None
    groups = {"code": row["code"], "rule_id": row["rule_id"], "outcome": row["basis"], "requester": requester}
    return _row("authorisation", row["id"], row["created_at"][:10], row["patient_ref_hash"], **groups)


def of_administration(row: dict, rule_id: str | None, basis: str | None) -> dict:
    """An administration's row; `rule_id`, `basis`: its authorisation's (None: given without one)."""
    groups = {"code": row["code"], "rule_id": rule_id, "outcome": basis, "product": row["product"]}
    return _row("administration", row["id"], row["given_on"], row["patient_ref_hash"], **groups)


def of_bound(connection, table, row: dict) -> dict | None:
    """An authorisation's or administration's row as it is written, its decision's requester or its
    authorisation's rule and basis read in the same transaction (None: another table)."""
    if table is authorisations:
        r = audit_records.c
        decision = row.get("decision_id")
        requester = (
            connection.execute(select(r.requester).where(r.decision_id == decision)).scalar() if decision else None
        )
        return of_authorisation(row, requester)
    if table is administrations:
        u = authorisations.c
        authorised = None
        if row.get("authorisation_id"):
            authorised = connection.execute(select(u.rule_id, u.basis).where(u.id == row["authorisation_id"])).first()
        return of_administration(row, *(authorised if authorised is not None else (None, None)))
    return None


_INSERT = report_patients.insert()


def write(connection, rows: list[dict], kind: str) -> set[tuple[str, str]]:
    """Insert the rows; a rows_bound record rewrites rows already written (deleted and inserted
    again, bound, as they were), so their rows are rewritten too (and a row written outside the
    service gains one). Returns the (source, source_id) of the rows that were there before, which
    the reports have counted already."""
    replaced = set()
    if kind == "rows_bound":
        t = report_patients.c
        for row in rows:
            deleted = connection.execute(
                delete(report_patients).where(t.source == row["source"], t.source_id == row["source_id"])
            )
            if deleted.rowcount:
                replaced.add((row["source"], row["source_id"]))
    connection.execute(_INSERT, rows)
    return replaced
