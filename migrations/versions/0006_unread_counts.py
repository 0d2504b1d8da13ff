"""Unread counts without counting: customer messages per ticket and per reader

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 04:10:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "customer_message_count",
                sa.Integer(),
                nullable=False,
                server_default="0",
            )
        )
    with op.batch_alter_table("ticket_read", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("read_count", sa.Integer(), nullable=False, server_default="0")
        )

    op.execute(
        """
        UPDATE ticket SET customer_message_count = (
            SELECT count(*) FROM message
            WHERE message.ticket_id = ticket.id AND message.kind = 'customer'
        )
        """
    )
    op.execute(
        """
        UPDATE ticket_read SET read_count = (
            SELECT count(*) FROM message
            WHERE message.ticket_id = ticket_read.ticket_id
              AND message.kind = 'customer'
              AND message.id <= ticket_read.last_read_message_id
        )
        """
    )

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.alter_column("customer_message_count", server_default=None)
        batch_op.create_index(
            "ix_ticket_unclosed_message_count",
            ["id", "customer_message_count"],
            unique=False,
            postgresql_where=sa.text("status <> 'closed'"),
            sqlite_where=sa.text("status <> 'closed'"),
        )
    with op.batch_alter_table("ticket_read", schema=None) as batch_op:
        batch_op.alter_column("read_count", server_default=None)


def downgrade():
    with op.batch_alter_table("ticket_read", schema=None) as batch_op:
        batch_op.drop_column("read_count")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_unclosed_message_count")
        batch_op.drop_column("customer_message_count")
