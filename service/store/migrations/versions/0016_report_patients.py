"""Stewardship reports (issue 17): every row the utilisation report counts a patient in (a decision's
or pre-approval's record, an authorisation, an administration), with the values it is grouped by
and the day it counts in, indexed by (group, patient, day) so each group's distinct patients are
read in order off an index rather than sorted (service/store/report_patients.py). The table is
derived: this migration fills it from the four tables with the joins the report used until now
(an administration takes its authorisation's rule and basis, an authorisation its decision's
requester); the service writes it from then on, and rebuilding it means running this again.
Also covering indexes for the report's aggregates of what was given (administrations by day with
what they are grouped and summed by; authorisations' rule and basis by id) and for the review
turnaround (cases by opening time with their due time, status and id).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ADMINISTRATION_REPORT = [
    "given_on",
    "authorisation_id",
    "code",
    "product",
    "currency",
    "grams_given",
    "grams_wasted",
    "price_per_g",
]
INDEXES = {
    "code": ["code", "patient_ref_hash", "day"],
    "rule": ["rule_id", "patient_ref_hash", "day"],
    "outcome": ["outcome", "patient_ref_hash", "day"],
    "requester": ["requester", "patient_ref_hash", "day", "source"],
    "product": ["product", "patient_ref_hash", "day"],
    "month": ["month", "patient_ref_hash", "day"],
    "patient": ["patient_ref_hash", "day", "source", "code", "rule_id"],
}


def upgrade():
    table = op.create_table(
        "report_patients",
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("source_id", sa.String(36), primary_key=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("patient_ref_hash", sa.String(64), nullable=False),
        sa.Column("code", sa.String(16)),
        sa.Column("rule_id", sa.String(128)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("requester", sa.String(128)),
        sa.Column("product", sa.String(128)),
    )
    names = ("created_at", "patient_ref_hash", "code", "rule_id", "outcome", "requester")
    a = sa.table("audit_records", sa.column("id"), sa.column("kind"), sa.column("decision_id"), *map(sa.column, names))
    u = sa.table(
        "authorisations", *map(sa.column, ("id", "created_at", "patient_ref_hash", "code", "rule_id", "basis", "decision_id"))
    )
    d = sa.table(
        "administrations",
        *map(sa.column, ("id", "given_on", "patient_ref_hash", "code", "product", "authorisation_id")),
    )
    r, ua = a.alias("r"), u.alias("ua")
    text = sa.String()
    columns = ["source", "source_id", "day", "month", "patient_ref_hash", "code", "rule_id", "outcome", "requester", "product"]

    def day(column):
        return sa.func.substr(column, 1, 10), sa.func.substr(column, 1, 7)

    records = sa.select(
        a.c.kind, sa.cast(a.c.id, text), *day(a.c.created_at), a.c.patient_ref_hash, a.c.code, a.c.rule_id,
        a.c.outcome, a.c.requester, sa.null(),
    ).where(a.c.kind.in_(("decision", "preapproval")), a.c.patient_ref_hash.is_not(None))
    granted = (
        sa.select(
            sa.literal("authorisation"), u.c.id, *day(u.c.created_at), u.c.patient_ref_hash, u.c.code, u.c.rule_id,
            u.c.basis, r.c.requester, sa.null(),
        )
        .select_from(u.outerjoin(r, r.c.decision_id == u.c.decision_id))
        .where(u.c.patient_ref_hash.is_not(None))
    )
    given = sa.select(
        sa.literal("administration"), d.c.id, *day(d.c.given_on), d.c.patient_ref_hash, d.c.code, ua.c.rule_id,
        ua.c.basis, sa.null(), d.c.product,
    ).select_from(d.outerjoin(ua, ua.c.id == d.c.authorisation_id))
    for rows in (records, granted, given):
        op.execute(table.insert().from_select(columns, rows))
    for name, indexed in INDEXES.items():
        op.create_index(f"ix_report_patients_{name}", "report_patients", indexed)
    # The aggregates of what was given, and the review turnaround, off their indexes alone.
    op.create_index("ix_authorisation_report", "authorisations", ["id", "rule_id", "basis"])
    op.create_index("ix_administration_report", "administrations", ADMINISTRATION_REPORT)
    op.drop_index("ix_administration_given_on", "administrations")
    op.drop_index("ix_review_opened", "review_cases")
    op.create_index("ix_review_opened", "review_cases", ["opened_at", "due_at", "status", "id"])
    for analysed in ("report_patients", "authorisations", "administrations", "review_cases"):
        op.execute(f"ANALYZE {analysed}")  # the planner's statistics, so it reads these indexes at once


def downgrade():
    op.drop_index("ix_review_opened", "review_cases")
    op.create_index("ix_review_opened", "review_cases", ["opened_at"])
    op.create_index("ix_administration_given_on", "administrations", ["given_on"])
    op.drop_index("ix_administration_report", "administrations")
    op.drop_index("ix_authorisation_report", "authorisations")
    for name in INDEXES:
        op.drop_index(f"ix_report_patients_{name}", "report_patients")
    op.drop_table("report_patients")
