"""The database tables, as SQLAlchemy Core (queries use these; migrations create them).

Times are stored as ISO 8601 UTC text with a fixed width, so they sort and compare as text the
same way on SQLite and PostgreSQL.
"""
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

audit_records = Table(
    "audit_records", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),   # 1, 2, 3, ...: the chain order
    Column("created_at", String(32), nullable=False),
    Column("kind", String(32), nullable=False),                       # decision, refusal, rulebook_reload
    Column("requester", String(128)),
    Column("status", Integer),
    Column("decision_id", String(36), unique=True),
    Column("outcome", String(32)),
    Column("rule_id", String(128)),
    Column("code", String(16)),                                       # dotless, so a prefix finds descendants
    Column("matched_by", String(16)),
    Column("patient_ref_hash", String(64)),
    Column("rulebook_version", String(64)),
    Column("rulebook_digest", String(64)),
    Column("content", Text, nullable=False),                          # canonical JSON, signed
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_created_at", "created_at"),
    Index("ix_audit_code", "code"),
    Index("ix_audit_rule", "rule_id"),
    Index("ix_audit_requester", "requester"),
    Index("ix_audit_patient", "patient_ref_hash"),
    Index("ix_audit_outcome", "outcome"),
)

# One row: the latest record's id and hash. Appends lock it, so writers on several processes or
# hosts extend one chain in turn.
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
)

# Which rulebook version every service process should serve; the newest row wins.
rulebook_activations = Table(
    "rulebook_activations", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("activated_at", String(32), nullable=False),
    Column("activated_by", String(128), nullable=False),
)

GENESIS_HASH = "0" * 64
