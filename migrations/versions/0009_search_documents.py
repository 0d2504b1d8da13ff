"""Search documents: the words of a ticket and its customer, in one index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 16:30:00.000000

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Characters of a conversation a ticket's document holds.
DOCUMENT_BUDGET = 100_000


def upgrade():
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "search_document",
                postgresql.TSVECTOR().with_variant(sa.Text(), "sqlite"),
                nullable=False,
                server_default="",
            )
        )
        batch_op.add_column(
            sa.Column("search_chars", sa.Integer(), nullable=False, server_default="0")
        )

    if op.get_bind().dialect.name == "postgresql":
        _fill_documents()
        op.execute("DROP INDEX ix_ticket_subject_search")
        op.execute("DROP INDEX ix_message_text_search")

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ticket_search_document",
            ["search_document"],
            unique=False,
            postgresql_using="gin",
        )


def _fill_documents():
    op.execute(
        sa.text(
            """
            UPDATE ticket SET search_document = strip(to_tsvector('simple', body)),
                              search_chars = length(body)
            FROM (
                SELECT ticket.id,
                       left(concat_ws(E'\\n', ticket.subject,
                                      min(concat_ws(' ', customer.first_name,
                                                    customer.last_name,
                                                    customer.username)),
                                      string_agg(concat_ws(' ', message.text,
                                                           message.attachment
                                                           ->> 'file_name'),
                                                 E'\\n' ORDER BY message.id)),
                            :budget) AS body
                FROM ticket
                JOIN customer ON customer.id = ticket.customer_id
                LEFT JOIN message ON message.ticket_id = ticket.id
                GROUP BY ticket.id
            ) AS conversation
            WHERE ticket.id = conversation.id
            """
        ).bindparams(budget=DOCUMENT_BUDGET)
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_message_text_search ON message"
            " USING gin (to_tsvector('simple', text))"
        )
        op.execute(
            "CREATE INDEX ix_ticket_subject_search ON ticket"
            " USING gin (to_tsvector('simple', subject))"
        )

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_search_document")
        batch_op.drop_column("search_chars")
        batch_op.drop_column("search_document")
