"""Outbox delivery: message parts, requeue time, indexes for order and pacing

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 19:33:20.134194

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("part", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("parts", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("first_part_id", sa.Integer(), nullable=True))

    # Rows queued before the upgrade are whole messages, queued when created.
    op.execute("UPDATE outbox_message SET queued_at = created_at, part = 1, parts = 1")

    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.alter_column("queued_at", existing_type=sa.DateTime(), nullable=False)
        batch_op.alter_column("part", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("parts", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(
            "ix_outbox_message_chat_id_sent_at", ["chat_id", "sent_at"], unique=False
        )
        batch_op.create_index(
            "ix_outbox_message_chat_id_status_id",
            ["chat_id", "status", "id"],
            unique=False,
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_message_first_part_id_outbox_message"),
            "outbox_message",
            ["first_part_id"],
            ["id"],
        )


def downgrade():
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_outbox_message_first_part_id_outbox_message"),
            type_="foreignkey",
        )
        batch_op.drop_index("ix_outbox_message_chat_id_status_id")
        batch_op.drop_index("ix_outbox_message_chat_id_sent_at")
        batch_op.drop_column("first_part_id")
        batch_op.drop_column("parts")
        batch_op.drop_column("part")
        batch_op.drop_column("queued_at")
