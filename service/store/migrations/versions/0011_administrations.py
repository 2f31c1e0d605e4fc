"""Administrations (issue 17): what was given against an authorisation, the discrepancies its
checks found, and their resolutions. Each row is bound to the audit record that wrote it.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "administrations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(128), unique=True),
        sa.Column("authorisation_id", sa.String(36)),
        sa.Column("preapproval_id", sa.BigInteger),
        sa.Column("patient_ref_hash", sa.String(64), nullable=False),
        sa.Column("code", sa.String(16)),
        sa.Column("product", sa.String(128), nullable=False),
        sa.Column("lot", sa.String(64), nullable=False),
        sa.Column("vials", sa.Text, nullable=False),
        sa.Column("grams_given", sa.Float, nullable=False),
        sa.Column("grams_wasted", sa.Float, nullable=False),
        sa.Column("given_on", sa.String(10), nullable=False),
        sa.Column("site", sa.String(128)),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("price_per_g", sa.Float),
        sa.Column("currency", sa.String(3)),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("binding", sa.String(64)),
    )
    op.create_index("ix_administration_authorisation", "administrations", ["authorisation_id", "given_on"])
    op.create_index("ix_administration_patient", "administrations", ["patient_ref_hash", "given_on"])
    op.create_index("ix_administration_given_on", "administrations", ["given_on"])
    op.create_table(
        "discrepancies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("administration_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("expected", sa.Text, nullable=False),
        sa.Column("actual", sa.Text, nullable=False),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("binding", sa.String(64)),
    )
    op.create_index("ix_discrepancy_administration", "discrepancies", ["administration_id"])
    op.create_index("ix_discrepancy_created", "discrepancies", ["created_at"])
    op.create_table(
        "discrepancy_resolutions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("discrepancy_id", sa.String(36), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("resolved_by", sa.String(128), nullable=False),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("binding", sa.String(64)),
    )


def downgrade():
    op.drop_table("discrepancy_resolutions")
    op.drop_index("ix_discrepancy_created", "discrepancies")
    op.drop_index("ix_discrepancy_administration", "discrepancies")
    op.drop_table("discrepancies")
    op.drop_index("ix_administration_given_on", "administrations")
    op.drop_index("ix_administration_patient", "administrations")
    op.drop_index("ix_administration_authorisation", "administrations")
    op.drop_table("administrations")
