"""Console pages: the queue, a ticket and the actions taken on it."""

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from .. import canned, files, tickets, uploads
from .. import staff as staff_service
from ..errors import NotFound, SupportbotError, wants_json
from ..extensions import db
from ..models import (
    Message,
    MessageKind,
    Ticket,
    TicketEvent,
    TicketPriority,
    TicketStatus,
)
from ..routing import id_arg, parse_id
from . import queries

bp = Blueprint("console", __name__, url_prefix="/console")

# Timeline entries a ticket page shows at first; older ones are a click away.
TIMELINE_LENGTH = 200


@bp.before_request
@login_required
def require_login():
    """Keep every console page for signed-in staff."""


@bp.get("/")
def queue():
    """Show the queue of tickets, filtered and paginated."""
    queue_filter = queries.QueueFilter.from_args(request.args)
    page = id_arg(request.args, "page") or 1

    result = queries.queue_page(
        queue_filter, current_user, page, current_app.config["QUEUE_PAGE_SIZE"]
    )
    return render_template(
        "console/queue.html",
        queue_filter=queue_filter,
        result=result,
        total_unread=queries.total_unread(current_user),
    )


@bp.get("/tickets/<int:ticket_id>/row")
def queue_row(ticket_id: int):
    """Render one queue row, or 204 when the ticket is not in the filtered queue."""
    queue_filter = queries.QueueFilter.from_args(request.args)
    row = queries.queue_row(ticket_id, queue_filter, current_user)
    if row is None:
        return "", 204
    ticket, unread = row
    return render_template("console/_queue_row.html", ticket=ticket, unread=unread)


@bp.get("/unread")
def unread():
    """Count the signed-in staff member's unread customer messages."""
    return jsonify(unread=queries.total_unread(current_user))


@bp.get("/tickets/<int:ticket_id>")
def ticket(ticket_id: int):
    """Show a ticket: its history, its state and the reply box."""
    found = _ticket_with_history(ticket_id)

    tickets.mark_read(found, current_user)
    db.session.commit()

    return render_template(
        "console/ticket.html",
        **_timeline_of(found),
        **_state_choices(),
        canned=canned.all_replies(),
    )


@bp.get("/tickets/<int:ticket_id>/timeline")
def ticket_timeline(ticket_id: int):
    """Render a ticket's timeline, for catching up after (re)connecting."""
    found = _ticket_with_history(ticket_id)
    return render_template("console/_timeline.html", **_timeline_of(found))


@bp.get("/tickets/<int:ticket_id>/summary")
def ticket_summary(ticket_id: int):
    """Render the ticket's state panel, for live refreshes."""
    return render_template(
        "console/_ticket_summary.html", ticket=_ticket(ticket_id), **_state_choices()
    )


@bp.get("/messages/<int:message_id>")
def message(message_id: int):
    """Render one message of a timeline, for live updates."""
    found = db.session.get(Message, message_id)
    if found is None:
        abort(404, f"There is no message #{message_id}.")
    deliveries = queries.deliveries([found.id])
    return render_template(
        "console/_message.html", message=found, delivery=deliveries.get(found.id)
    )


@bp.get("/events/<int:event_id>")
def event(event_id: int):
    """Render one timeline event, for live updates."""
    found = db.session.get(TicketEvent, event_id)
    if found is None:
        abort(404, f"There is no event #{event_id}.")
    return render_template("console/_event.html", event=found)


@bp.post("/tickets/<int:ticket_id>/read")
def mark_read(ticket_id: int):
    """Note that the signed-in staff member has read the ticket."""
    tickets.mark_read(_ticket(ticket_id), current_user)
    db.session.commit()
    return jsonify(ok=True)


@bp.post("/tickets/<int:ticket_id>/messages")
def post_message(ticket_id: int):
    """Send a reply to the customer, or add an internal note."""
    found = _ticket(ticket_id)
    text = request.form.get("text", "")
    upload = request.files.get("file")

    if request.form.get("note"):
        if upload and upload.filename:
            raise SupportbotError("Files go to the customer; notes hold text only.")
        created = tickets.add_note(found, current_user, text)
    else:
        attachment = uploads.store(upload) if upload and upload.filename else None
        created = tickets.reply(found, current_user, text, attachment)
    tickets.mark_read(found, current_user)
    db.session.commit()

    return _done(found, message_id=created.id)


@bp.post("/tickets/<int:ticket_id>/assign")
def assign(ticket_id: int):
    """Assign the ticket to the signed-in staff member, a colleague or nobody."""
    found = _ticket(ticket_id)
    choice = request.form.get("assignee", "")

    if choice == "me":
        assignee = current_user
    elif choice == "":
        assignee = None
    elif (staff_id := parse_id(choice)) is not None:
        assignee = staff_service.get(staff_id)
    else:
        raise SupportbotError("Choose someone to assign the ticket to.")
    tickets.assign(found, assignee, by=current_user)
    db.session.commit()

    return _done(found)


@bp.post("/tickets/<int:ticket_id>/status")
def set_status(ticket_id: int):
    """Change the ticket's status."""
    found = _ticket(ticket_id)
    status = _choice(TicketStatus, request.form.get("status"), "status")

    if status is TicketStatus.CLOSED:
        tickets.close_ticket(found, current_user, bool(request.form.get("ask_rating")))
    else:
        tickets.set_status(found, status, by=current_user)
    db.session.commit()

    return _done(found)


@bp.post("/tickets/<int:ticket_id>/priority")
def set_priority(ticket_id: int):
    """Change the ticket's priority."""
    found = _ticket(ticket_id)
    priority = _choice(TicketPriority, request.form.get("priority"), "priority")

    tickets.set_priority(found, priority, by=current_user)
    db.session.commit()

    return _done(found)


@bp.post("/deliveries/<int:delivery_id>/resend")
def resend(delivery_id: int):
    """Queue a failed delivery to Telegram again."""
    row = tickets.resend_delivery(delivery_id, current_user)
    db.session.commit()

    if wants_json():
        return jsonify(ok=True, delivery_id=row.id, message_id=row.message_id)
    if row.message is not None:
        return redirect(url_for("console.ticket", ticket_id=row.message.ticket_id))
    return redirect(url_for("admin.deliveries"))


@bp.get("/files/<int:message_id>")
def attachment(message_id: int):
    """Send a message's file, fetched from Telegram once and then cached."""
    found = db.session.get(Message, message_id)
    if found is None or not found.attachment:
        abort(404, "This message has no file.")
    return files.send_attachment(found)


def _ticket_with_history(ticket_id: int) -> Ticket:
    found = queries.ticket_for_view(ticket_id)
    if found is None:
        raise NotFound(f"There is no ticket #{ticket_id}.")
    return found


def _timeline_of(ticket: Ticket) -> dict:
    # ?all=1 shows the whole history; otherwise its latest part.
    limit = None if request.args.get("all") == "1" else TIMELINE_LENGTH
    timeline = queries.timeline(ticket, limit)
    replies = [m.id for m in timeline.messages if m.kind is MessageKind.REPLY]
    return {
        "ticket": ticket,
        "timeline": timeline.items,
        "earlier": timeline.earlier,
        "deliveries": queries.deliveries(replies),
    }


def _state_choices() -> dict:
    # What the ticket panel's forms offer.
    return {
        "staff": staff_service.active_staff(),
        "statuses": list(TicketStatus),
        "priorities": list(TicketPriority),
    }


def _ticket(ticket_id: int) -> Ticket:
    found = db.session.get(Ticket, ticket_id)
    if found is None:
        raise NotFound(f"There is no ticket #{ticket_id}.")
    return found


def _choice(enum_class, value: str | None, name: str):
    try:
        return enum_class(value)
    except ValueError:
        raise SupportbotError(f"Unknown {name}: {value!r}.") from None


def _done(ticket: Ticket, **extra):
    # Scripts get JSON; a plain form post goes back to the ticket.
    if wants_json():
        return jsonify(ok=True, ticket_id=ticket.id, **extra)
    return redirect(url_for("console.ticket", ticket_id=ticket.id))
