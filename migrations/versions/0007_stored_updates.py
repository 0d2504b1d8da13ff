"""Updates stored whole and handled after the webhook answers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 06:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "telegram_update",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_telegram_update")),
    )
    with op.batch_alter_table("telegram_update", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_telegram_update_received_at"), ["received_at"], unique=False
        )
        batch_op.create_index(
            "ix_telegram_update_waiting",
            ["chat_id", "update_id"],
            unique=False,
            postgresql_where=sa.text("handled_at IS NULL"),
            sqlite_where=sa.text("handled_at IS NULL"),
        )
        batch_op.create_index(
            "ix_telegram_update_failed",
            ["update_id"],
            unique=False,
            postgresql_where=sa.text("error IS NOT NULL"),
            sqlite_where=sa.text("error IS NOT NULL"),
        )

    # Every update recorded so far was handled when it was recorded.
    op.execute(
        """
        INSERT INTO telegram_update (update_id, kind, received_at, handled_at)
        SELECT update_id, kind, received_at, received_at FROM processed_update
        """
    )
    with op.batch_alter_table("processed_update", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processed_update_received_at"))
    op.drop_table("processed_update")


def downgrade():
    op.create_table(
        "processed_update",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_processed_update")),
    )
    with op.batch_alter_table("processed_update", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_processed_update_received_at"), ["received_at"], unique=False
        )
    # The old schema keeps handled ids only: updates still waiting are lost.
    op.execute(
        """
        INSERT INTO processed_update (update_id, kind, received_at)
        SELECT update_id, kind, received_at FROM telegram_update
        WHERE handled_at IS NOT NULL
        """
    )
    with op.batch_alter_table("telegram_update", schema=None) as batch_op:
        batch_op.drop_index("ix_telegram_update_failed")
        batch_op.drop_index("ix_telegram_update_waiting")
        batch_op.drop_index(batch_op.f("ix_telegram_update_received_at"))
    op.drop_table("telegram_update")
