"""Supply phases (issue 17): the instance's supply phase (normal, or a shortage phase the rulebook
declares), one row each time an admin sets it, with the reason; the newest row is the phase every
service process on the database follows. Each row is bound to the `supply_phase` audit record that
set it, like authorisations.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "supply_phases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("set_at", sa.String(32), nullable=False),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("rulebook_version", sa.String(64), nullable=False),
        sa.Column("rulebook_digest", sa.String(64), nullable=False),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("binding", sa.String(64)),
    )
    op.create_index("ix_supply_phase_set_at", "supply_phases", ["set_at", "id"])


def downgrade():
    op.drop_index("ix_supply_phase_set_at", "supply_phases")
    op.drop_table("supply_phases")
