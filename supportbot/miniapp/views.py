"""Mini App pages, and the JSON API their script calls."""

import logging
import os

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
    url_for,
)
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.exceptions import RequestEntityTooLarge

from .. import categories, files, tickets, uploads
from ..errors import Conflict, SupportbotError, TooLarge
from ..extensions import db
from ..models import Message, MessageKind, Ticket, TicketStatus
from . import queries
from .auth import current_customer, identity, recorded_customer

logger = logging.getLogger(__name__)

bp = Blueprint("miniapp", __name__, url_prefix="/app")

TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
# Telegram Web shows Mini Apps in a frame; its own script is the one from outside.
PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' {TELEGRAM_SCRIPT}",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors https://web.telegram.org",
    ]
)
MAX_FILES = 5
# Room in an upload for the form's text fields beside its files.
FORM_ALLOWANCE = 1024 * 1024
# File links are signed for the page that shows them and expire after a day.
FILE_LINK_AGE = 86400
STATUS_LABELS = {
    TicketStatus.OPEN: "Open",
    TicketStatus.PENDING: "Answered",
    TicketStatus.CLOSED: "Closed",
}


@bp.get("")
def requests_page():
    """Show the customer's requests; the page's script fetches them."""
    return _page("miniapp/list.html")


@bp.get("/new")
def new_request_page():
    """Show the form for a new request."""
    return _page("miniapp/new.html", categories=categories.names())


@bp.get("/tickets/<int:ticket_id>")
def chat_page(ticket_id: int):
    """Show one request's chat; the script loads it for its owner only."""
    return _page("miniapp/ticket.html", ticket_id=ticket_id)


@bp.get("/files/<token>")
def attachment(token: str):
    """Send a file from a conversation, by the signed link the API handed out."""
    try:
        message_id = _file_links().loads(token, max_age=FILE_LINK_AGE)
    except SignatureExpired:
        abort(404, "This file link has expired: reopen the request for a fresh one.")
    except BadSignature:
        abort(404, "This file link is not valid.")

    message = queries.visible_message(message_id) if type(message_id) is int else None
    if message is None or not files.has_file(message.attachment):
        abort(404, "This message has no file.")
    return files.send_attachment(message)


@bp.get("/api/tickets")
def list_tickets():
    """List the calling customer's requests with their status and last message."""
    customer = current_customer()

    found = queries.customer_tickets(customer.id) if customer else []
    return jsonify(ok=True, tickets=[_ticket_json(ticket) for ticket in found])


@bp.post("/api/tickets")
def create_ticket():
    """Open a request from the form: category, subject, description and files."""
    form, uploaded = _form_and_files()
    subject = _field(form, "subject")
    description = _field(form, "description")
    category = _field(form, "category")

    errors = _request_errors(subject, description, category, uploaded)
    if errors:
        return _invalid(errors)

    attachments = _store(uploaded)
    try:
        customer = recorded_customer()
        ticket = tickets.open_request(
            customer, subject, description, category or None, attachments
        )
        db.session.commit()
    except Exception:
        _discard(attachments)
        raise

    return jsonify(ok=True, ticket=_ticket_json(ticket)), 201


@bp.get("/api/tickets/<int:ticket_id>")
def show_ticket(ticket_id: int):
    """Describe one of the customer's requests."""
    ticket = queries.own_ticket(_customer_id(), ticket_id)
    return jsonify(ok=True, ticket=_ticket_json(ticket))


@bp.get("/api/tickets/<int:ticket_id>/messages")
def list_messages(ticket_id: int):
    """Return a request's conversation, or its messages after ``?after=<id>``."""
    ticket = queries.own_ticket(_customer_id(), ticket_id)
    after = request.args.get("after", 0, type=int)

    messages = queries.visible_messages(ticket, after)
    return jsonify(
        ok=True,
        ticket=_ticket_json(ticket),
        messages=[_message_json(message) for message in messages],
    )


@bp.post("/api/tickets/<int:ticket_id>/messages")
def post_message(ticket_id: int):
    """Add the customer's text and files to one of their requests."""
    ticket = queries.own_ticket(_customer_id(), ticket_id)
    form, uploaded = _form_and_files()
    text = _field(form, "text")

    errors = _message_errors(text, uploaded)
    if errors:
        return _invalid(errors)
    if ticket.is_closed:
        raise Conflict(f"Request #{ticket.id} is closed. Open a new request instead.")

    attachments = _store(uploaded)
    try:
        customer = recorded_customer()
        created = []
        if text:
            created.append(_add(customer, ticket, text, None))
        for item in attachments:
            created.append(_add(customer, ticket, "", item))
        db.session.commit()
    except Exception:
        _discard(attachments)
        raise

    return jsonify(ok=True, messages=[_message_json(m) for m in created]), 201


@bp.post("/api/tickets/<int:ticket_id>/seen")
def mark_seen(ticket_id: int):
    """Note which staff replies the customer has seen, for the console."""
    customer = current_customer()
    ticket = queries.own_ticket(customer.id if customer else None, ticket_id)
    data = request.get_json(silent=True)
    up_to = data.get("message_id") if isinstance(data, dict) else None
    if type(up_to) is not int:
        raise SupportbotError("Say which message was seen: a message_id.")

    seen = tickets.mark_seen(ticket, customer, min(up_to, queries.MAX_ID))
    db.session.commit()
    return jsonify(ok=True, seen=seen)


def _page(template: str, **context):
    limit = current_app.config["MINIAPP_UPLOAD_MAX_BYTES"]
    page = render_template(
        template,
        telegram_script=TELEGRAM_SCRIPT,
        max_files=MAX_FILES,
        max_file_bytes=limit,
        max_file_text=uploads.limit_text(limit),
        subject_length=tickets.SUBJECT_LENGTH,
        text_length=tickets.MAX_TEXT_LENGTH,
        **context,
    )
    response = make_response(page)
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


def _customer_id() -> int | None:
    customer = current_customer()
    return customer.id if customer else None


def _form_and_files():
    # Checked before the body is read, so a forged caller uploads nothing.
    identity()
    limit = current_app.config["MINIAPP_UPLOAD_MAX_BYTES"]
    request.max_content_length = MAX_FILES * limit + FORM_ALLOWANCE
    try:
        if request.is_json:
            data = request.get_json(silent=True)
            return (data if isinstance(data, dict) else {}), []
        uploaded = [item for item in request.files.getlist("files") if item.filename]
        return request.form, uploaded
    except RequestEntityTooLarge:
        raise TooLarge(
            f"That is too much at once: attach at most {MAX_FILES} files of up to"
            f" {uploads.limit_text(limit)} each."
        ) from None


def _field(form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _request_errors(subject, description, category, uploaded) -> dict[str, str]:
    errors = {}
    names = categories.names()
    if names and category not in names:
        errors["category"] = "Choose a category."
    if not subject:
        errors["subject"] = "Write a subject: a few words on what it is about."
    elif len(subject) > tickets.SUBJECT_LENGTH:
        errors["subject"] = (
            f"Keep the subject under {tickets.SUBJECT_LENGTH} characters."
        )
    if not description:
        errors["description"] = "Describe what happened."
    elif len(description) > tickets.MAX_TEXT_LENGTH:
        errors["description"] = (
            f"The description is too long: at most {tickets.MAX_TEXT_LENGTH}"
            " characters."
        )
    if len(uploaded) > MAX_FILES:
        errors["files"] = f"Attach at most {MAX_FILES} files."
    return errors


def _message_errors(text: str, uploaded) -> dict[str, str]:
    if not text and not uploaded:
        return {"text": "Write a message or attach a file."}
    if len(text) > tickets.MAX_TEXT_LENGTH:
        return {
            "text": f"The message is too long: at most {tickets.MAX_TEXT_LENGTH}"
            " characters."
        }
    if len(uploaded) > MAX_FILES:
        return {"files": f"Attach at most {MAX_FILES} files at once."}
    return {}


def _invalid(errors: dict[str, str]):
    logger.info("mini app input refused: %s", ", ".join(sorted(errors)))
    body = {"ok": False, "error": next(iter(errors.values())), "fields": errors}
    return jsonify(body), 400


def _store(uploaded) -> list[dict]:
    stored = []
    try:
        for item in uploaded:
            stored.append(uploads.store(item))
    except Exception:
        _discard(stored)
        raise
    return stored


def _discard(attachments: list[dict]) -> None:
    for item in attachments:
        path = uploads.path_of(item)
        if path and os.path.exists(path):
            os.unlink(path)


def _add(customer, ticket: Ticket, text: str, attachment: dict | None) -> Message:
    message, _ = tickets.add_customer_message(
        customer, text, attachment=attachment, ticket=ticket
    )
    return message


def _file_links() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt="supportbot.miniapp.file"
    )


def _ticket_json(ticket: Ticket) -> dict:
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "category": ticket.category,
        "status": ticket.status.value,
        "status_label": STATUS_LABELS[ticket.status],
        "closed": ticket.is_closed,
        "last_message": ticket.last_message_preview,
        "last_message_at": _iso(ticket.last_message_at or ticket.created_at),
        "created_at": _iso(ticket.created_at),
        "url": url_for("miniapp.chat_page", ticket_id=ticket.id),
    }


def _message_json(message: Message) -> dict:
    from_customer = message.kind is MessageKind.CUSTOMER
    if from_customer:
        author = "You"
    elif message.staff is not None:
        # Customers see the first name of whoever answers them.
        author = message.staff.name.split()[0] if message.staff.name else "Support"
    else:
        author = "Support"
    return {
        "id": message.id,
        "from": "customer" if from_customer else "staff",
        "author": author,
        "text": message.text,
        "created_at": _iso(message.created_at),
        "edited": message.edited_at is not None,
        "attachment": _attachment_json(message),
    }


def _attachment_json(message: Message) -> dict | None:
    attachment = message.attachment
    if not attachment:
        return None

    if files.has_file(attachment):
        return {
            "name": attachment.get("file_name") or tickets.attachment_label(attachment),
            "size": attachment.get("file_size"),
            "image": files.is_inline_image(attachment),
            "url": url_for("miniapp.attachment", token=_file_links().dumps(message.id)),
        }

    if attachment.get("type") == "location":
        name = f"Location {attachment.get('latitude')}, {attachment.get('longitude')}"
    elif attachment.get("type") == "contact":
        name = "Contact " + " ".join(
            filter(None, [attachment.get("first_name"), attachment.get("phone_number")])
        )
    else:
        name = tickets.attachment_label(attachment)
    return {"name": name, "size": None, "image": False, "url": None}


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None
