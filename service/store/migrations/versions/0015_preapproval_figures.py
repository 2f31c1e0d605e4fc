"""Stewardship reports (issue 17): each pre-approval as the reports read it, in a narrow table
keyed by its audit record: the record's indexed fields they group by (time, requester, outcome,
rule, code, patient) and the figures they sum (grams, weights, doses per kg, whether it said
dispense), so that a report reads them off a row rather than out of each record's signed JSON
content; and review resolutions indexed by case and time, so a case's first resolution is read
off the index. The table is derived from the records: this migration fills it from the content
of every pre-approval record already written (service/store/preapproval_figures.py writes it
from then on, with each record), and rebuilding it means running this again.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Each column and where its value is in a pre-approval record's content, as written in 2026-12.
PATHS = {
    "grams": ("body", "result", "dose", "grams"),
    "rounded_grams": ("body", "result", "dose", "rounded_grams"),
    "g_per_kg": ("body", "result", "dose", "g_per_kg"),
    "actual_kg": ("body", "result", "weight", "actual_kg"),
    "dosing_kg": ("body", "result", "weight", "dosing_kg"),
    "ordered_g_per_kg": ("body", "order", "dose", "g_per_kg"),
    "max_g_per_kg": ("body", "result", "dosing_profile", "g_per_kg", "max"),
}


def upgrade():
    table = op.create_table(
        "preapproval_figures",
        # On SQLite the rowid (INTEGER PRIMARY KEY): a report joins a record to its figures in one lookup.
        sa.Column("record_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("requester", sa.String(128)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("rule_id", sa.String(128)),
        sa.Column("code", sa.String(16)),
        sa.Column("patient_ref_hash", sa.String(64)),
        sa.Column("dispense", sa.Boolean, nullable=False),
        sa.Column("grams", sa.Float),
        sa.Column("rounded_grams", sa.Float),
        sa.Column("g_per_kg", sa.Float),
        sa.Column("actual_kg", sa.Float),
        sa.Column("dosing_kg", sa.Float),
        sa.Column("ordered_g_per_kg", sa.Float),
        sa.Column("max_g_per_kg", sa.Float),
    )
    copied = ("created_at", "requester", "outcome", "rule_id", "code", "patient_ref_hash")
    records = sa.table("audit_records", sa.column("id"), sa.column("kind"), sa.column("content"), *map(sa.column, copied))
    postgresql = op.get_bind().dialect.name == "postgresql"
    content: sa.ColumnElement
    numbers: tuple[str, ...]
    if postgresql:
        content = sa.cast(records.c.content, JSONB)

        def kind(path):
            return sa.func.jsonb_typeof(content[path])

        numbers = ("number",)
    else:
        content = sa.type_coerce(records.c.content, sa.JSON)

        def kind(path):
            return sa.func.json_type(records.c.content, "$." + ".".join(path))

        numbers = ("integer", "real")

    def number(path):  # a number only, as the service copies it: a null, a text or no such path give null
        return sa.case((kind(path).in_(numbers), content[path].as_float()), else_=None)

    dispense = ("body", "result", "dispense")
    if postgresql:  # a JSON true only, as the service copies it
        dispensed = sa.and_(kind(dispense) == "boolean", content[dispense].as_string() == "true")
    else:
        dispensed = kind(dispense) == "true"
    op.execute(
        table.insert().from_select(
            ["record_id", *copied, "dispense", *PATHS],
            sa.select(
                records.c.id,
                *(records.c[name] for name in copied),
                sa.func.coalesce(dispensed, False),
                *(number(path) for path in PATHS.values()),
            ).where(records.c.kind == "preapproval"),
        )
    )


    op.create_index("ix_preapproval_figures_created", "preapproval_figures", ["created_at"])
    # A case's first resolution off the index, for the review turnaround (was: case_id only).
    op.create_index("ix_resolution_case_time", "review_resolutions", ["case_id", "created_at"])
    op.drop_index("ix_resolution_case", "review_resolutions")


def downgrade():
    op.create_index("ix_resolution_case", "review_resolutions", ["case_id"])
    op.drop_index("ix_resolution_case_time", "review_resolutions")
    op.drop_index("ix_preapproval_figures_created", "preapproval_figures")
    op.drop_table("preapproval_figures")
