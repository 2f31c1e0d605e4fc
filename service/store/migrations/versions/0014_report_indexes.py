"""Stewardship reports (issue 17): the indexes their aggregates read a period through. Decisions
and pre-approvals by kind and time, covering the columns the reports group and count by (so a
year of decisions is read off the index, never the records' content); authorisations by when
they were granted; review cases by when they were opened.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_audit_report",
        "audit_records",
        ["kind", "created_at", "outcome", "code", "rule_id", "requester", "patient_ref_hash"],
    )
    op.create_index("ix_authorisation_created", "authorisations", ["created_at"])
    op.create_index("ix_review_opened", "review_cases", ["opened_at"])


def downgrade():
    op.drop_index("ix_review_opened", "review_cases")
    op.drop_index("ix_authorisation_created", "authorisations")
    op.drop_index("ix_audit_report", "audit_records")
