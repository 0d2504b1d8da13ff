"""What the bot does with each update: the conversation with a customer.

Handlers translate between Telegram and the help desk's services; the rules
of tickets live in :mod:`supportbot.tickets`.
"""

import logging
from datetime import UTC, datetime

from flask import current_app
from telebot import types

from .. import customers, outbox, tickets
from ..extensions import db
from ..models import Customer, Ticket
from .strings import text
from .updates import attachment_of, profile_of

logger = logging.getLogger(__name__)

# The emoji that tells a customer a follow-up message reached their request.
RECEIVED_REACTION = "👀"
LEFT_STATUSES = ("left", "kicked")


def handle_update(update: types.Update) -> None:
    """Do what ``update`` asks; the caller commits."""
    if update.message is not None:
        on_message(update.message)
    elif update.edited_message is not None:
        on_edited_message(update.edited_message)
    elif update.my_chat_member is not None:
        on_my_chat_member(update.my_chat_member)
    elif update.callback_query is not None:
        on_callback_query(update.callback_query)


def on_message(message: types.Message) -> None:
    """Answer a command, or file the message on the customer's ticket."""
    if message.chat.type != "private":
        if _command_of(message)[0]:
            _say(message.chat.id, "private_only", None)
        return
    if message.from_user is None:
        return

    customer = customers.record_customer(profile_of(message.from_user))
    customers.set_blocked(customer, False)

    command, argument = _command_of(message)
    if command:
        COMMANDS.get(command, on_unknown_command)(customer, argument)
        return

    attachment = attachment_of(message)
    if message.content_type != "text" and attachment is None:
        _say(customer.id, "unsupported", customer.language_code)
        return

    ticket_message, opened = tickets.add_customer_message(
        customer,
        message.text or message.caption or "",
        attachment=attachment,
        telegram_chat_id=message.chat.id,
        telegram_message_id=message.message_id,
    )
    if opened:
        _say(
            customer.id,
            "ticket_opened",
            customer.language_code,
            reply_to=message.message_id,
            number=ticket_message.ticket.number,
        )
    else:
        _react(customer.id, message.message_id)


def on_edited_message(message: types.Message) -> None:
    """Keep the new version of an edited customer message."""
    if message.chat.type != "private" or _command_of(message)[0]:
        return

    edited = tickets.edit_customer_message(
        message.chat.id,
        message.message_id,
        message.text or message.caption or "",
        attachment_of(message),
    )
    if edited is None:
        logger.info(
            "edit of unknown message %s in chat %s ignored",
            message.message_id,
            message.chat.id,
        )


def on_my_chat_member(change: types.ChatMemberUpdated) -> None:
    """Note a customer blocking or unblocking the bot, or the bot joining a group."""
    status = change.new_chat_member.status
    if change.chat.type == "private":
        customer = customers.record_customer(profile_of(change.from_user))
        customers.set_blocked(customer, status in LEFT_STATUSES, _moment(change.date))
        return

    joined = change.old_chat_member.status in LEFT_STATUSES
    if joined and status not in LEFT_STATUSES:
        logger.info("bot added to %s %s", change.chat.type, change.chat.id)
        _say(change.chat.id, "private_only", None)


def on_callback_query(query: types.CallbackQuery) -> None:
    """Take a customer's rating from the buttons under a close notice."""
    customer = customers.record_customer(profile_of(query.from_user))
    language = customer.language_code
    ticket = _rated_ticket(query.data or "", customer)

    if ticket is None:
        answer = text("rating_unavailable", language)
    else:
        tickets.rate(ticket, customer, int(query.data.rsplit(":", 1)[1]))
        answer = text("rating_thanks", language)
    outbox.enqueue(
        customer.id,
        "answerCallbackQuery",
        {"callback_query_id": query.id, "text": answer},
    )
    if query.message is not None and ticket is not None:
        # The buttons go, so that a rating is given once.
        outbox.enqueue(
            customer.id,
            "editMessageReplyMarkup",
            {
                "message_id": query.message.message_id,
                "reply_markup": {"inline_keyboard": []},
            },
        )


def _rated_ticket(data: str, customer: Customer) -> Ticket | None:
    # Buttons carry "rate:<ticket>:<score>"; anything else is stale or forged.
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != "rate":
        return None
    if not (parts[1].isdigit() and parts[2] in {"1", "2", "3", "4", "5"}):
        return None

    ticket = db.session.get(Ticket, int(parts[1]))
    if ticket is None or ticket.customer_id != customer.id or not ticket.is_closed:
        return None
    return ticket


def on_start(customer: Customer, argument: str) -> None:
    """Greet the customer and offer the Mini App."""
    language = customer.language_code
    greeting = text("greeting", language, name=customer.first_name)
    markup = _mini_app_keyboard(language)
    if markup is not None:
        greeting += "\n\n" + text("greeting_app", language)
    _send(customer.id, greeting, reply_markup=markup)

    button = mini_app_menu_button(language)
    if button is not None:
        outbox.enqueue(customer.id, "setChatMenuButton", {"menu_button": button})


def on_help(customer: Customer, argument: str) -> None:
    """List the commands."""
    _say(customer.id, "help", customer.language_code)


def on_new(customer: Customer, argument: str) -> None:
    """Open a new ticket, with the command's argument as its first message."""
    ticket = tickets.open_ticket(customer)
    if argument:
        tickets.add_customer_message(customer, argument, ticket=ticket)
        key = "ticket_opened"
    else:
        key = "ticket_opened_empty"
    _say(customer.id, key, customer.language_code, number=ticket.number)


def on_status(customer: Customer, argument: str) -> None:
    """List the customer's open tickets."""
    language = customer.language_code
    open_tickets = tickets.unclosed_tickets(customer)
    if not open_tickets:
        _say(customer.id, "no_open_tickets", language)
        return

    lines = [text("status_header", language)]
    for ticket in open_tickets:
        lines.append(
            text(
                "status_line",
                language,
                number=ticket.number,
                status=text(f"status_{ticket.status.value}", language),
                subject=ticket.subject or text("no_subject", language),
            )
        )
    _send(customer.id, "\n".join(lines))


def on_close(customer: Customer, argument: str) -> None:
    """Close the customer's current ticket."""
    ticket = tickets.current_ticket(customer)
    if ticket is None:
        _say(customer.id, "nothing_to_close", customer.language_code)
        return

    tickets.close_ticket(ticket, by=customer)
    _say(customer.id, "ticket_closed", customer.language_code, number=ticket.number)


def on_unknown_command(customer: Customer, argument: str) -> None:
    """Say the command is unknown and list the known ones."""
    language = customer.language_code
    reply = text("unknown_command", language) + "\n\n" + text("help", language)
    _send(customer.id, reply)


COMMANDS = {
    "start": on_start,
    "help": on_help,
    "new": on_new,
    "status": on_status,
    "close": on_close,
}


def _moment(timestamp: int | None) -> datetime | None:
    # Telegram's dates are Unix times; one beyond 32 bits is not a real date.
    if timestamp is None or not 0 < timestamp < 2**32:
        return None
    return datetime.fromtimestamp(timestamp, UTC)


def _command_of(message: types.Message) -> tuple[str, str]:
    # "/new@SupportBot Printer jammed" -> ("new", "Printer jammed")
    body = message.text or ""
    if not body.startswith("/"):
        return "", ""

    head, _, argument = body.partition(" ")
    command = head[1:].split("@", 1)[0].lower()
    return command, argument.strip()


def mini_app_menu_button(language: str | None = None) -> dict | None:
    """Describe the chat menu button that opens the Mini App, if it can be offered.

    Telegram shows the menu button in private chats only, so it is never sent
    where a ``web_app`` button would be refused.
    """
    public_url = current_app.config["PUBLIC_URL"]
    if not public_url.startswith("https://"):
        return None
    return {
        "type": "web_app",
        "text": text("button_my_requests", language),
        "web_app": {"url": f"{public_url}/app"},
    }


def _mini_app_keyboard(language: str | None) -> dict | None:
    # Telegram opens Mini Apps from https addresses only.
    public_url = current_app.config["PUBLIC_URL"]
    if not public_url.startswith("https://"):
        return None

    markup = types.InlineKeyboardMarkup()
    markup.row(
        types.InlineKeyboardButton(
            text("button_new_request", language),
            web_app=types.WebAppInfo(f"{public_url}/app/new"),
        ),
        types.InlineKeyboardButton(
            text("button_my_requests", language),
            web_app=types.WebAppInfo(f"{public_url}/app"),
        ),
    )
    return markup.to_dict()


def _say(chat_id: int, key: str, language: str | None, reply_to=None, **values):
    _send(chat_id, text(key, language, **values), reply_to=reply_to)


def _send(chat_id: int, body: str, reply_markup=None, reply_to=None) -> None:
    payload = {"text": body}
    if reply_markup is not None:
        payload["reply_markup"] = reply_markup
    if reply_to is not None:
        payload["reply_parameters"] = {
            "message_id": reply_to,
            "allow_sending_without_reply": True,
        }
    outbox.enqueue(chat_id, "sendMessage", payload)


def _react(chat_id: int, message_id: int) -> None:
    reaction = [{"type": "emoji", "emoji": RECEIVED_REACTION}]
    outbox.enqueue(
        chat_id, "setMessageReaction", {"message_id": message_id, "reaction": reaction}
    )
