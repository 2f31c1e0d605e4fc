"""Rulebook proposals and their approvals (issue 18): a candidate rulebook with what the service
found when it was proposed (lint, rule cases, the diff and the replay, as JSON `report`), and one
vote per principal. A proposal is activated when enough others approve it, at its effective date.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "rulebook_proposals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("proposed_at", sa.String(32), nullable=False),
        sa.Column("proposed_by", sa.String(128), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128)),
        sa.Column("version", sa.String(64)),
        sa.Column("effective", sa.String(32)),
        sa.Column("digest", sa.String(64)),
        sa.Column("base_version", sa.String(64), nullable=False),
        sa.Column("base_digest", sa.String(64), nullable=False),
        sa.Column("texts", sa.Text, nullable=False),
        sa.Column("tests", sa.Text),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("decided_at", sa.String(32)),
    )
    op.create_index("ix_rulebook_proposal_status", "rulebook_proposals", ["status", "effective"])
    op.create_table(
        "rulebook_proposal_votes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("proposal_id", sa.Integer, sa.ForeignKey("rulebook_proposals.id"), nullable=False),
        sa.Column("voted_at", sa.String(32), nullable=False),
        sa.Column("voted_by", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("proposal_id", "voted_by", name="uq_proposal_vote_by"),
    )


def downgrade():
    op.drop_table("rulebook_proposal_votes")
    op.drop_index("ix_rulebook_proposal_status", "rulebook_proposals")
    op.drop_table("rulebook_proposals")
