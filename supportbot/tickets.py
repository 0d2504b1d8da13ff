"""Tickets and their messages: the rules every channel shares.

The bot, the Mini App and the staff console all open, answer, assign and close
tickets through these functions. None of them commits: the caller stores the
change, its timeline entry, the messages it sends and the events it announces
in one transaction.
"""

import functools
import logging
from collections.abc import Sequence

from flask import current_app
from sqlalchemy import bindparam, func, select

from . import events, outbox, search
from .errors import Conflict, NotFound, SupportbotError
from .extensions import db
from .models import (
    Customer,
    Message,
    MessageKind,
    MessageRevision,
    OutboxMessage,
    Staff,
    Ticket,
    TicketEvent,
    TicketPriority,
    TicketRead,
    TicketStatus,
    insert_or_ignore,
    utcnow,
)
from .telegram.strings import text as bot_text

logger = logging.getLogger(__name__)
audit = logging.getLogger("supportbot.audit")

SUBJECT_LENGTH = 200
PREVIEW_LENGTH = 200
MAX_TEXT_LENGTH = 20000
RATINGS = range(1, 6)


def current_ticket(customer: Customer) -> Ticket | None:
    """Return the customer's most recent ticket that is not closed."""
    return db.session.scalar(_current_ticket(), {"customer_id": customer.id})


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
    search.index(ticket, ticket.subject, *search.names(customer))
    db.session.flush()

    events.announce(events.ticket_opened, ticket_id=ticket.id)
    events.announce(events.ticket_changed, ticket_id=ticket.id)
    logger.info(
        "ticket %s opened for customer %s",
        ticket.id,
        customer.id,
        extra={"ticket_id": ticket.id},
    )
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

    if not ticket.subject:
        ticket.subject = subject_from(text or attachment_label(attachment))
    if ticket.waiting_since is None:
        ticket.waiting_since = utcnow()
    # A pending ticket waits on the customer; their answer puts it back in queue.
    ticket.status = TicketStatus.OPEN
    # Counted by the database, so that concurrent messages are all counted.
    ticket.customer_message_count = Ticket.customer_message_count + 1
    _record_message(ticket, message)

    logger.info(
        "customer %s wrote on ticket %s",
        customer.id,
        ticket.id,
        extra={"ticket_id": ticket.id},
    )
    return message, opened


def reply(
    ticket: Ticket, staff: Staff, text: str, attachment: dict | None = None
) -> Message:
    """Answer the customer: store the reply and queue it for Telegram.

    ``attachment`` is a file stored by :mod:`supportbot.uploads`; the text
    becomes its caption, continued in messages of its own past Telegram's
    caption limit. The ticket becomes pending, waiting on the customer, until
    they answer.
    """
    text = (text or "").strip()
    if attachment is None or text:
        text = _checked_text(text)
    if ticket.is_closed:
        raise Conflict(f"Ticket #{ticket.id} is closed; reopen it to reply.")

    message = Message(
        ticket=ticket,
        kind=MessageKind.REPLY,
        staff=staff,
        text=text,
        attachment=attachment,
    )
    db.session.add(message)

    now = utcnow()
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    ticket.waiting_since = None
    ticket.status = TicketStatus.PENDING
    _record_message(ticket, message)
    method, payload = _outgoing(text, attachment)
    outbox.enqueue(ticket.customer_id, method, payload, message=message)

    audit.info(
        "staff %s replied on ticket %s",
        staff.id,
        ticket.id,
        extra={"staff_id": staff.id, "ticket_id": ticket.id},
    )
    return message


def resend_delivery(delivery_id: int, staff: Staff) -> OutboxMessage:
    """Queue a delivery that failed again, on a staff member's word."""
    row = outbox.resend(delivery_id)
    ticket_id = row.message.ticket_id if row.message is not None else None
    audit.info(
        "staff %s queued delivery %s to chat %s again",
        staff.id,
        row.id,
        row.chat_id,
        extra={"staff_id": staff.id, "ticket_id": ticket_id},
    )
    return row


def _outgoing(text: str, attachment: dict | None) -> tuple[str, dict]:
    # The Bot API call that carries a reply: a file is uploaded from disk.
    if attachment is None:
        return "sendMessage", {"text": text}

    field = "photo" if attachment["type"] == "photo" else "document"
    payload = {
        field: {"upload": attachment["upload"], "file_name": attachment["file_name"]}
    }
    if text:
        payload["caption"] = text
    return f"send{field.capitalize()}", payload


def add_note(ticket: Ticket, staff: Staff, text: str) -> Message:
    """Add an internal note, which staff see and the customer never does."""
    text = _checked_text(text)
    message = Message(ticket=ticket, kind=MessageKind.NOTE, staff=staff, text=text)
    db.session.add(message)
    search.index(ticket, text)
    db.session.flush()

    _announce_message(message)
    audit.info(
        "staff %s added a note to ticket %s",
        staff.id,
        ticket.id,
        extra={"staff_id": staff.id, "ticket_id": ticket.id},
    )
    return message


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
    # The earlier words stay findable, as the earlier text stays shown.
    search.index(message.ticket, *_searchable(message))
    db.session.flush()

    _announce_message(message)
    logger.info(
        "message %s on ticket %s edited",
        message.id,
        message.ticket_id,
        extra={"ticket_id": message.ticket_id},
    )
    return message


def assign(ticket: Ticket, assignee: Staff | None, by: Staff) -> Ticket:
    """Give the ticket to ``assignee``, or to nobody."""
    if assignee is not None and not assignee.is_active:
        raise Conflict(f"{assignee.name} is deactivated and cannot take tickets.")
    if ticket.assignee_id == (assignee.id if assignee else None):
        return ticket

    ticket.assignee = assignee
    _record_event(
        ticket,
        by,
        "assigned",
        assignee_id=assignee.id if assignee else None,
        assignee=assignee.name if assignee else None,
    )
    return ticket


def set_status(ticket: Ticket, status: TicketStatus, by: Staff) -> Ticket:
    """Move the ticket to ``status``; closing goes through :func:`close_ticket`."""
    if status is TicketStatus.CLOSED:
        return close_ticket(ticket, by)
    if ticket.status is status:
        return ticket

    if ticket.is_closed:
        return reopen(ticket, by, status)
    ticket.status = status
    _record_event(ticket, by, "status", status=status.value)
    return ticket


def set_priority(ticket: Ticket, priority: TicketPriority, by: Staff) -> Ticket:
    """Change the ticket's priority."""
    if ticket.priority is priority:
        return ticket

    ticket.priority = priority
    _record_event(ticket, by, "priority", priority=priority.value)
    return ticket


def close_ticket(
    ticket: Ticket, by: Staff | Customer, ask_rating: bool = False
) -> Ticket:
    """Close ``ticket``; closing a closed ticket changes nothing.

    When staff close it, the customer is told, and may be asked for a rating.
    """
    if ticket.is_closed:
        return ticket

    ticket.status = TicketStatus.CLOSED
    ticket.closed_at = utcnow()
    ticket.waiting_since = None
    events.announce(events.ticket_closed, ticket_id=ticket.id)

    if isinstance(by, Staff):
        _record_event(ticket, by, "closed", rating_asked=ask_rating)
        _notify_closed(ticket, ask_rating)
    else:
        _record_event(ticket, None, "closed_by_customer")
    return ticket


def reopen(
    ticket: Ticket, by: Staff, status: TicketStatus = TicketStatus.OPEN
) -> Ticket:
    """Reopen a closed ticket."""
    if not ticket.is_closed:
        return ticket

    ticket.status = status
    ticket.closed_at = None
    _record_event(ticket, by, "reopened", status=status.value)
    return ticket


def rate(ticket: Ticket, customer: Customer, score: int) -> Ticket:
    """Store the customer's 1-5 rating of a closed ticket."""
    if ticket.customer_id != customer.id:
        raise SupportbotError("Only the ticket's customer can rate it.")
    if score not in RATINGS:
        raise SupportbotError("A rating is a whole number from 1 to 5.")

    ticket.rating = score
    _record_event(ticket, None, "rated", rating=score)
    return ticket


def mark_read(ticket: Ticket, staff: Staff) -> None:
    """Note that ``staff`` has read the ticket up to its latest message."""
    latest_message = (
        select(func.max(Message.id))
        .where(Message.ticket_id == Ticket.id)
        .scalar_subquery()
    )
    latest, count = db.session.execute(
        select(latest_message, Ticket.customer_message_count).where(
            Ticket.id == ticket.id
        )
    ).one()
    if latest is None:
        return

    if not insert_or_ignore(
        TicketRead,
        staff_id=staff.id,
        ticket_id=ticket.id,
        last_read_message_id=latest,
        read_count=count,
    ):
        read = db.session.get(TicketRead, (staff.id, ticket.id))
        read.last_read_message_id = max(read.last_read_message_id, latest)
        read.read_count = max(read.read_count, count)


def open_request(
    customer: Customer,
    subject: str,
    description: str,
    category: str | None = None,
    attachments: Sequence[dict] = (),
) -> Ticket:
    """Open a ticket from the Mini App's form and confirm it in the customer's chat.

    The description is the ticket's first message; each file follows as one more.
    """
    description = _checked_text(description)
    ticket = open_ticket(customer, subject, category)
    add_customer_message(customer, description, ticket=ticket)
    for attachment in attachments:
        add_customer_message(customer, "", attachment=attachment, ticket=ticket)

    language = customer.language_code
    payload = {
        "text": bot_text(
            "ticket_opened_in_app",
            language,
            number=ticket.id,
            subject=ticket.subject,
        )
    }
    # The customer's chat with the bot is private, where web_app buttons work.
    public_url = current_app.config["PUBLIC_URL"]
    if public_url.startswith("https://"):
        button = {
            "text": bot_text("button_open_request", language),
            "web_app": {"url": f"{public_url}/app/tickets/{ticket.id}"},
        }
        payload["reply_markup"] = {"inline_keyboard": [[button]]}
    outbox.enqueue(customer.id, "sendMessage", payload)
    return ticket


def mark_seen(ticket: Ticket, customer: Customer, up_to: int) -> list[int]:
    """Note that the customer has seen the staff replies up to message ``up_to``.

    Returns the replies newly seen; each is announced as a delivery change.
    """
    if ticket.customer_id != customer.id:
        raise NotFound(f"There is no request #{ticket.id}.")

    seen = ticket.customer_seen_message_id or 0
    newly_seen = list(
        db.session.scalars(
            select(Message.id)
            .where(Message.ticket_id == ticket.id)
            .where(Message.kind == MessageKind.REPLY)
            .where(Message.id > seen, Message.id <= up_to)
            .order_by(Message.id)
        )
    )
    if not newly_seen:
        return []

    ticket.customer_seen_message_id = newly_seen[-1]
    for message_id in newly_seen:
        events.announce(
            events.delivery_changed,
            ticket_id=ticket.id,
            message_id=message_id,
            status="seen",
            error=None,
        )
    return newly_seen


def subject_from(text: str) -> str:
    """Make a one-line subject from the start of ``text``."""
    return _shorten(text, SUBJECT_LENGTH)


def attachment_label(attachment: dict | None) -> str:
    """Name an attachment's kind, for subjects and previews of text-less messages."""
    if not attachment:
        return ""
    return attachment.get("type", "file").replace("_", " ").capitalize()


def _shorten(text: str, length: int) -> str:
    line = " ".join(text.split())
    if len(line) <= length:
        return line
    return line[: length - 1].rstrip() + "…"


@functools.cache
def _current_ticket():
    # Built once, as every customer message asks it: composing the statement
    # costs more than running it.
    return (
        select(Ticket)
        .where(Ticket.customer_id == bindparam("customer_id"))
        .where(Ticket.status != TicketStatus.CLOSED)
        .order_by(Ticket.id.desc())
        .limit(1)
    )


def _checked_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise SupportbotError("Write something first: the message is empty.")
    if len(text) > MAX_TEXT_LENGTH:
        raise SupportbotError(
            f"The message is too long: at most {MAX_TEXT_LENGTH} characters."
        )
    return text


def _record_message(ticket: Ticket, message: Message) -> None:
    now = utcnow()
    ticket.last_message_at = now
    ticket.last_message_preview = _shorten(
        message.text or attachment_label(message.attachment), PREVIEW_LENGTH
    )
    ticket.updated_at = now
    search.index(ticket, *_searchable(message))

    _announce_message(message)
    events.announce(events.ticket_changed, ticket_id=ticket.id)


def _searchable(message: Message) -> tuple[str, str | None]:
    return message.text, (message.attachment or {}).get("file_name")


def _announce_message(message: Message) -> None:
    # Read at commit: a new message is flushed with the rest of its
    # transaction, so that many are written in one statement.
    events.announce(
        events.message_created,
        ticket_id=lambda: message.ticket_id,
        message_id=lambda: message.id,
        kind=message.kind.value,
    )


def _record_event(ticket: Ticket, by: Staff | None, kind: str, **detail) -> None:
    ticket.updated_at = utcnow()
    event = TicketEvent(ticket=ticket, staff=by, kind=kind, detail=detail)
    db.session.add(event)
    db.session.flush()

    events.announce(events.ticket_event_created, ticket_id=ticket.id, event_id=event.id)
    events.announce(events.ticket_changed, ticket_id=ticket.id)
    who = f"staff {by.id}" if by is not None else "the customer"
    audit.info(
        "%s: ticket %s %s %s",
        who,
        ticket.id,
        kind,
        detail or "",
        extra={"staff_id": by.id if by else None, "ticket_id": ticket.id},
    )


def _notify_closed(ticket: Ticket, ask_rating: bool) -> None:
    language = ticket.customer.language_code
    payload = {"text": bot_text("ticket_closed_by_staff", language, number=ticket.id)}
    if ask_rating:
        payload["text"] += "\n\n" + bot_text("rating_prompt", language)
        payload["reply_markup"] = {
            "inline_keyboard": [
                [
                    {"text": f"{score} ★", "callback_data": f"rate:{ticket.id}:{score}"}
                    for score in RATINGS
                ]
            ]
        }
    outbox.enqueue(ticket.customer_id, "sendMessage", payload)
