"""Queue tables vacuumed after a thousand dead row versions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 12:50:00.000000

"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("telegram_update", "outbox_message")


def upgrade():
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0,"
            " autovacuum_vacuum_threshold = 1000)"
        )


def downgrade():
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor,"
            " autovacuum_vacuum_threshold)"
        )
