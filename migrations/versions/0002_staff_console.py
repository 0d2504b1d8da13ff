"""Staff console: timeline events, read markers, canned replies, search

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 19:26:23.127951

"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "canned_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_reply")),
        sa.UniqueConstraint("title", name=op.f("uq_canned_reply_title")),
    )
    op.create_table(
        "ticket_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_ticket_event_staff_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_ticket_event_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_event")),
    )
    with op.batch_alter_table("ticket_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ticket_event_ticket_id_id", ["ticket_id", "id"], unique=False
        )

    op.create_table(
        "ticket_read",
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("last_read_message_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_ticket_read_staff_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_ticket_read_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("staff_id", "ticket_id", name=op.f("pk_ticket_read")),
    )

    # Existing accounts get an empty token until their password next changes.
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "session_token",
                sa.String(length=64),
                nullable=False,
                server_default="",
            )
        )
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.alter_column("session_token", server_default=None)

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_message_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "last_message_preview",
                sa.String(length=200),
                nullable=False,
                server_default="",
            )
        )
        batch_op.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_ticket_status_closed_at", ["status", "closed_at"], unique=False
        )
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.alter_column("last_message_preview", server_default=None)

    # Fill the queue's columns for tickets that already have messages.
    op.execute(
        """
        UPDATE ticket SET
            last_message_at = (
                SELECT MAX(created_at) FROM message WHERE message.ticket_id = ticket.id
            ),
            last_message_preview = COALESCE((
                SELECT SUBSTR(text, 1, 200) FROM message
                WHERE message.ticket_id = ticket.id
                ORDER BY message.id DESC LIMIT 1
            ), '')
        """
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_message_text_search ON message"
            " USING gin (to_tsvector('simple', text))"
        )
        op.execute(
            "CREATE INDEX ix_ticket_subject_search ON ticket"
            " USING gin (to_tsvector('simple', subject))"
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_ticket_subject_search")
        op.execute("DROP INDEX ix_message_text_search")

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_status_closed_at")
        batch_op.drop_column("rating")
        batch_op.drop_column("last_message_preview")
        batch_op.drop_column("last_message_at")

    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_column("session_token")

    op.drop_table("ticket_read")
    with op.batch_alter_table("ticket_event", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_event_ticket_id_id")

    op.drop_table("ticket_event")
    op.drop_table("canned_reply")
