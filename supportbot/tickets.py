"""Tickets and their messages: the rules every channel shares.

The bot, the Mini App and the staff console all open, write to and close
tickets through these functions; none of them commits, so that the caller
stores the change and whatever it triggers in one transaction.
"""

import logging

from sqlalchemy import select

from .errors import Conflict
from .extensions import db
from .models import (
    Customer,
    Message,
    MessageKind,
    MessageRevision,
    Staff,
    Ticket,
    TicketStatus,
    utcnow,
)

logger = logging.getLogger(__name__)

SUBJECT_LENGTH = 200


def current_ticket(customer: Customer) -> Ticket | None:
    """Return the customer's most recent ticket that is not closed."""
    statement = (
        select(Ticket)
        .where(Ticket.customer_id == customer.id)
        .where(Ticket.status != TicketStatus.CLOSED)
        .order_by(Ticket.id.desc())
        .limit(1)
    )
    return db.session.scalar(statement)


def unclosed_tickets(customer: Customer) -> list[Ticket]:
    """Return the customer's open and pending tickets, newest first."""
    statement = (
        select(Ticket)
        .where(Ticket.customer_id == customer.id)
        .where(Ticket.status != TicketStatus.CLOSED)
        .order_by(Ticket.id.desc())
    )
    return list(db.session.scalars(statement))


def open_ticket(
    customer: Customer, subject: str = "", category: str | None = None
) -> Ticket:
    """Open a new ticket for ``customer``."""
    ticket = Ticket(
        customer=customer,
        subject=subject_from(subject),
        category=category,
        status=TicketStatus.OPEN,
    )
    db.session.add(ticket)
    db.session.flush()

    logger.info("ticket %s opened for customer %s", ticket.id, customer.id)
    return ticket


def add_customer_message(
    customer: Customer,
    text: str,
    *,
    attachment: dict | None = None,
    telegram_chat_id: int | None = None,
    telegram_message_id: int | None = None,
    ticket: Ticket | None = None,
) -> tuple[Message, bool]:
    """Add a customer message to ``ticket``, or to their current ticket.

    Without a current ticket a new one opens, named after the message. Returns
    the message and whether a ticket was opened for it.
    """
    opened = False
    if ticket is None:
        ticket = current_ticket(customer)
    if ticket is None:
        ticket = open_ticket(customer, text or attachment_label(attachment))
        opened = True
    elif ticket.is_closed:
        raise Conflict(f"Ticket #{ticket.id} is closed.")

    message = Message(
        ticket=ticket,
        kind=MessageKind.CUSTOMER,
        text=text,
        attachment=attachment,
        telegram_chat_id=telegram_chat_id,
        telegram_message_id=telegram_message_id,
    )
    db.session.add(message)

    now = utcnow()
    if not ticket.subject:
        ticket.subject = subject_from(text or attachment_label(attachment))
    if ticket.waiting_since is None:
        ticket.waiting_since = now
    # A pending ticket waits on the customer; their answer puts it back in queue.
    ticket.status = TicketStatus.OPEN
    ticket.updated_at = now
    db.session.flush()

    logger.info("message %s added to ticket %s", message.id, ticket.id)
    return message, opened


def edit_customer_message(
    chat_id: int, telegram_message_id: int, text: str, attachment: dict | None
) -> Message | None:
    """Replace a customer message's text, keeping the earlier version.

    Returns None when the message is not known, such as an edit of a message
    written before the bot was added.
    """
    message = db.session.scalar(
        select(Message)
        .where(Message.telegram_chat_id == chat_id)
        .where(Message.telegram_message_id == telegram_message_id)
        .where(Message.kind == MessageKind.CUSTOMER)
    )
    if message is None:
        return None
    if message.text == text and message.attachment == attachment:
        return message

    db.session.add(
        MessageRevision(
            message=message,
            text=message.text,
            attachment=message.attachment,
            written_at=message.edited_at or message.created_at,
        )
    )
    message.text = text
    message.attachment = attachment
    message.edited_at = utcnow()
    db.session.flush()

    logger.info("message %s on ticket %s edited", message.id, message.ticket_id)
    return message


def close_ticket(ticket: Ticket, by: Staff | Customer) -> Ticket:
    """Close ``ticket``; closing a closed ticket changes nothing."""
    if ticket.is_closed:
        return ticket

    now = utcnow()
    ticket.status = TicketStatus.CLOSED
    ticket.closed_at = now
    ticket.waiting_since = None
    ticket.updated_at = now
    db.session.flush()

    who = "staff" if isinstance(by, Staff) else "customer"
    logger.info("ticket %s closed by %s %s", ticket.id, who, by.id)
    return ticket


def subject_from(text: str) -> str:
    """Make a one-line subject from the start of ``text``."""
    line = " ".join(text.split())
    if len(line) <= SUBJECT_LENGTH:
        return line
    return line[: SUBJECT_LENGTH - 1].rstrip() + "…"


def attachment_label(attachment: dict | None) -> str:
    """Name an attachment's kind, for subjects and previews of text-less messages."""
    if not attachment:
        return ""
    return attachment.get("type", "file").capitalize()
