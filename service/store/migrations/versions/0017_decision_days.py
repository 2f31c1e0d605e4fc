"""Stewardship reports (issue 17): the decision records counted a day by outcome and rule, so the
report's decisions by outcome and by evidence sum a period's days rather than group its records
(service/store/decision_days.py). The table is derived: this migration counts the records already
written, the service counts each record it writes from then on, and rebuilding it means running
this again.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    table = op.create_table(
        "decision_days",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("outcome", sa.String(32), primary_key=True),
        sa.Column("rule_id", sa.String(128), primary_key=True),
        sa.Column("decisions", sa.BigInteger, nullable=False),
    )
    a = sa.table("audit_records", *map(sa.column, ("kind", "created_at", "outcome", "rule_id")))
    day = sa.func.substr(a.c.created_at, 1, 10)
    outcome, rule_id = sa.func.coalesce(a.c.outcome, ""), sa.func.coalesce(a.c.rule_id, "")
    counted = sa.select(day, outcome, rule_id, sa.func.count()).where(a.c.kind == "decision").group_by(day, outcome, rule_id)
    op.execute(table.insert().from_select(["day", "outcome", "rule_id", "decisions"], counted))
    op.execute("ANALYZE decision_days")


def downgrade():
    op.drop_table("decision_days")
