"""Console sessions kept on the server, so that signing out ends one: the cookie names a row that
sign-out deletes. Sessions open before this migration have no row and sign in again.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_console_session_created", "console_sessions", ["created_at"])


def downgrade():
    op.drop_index("ix_console_session_created", "console_sessions")
    op.drop_table("console_sessions")
