"""CDS Hooks clients (issue 19): the EHRs whose signed JWTs the service accepts, with their JWK
Sets, and the jti of every accepted JWT until it expires (replays are refused across processes).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "cds_clients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("iss", sa.String(256), nullable=False, unique=True),
        sa.Column("jwks", sa.Text, nullable=False),
        sa.Column("jku", sa.String(512)),
        sa.Column("fhir_servers", sa.Text, nullable=False),
        sa.Column("added_at", sa.String(32), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "cds_jtis",
        sa.Column("iss", sa.String(256), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_cds_jtis_expires", "cds_jtis", ["expires_at"])


def downgrade():
    op.drop_index("ix_cds_jtis_expires", "cds_jtis")
    op.drop_table("cds_jtis")
    op.drop_table("cds_clients")
