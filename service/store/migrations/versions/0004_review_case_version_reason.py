"""Review cases: a version that every transition increments, and why the case needs review.

`version` lets a transition check, in the transaction that applies it, that the case is still the
one its caller read (a denial and a re-decision with added facts can no longer both apply).
`reason` (missing_facts, unclear_diagnosis, no_rule, rule_review) lets the review queue filter
by it; existing cases take it from their latest decision's record.

Revision ID: 0004
Revises: 0003
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _reason(decision: dict) -> str:
    # As service/workflow/cases.py review_reason decided it when this migration was written.
    if decision.get("missing"):
        return "missing_facts"
    if decision.get("candidates"):
        return "unclear_diagnosis"
    return "no_rule" if decision.get("rule") is None else "rule_review"


def upgrade():
    with op.batch_alter_table("review_cases") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("reason", sa.String(24)))
    connection = op.get_bind()
    cases = sa.table("review_cases", sa.column("id"), sa.column("latest_decision_id"), sa.column("reason"))
    records = sa.table("audit_records", sa.column("decision_id"), sa.column("content"))
    rows = connection.execute(
        sa.select(cases.c.id, records.c.content).join(records, records.c.decision_id == cases.c.latest_decision_id)
    ).all()
    for case_id, content in rows:
        reason = _reason(json.loads(content)["body"]["decision"])
        connection.execute(sa.update(cases).where(cases.c.id == case_id).values(reason=reason))
    op.create_index("ix_review_reason", "review_cases", ["status", "reason", "opened_at"])


def downgrade():
    op.drop_index("ix_review_reason", table_name="review_cases")
    with op.batch_alter_table("review_cases") as batch:
        batch.drop_column("reason")
        batch.drop_column("version")
