"""Rulebook versions are kept (issue 18): every version the service serves, with the texts it was
read from (the rulebook and each reference data file, as JSON {name: text}), stored once per
digest when it is first activated. Activations stay in rulebook_activations.

Versions served before this migration have activations but no text; the version served at the
first start after it is stored then.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "rulebook_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("effective", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("texts", sa.Text, nullable=False),
        sa.Column("stored_at", sa.String(32), nullable=False),
        sa.Column("stored_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_rulebook_version", "rulebook_versions", ["version"])
    op.create_index("ix_rulebook_activation_digest", "rulebook_activations", ["digest"])


def downgrade():
    op.drop_index("ix_rulebook_activation_digest", "rulebook_activations")
    op.drop_index("ix_rulebook_version", "rulebook_versions")
    op.drop_table("rulebook_versions")
