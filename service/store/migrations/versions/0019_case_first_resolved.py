"""Stewardship reports (issue 17): a review case keeps the time of its first resolution, written
with that resolution, so the review turnaround reads a period's cases off one index instead of
looking up each case's resolutions (at a year of 150,000 cases about half the stewardship
report's time on SQLite). The column is derived: this migration fills it from the resolutions
recorded, and the service sets it when it writes a case's first resolution.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("review_cases") as batch:
        batch.add_column(sa.Column("first_resolved_at", sa.String(32)))
    cases = sa.table("review_cases", sa.column("id"), sa.column("first_resolved_at"))
    resolutions = sa.table("review_resolutions", sa.column("case_id"), sa.column("created_at"))
    first = (
        sa.select(sa.func.min(resolutions.c.created_at))
        .where(resolutions.c.case_id == cases.c.id)
        .scalar_subquery()
    )
    op.execute(cases.update().values(first_resolved_at=first))
    op.drop_index("ix_review_opened", "review_cases")
    op.create_index("ix_review_opened", "review_cases", ["opened_at", "due_at", "status", "first_resolved_at"])
    op.execute("ANALYZE review_cases")


def downgrade():
    op.drop_index("ix_review_opened", "review_cases")
    op.create_index("ix_review_opened", "review_cases", ["opened_at", "due_at", "status", "id"])
    with op.batch_alter_table("review_cases") as batch:
        batch.drop_column("first_resolved_at")
