"""Continuing authorisations (issue 16): outcome measures recorded against an authorisation, and
the authorisation a new one continues (`previous_id`).

`previous_id` is left out of an authorisation's binding while it is null
(service/store/audit.py: ADDED_LATER), so rows bound before this migration still verify.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("authorisations") as batch:
        batch.add_column(sa.Column("previous_id", sa.String(36)))
    op.create_index("ix_authorisation_valid_until", "authorisations", ["valid_until"])
    op.create_index("ix_authorisation_previous", "authorisations", ["previous_id"])
    op.create_table(
        "authorisation_measurements",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("authorisation_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("measure", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("value_given", sa.Float, nullable=False),
        sa.Column("unit_given", sa.String(32), nullable=False),
        sa.Column("taken_on", sa.String(10), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("binding", sa.String(64)),
    )
    op.create_index(
        "ix_measurement_authorisation", "authorisation_measurements", ["authorisation_id", "taken_on"]
    )


def downgrade():
    op.drop_index("ix_measurement_authorisation", "authorisation_measurements")
    op.drop_table("authorisation_measurements")
    op.drop_index("ix_authorisation_previous", "authorisations")
    op.drop_index("ix_authorisation_valid_until", "authorisations")
    with op.batch_alter_table("authorisations") as batch:
        batch.drop_column("previous_id")
