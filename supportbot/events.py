"""Domain events, announced by services and published once their data commits.

Services call :func:`announce` inside a transaction; listeners, such as the live
console, receive the event only if that transaction commits, so nobody is told
about a ticket or message that was rolled back.
"""

from blinker import Namespace
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from .extensions import db

signals = Namespace()

# A ticket's status, assignee, priority or latest message changed.
ticket_changed = signals.signal("ticket-changed")
# A ticket was opened, or closed (ticket_id).
ticket_opened = signals.signal("ticket-opened")
ticket_closed = signals.signal("ticket-closed")
# A customer message, staff reply or note was added (ticket_id, message_id, kind).
message_created = signals.signal("message-created")
# Something was done to a ticket that its timeline shows (ticket_id, event_id).
ticket_event_created = signals.signal("ticket-event-created")

# An outbox row changed state (ticket_id, message_id, status, error).
delivery_changed = signals.signal("delivery-changed")

# Staff are writing a reply (ticket_id). Sent at once, not announced: it
# stores nothing, so there is no commit to wait for.
staff_typing = signals.signal("staff-typing")

PENDING = "supportbot.events.pending"


def announce(signal, **payload) -> None:
    """Publish ``signal`` with ``payload`` when the current transaction commits.

    The same event announced twice in one transaction is published once.
    """
    pending = db.session.info.setdefault(PENDING, [])
    if (signal, payload) not in pending:
        pending.append((signal, payload))


def _publish_after_commit(session: Session) -> None:
    pending = session.info.pop(PENDING, None)
    if not pending:
        return

    app = current_app._get_current_object()
    for signal, payload in pending:
        signal.send(app, **payload)


def _forget_after_rollback(session: Session, transaction) -> None:
    session.info.pop(PENDING, None)


def init_app(app) -> None:
    """Publish announced events after each commit."""
    if not event.contains(Session, "after_commit", _publish_after_commit):
        event.listen(Session, "after_commit", _publish_after_commit)
        event.listen(Session, "after_soft_rollback", _forget_after_rollback)
