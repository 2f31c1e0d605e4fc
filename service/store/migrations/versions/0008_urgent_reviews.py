"""The urgent pathway (issue 16): a review case opened with a provisional authorisation must be
resolved by `due_at` (the rulebook's review_within_hours after it opened); the queue shows the
cases due soonest, the overdue ones, first.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("review_cases") as batch:
        batch.add_column(sa.Column("due_at", sa.String(32)))
    op.create_index("ix_review_due", "review_cases", ["status", "due_at"])


def downgrade():
    op.drop_index("ix_review_due", "review_cases")
    with op.batch_alter_table("review_cases") as batch:
        batch.drop_column("due_at")
