"""Audit records with their chain head, API tokens, rulebook activations.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_records",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("requester", sa.String(128)),
        sa.Column("status", sa.Integer),
        sa.Column("decision_id", sa.String(36), unique=True),
        sa.Column("outcome", sa.String(32)),
        sa.Column("rule_id", sa.String(128)),
        sa.Column("code", sa.String(16)),
        sa.Column("matched_by", sa.String(16)),
        sa.Column("patient_ref_hash", sa.String(64)),
        sa.Column("rulebook_version", sa.String(64)),
        sa.Column("rulebook_digest", sa.String(64)),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    for name, column in (("ix_audit_created_at", "created_at"), ("ix_audit_code", "code"), ("ix_audit_rule", "rule_id"),
                         ("ix_audit_requester", "requester"), ("ix_audit_patient", "patient_ref_hash"),
                         ("ix_audit_outcome", "outcome")):
        op.create_index(name, "audit_records", [column])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": "0" * 64}])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32)),
    )
    op.create_table(
        "rulebook_activations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("activated_at", sa.String(32), nullable=False),
        sa.Column("activated_by", sa.String(128), nullable=False),
    )


def downgrade():
    for table in ("rulebook_activations", "api_tokens", "audit_head", "audit_records"):
        op.drop_table(table)
