"""What the Mini App shows a customer: their tickets and what they may read."""

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..errors import NotFound
from ..extensions import db
from ..models import Message, MessageKind, Ticket

# Internal notes are for staff only; customers see the conversation.
VISIBLE_KINDS = (MessageKind.CUSTOMER, MessageKind.REPLY)
LIST_LIMIT = 100
# Ids beyond the database's integer columns cannot exist, and SQLite refuses
# to compare with them at all.
MAX_ID = 2**31


def customer_tickets(customer_id: int) -> list[Ticket]:
    """Return the customer's tickets, the most recently active first."""
    activity = func.coalesce(Ticket.last_message_at, Ticket.created_at)
    statement = (
        select(Ticket)
        .where(Ticket.customer_id == customer_id)
        .order_by(activity.desc(), Ticket.id.desc())
        .limit(LIST_LIMIT)
    )
    return list(db.session.scalars(statement))


def own_ticket(customer_id: int | None, ticket_id: int) -> Ticket:
    """Return the ticket if it is the customer's; anyone else's is not found."""
    ticket = db.session.get(Ticket, ticket_id) if ticket_id < MAX_ID else None
    if ticket is None or customer_id is None or ticket.customer_id != customer_id:
        raise NotFound(f"There is no request #{ticket_id}.")
    return ticket


def visible_messages(ticket: Ticket, after: int = 0) -> list[Message]:
    """Return the ticket's customer messages and replies after message ``after``."""
    statement = (
        select(Message)
        .where(Message.ticket_id == ticket.id)
        .where(Message.kind.in_(VISIBLE_KINDS))
        .where(Message.id > min(after, MAX_ID))
        .options(joinedload(Message.staff))
        .order_by(Message.id)
    )
    return list(db.session.scalars(statement))


def visible_message(message_id: int) -> Message | None:
    """Return a message a customer may see, or None for notes and unknown ids."""
    message = db.session.get(Message, message_id) if message_id < MAX_ID else None
    if message is None or message.kind not in VISIBLE_KINDS:
        return None
    return message
