"""Domain events, announced by services and published once their data commits.

Services call :func:`announce` inside a transaction; listeners, such as the live
console, receive the event only if that transaction commits, so nobody is told
about a ticket or message that was rolled back.
"""

from contextlib import ExitStack

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
AROUND = "supportbot.events.around"


def announce(signal, **payload) -> None:
    """Publish ``signal`` with ``payload`` when the current transaction commits.

    A value may be a function of no arguments, such as one that reads the id
    of a row not yet flushed: it is called just before the commit, once the
    transaction's rows are flushed. The same event announced twice in one
    transaction is published once.
    """
    db.session.info.setdefault(PENDING, []).append((signal, payload))


def publish_within(app, context) -> None:
    """Publish each commit's events inside ``context()``, a context manager.

    The live console's Redis queue uses it to send a commit's events to Redis
    in one round trip.
    """
    app.extensions.setdefault(AROUND, []).append(context)


def _settle_before_commit(session: Session) -> None:
    pending = session.info.get(PENDING)
    if not pending:
        return

    if any(callable(value) for _, payload in pending for value in payload.values()):
        # The values read ids that rows are given when they are flushed.
        session.flush()
    settled = []
    for signal, payload in pending:
        values = {
            name: value() if callable(value) else value
            for name, value in payload.items()
        }
        if (signal, values) not in settled:
            settled.append((signal, values))
    session.info[PENDING] = settled


def _publish_after_commit(session: Session) -> None:
    pending = session.info.pop(PENDING, None)
    if not pending:
        return

    app = current_app._get_current_object()
    with ExitStack() as around:
        for context in app.extensions.get(AROUND, ()):
            around.enter_context(context())
        for signal, payload in pending:
            signal.send(app, **payload)


def _forget_after_rollback(session: Session, transaction) -> None:
    session.info.pop(PENDING, None)


def init_app(app) -> None:
    """Publish announced events after each commit."""
    if not event.contains(Session, "after_commit", _publish_after_commit):
        event.listen(Session, "before_commit", _settle_before_commit)
        event.listen(Session, "after_commit", _publish_after_commit)
        event.listen(Session, "after_soft_rollback", _forget_after_rollback)
