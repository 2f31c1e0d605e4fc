"""Review cases and resolutions; authorisations.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "review_cases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("opened_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("requester", sa.String(128), nullable=False),
        sa.Column("patient_ref_hash", sa.String(64)),
        sa.Column("code", sa.String(16)),
        sa.Column("opening_decision_id", sa.String(36), nullable=False),
        sa.Column("latest_decision_id", sa.String(36), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
    )
    op.create_index("ix_review_status", "review_cases", ["status", "opened_at"])
    op.create_table(
        "review_resolutions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("resolution", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("valid_days", sa.Integer),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("references_id", sa.String(36)),
    )
    op.create_index("ix_resolution_case", "review_resolutions", ["case_id"])
    op.create_table(
        "authorisations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("patient_ref_hash", sa.String(64), nullable=False),
        sa.Column("diagnosis_id", sa.String(128)),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("basis", sa.String(24), nullable=False),
        sa.Column("rule_id", sa.String(128)),
        sa.Column("products", sa.Text, nullable=False),
        sa.Column("dosing", sa.Text, nullable=False),
        sa.Column("valid_from", sa.String(10), nullable=False),
        sa.Column("valid_until", sa.String(10), nullable=False),
        sa.Column("decision_id", sa.String(36)),
        sa.Column("case_id", sa.String(36)),
        sa.Column("rulebook_version", sa.String(64), nullable=False),
        sa.Column("rulebook_digest", sa.String(64), nullable=False),
    )
    op.create_index("ix_authorisation_patient", "authorisations", ["patient_ref_hash", "valid_until"])


def downgrade():
    for table in ("authorisations", "review_resolutions", "review_cases"):
        op.drop_table(table)
