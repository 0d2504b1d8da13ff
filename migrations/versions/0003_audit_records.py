"""Log records: who did it, and lookups by logger for the audit page

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 19:50:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("log_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("staff_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_log_record_logger_created_at", ["logger", "created_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("log_record", schema=None) as batch_op:
        batch_op.drop_index("ix_log_record_logger_created_at")
        batch_op.drop_column("staff_id")
