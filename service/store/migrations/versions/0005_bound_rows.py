"""Rows that grant or change a right carry the audit record that created them and a keyed MAC.

`record_id` names the chained record written in the same transaction; `binding` is HMAC-SHA-256,
keyed from the instance secret, over the row's content and that id (service/store/audit.py). The
migration cannot compute it (it has no secret), so rows created before it stay unbound: verify
names them and pre-approval refuses them until `formulary audit bind-existing` binds them in one
record.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("authorisations", "review_resolutions")


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("record_id", sa.BigInteger))
            batch.add_column(sa.Column("binding", sa.String(64)))


def downgrade():
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("binding")
            batch.drop_column("record_id")
