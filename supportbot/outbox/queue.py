"""Putting calls in the outbox, sending failed ones again, and finding problems.

None of these functions commits: the caller's transaction stores the rows with
whatever caused them. Once it commits, senders are woken and
``delivery_changed`` is sent for every row that was added or queued again.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, has_app_context
from sqlalchemy import inspect, or_, select, text
from sqlalchemy.orm import Session, selectinload

from ..errors import Conflict, NotFound
from ..extensions import db
from ..models import Customer, OutboxMessage, OutboxStatus, utcnow
from .signals import announce, state_of
from .splitting import split_call
from .state import STATE
from .wakeup import POSTGRES_CHANNEL

logger = logging.getLogger(__name__)

WAKE = "supportbot.outbox.wake"
NOTIFIED = "supportbot.outbox.notified"
CHANGED = "supportbot.outbox.changed"
UNFINISHED = (OutboxStatus.QUEUED, OutboxStatus.SENDING)


def enqueue(chat_id: int, method: str, payload: dict, message=None) -> OutboxMessage:
    """Queue a Bot API call; it is sent once the current transaction commits.

    A text over 4096 characters, or a caption over 1024, is queued as several
    parts that go in order. The first part's row is returned.
    """
    calls = split_call(method, {"chat_id": chat_id, **payload})
    now = utcnow()
    first = None
    for number, (part_method, part_payload) in enumerate(calls, start=1):
        row = OutboxMessage(
            chat_id=chat_id,
            method=part_method,
            payload=part_payload,
            message=message,
            queued_at=now,
            next_attempt_at=now,
            part=number,
            parts=len(calls),
            first_part_id=first.id if first is not None else None,
        )
        db.session.add(row)
        if len(calls) > 1:
            # One insert per part keeps the parts' ids, and so their order, rising.
            db.session.flush()
        first = first or row

    _request_wake()
    return first


def resend(row_id: int) -> OutboxMessage:
    """Queue a failed delivery again, with the other failed parts of its message."""
    row = db.session.get(
        OutboxMessage, row_id, options=[selectinload(OutboxMessage.message)]
    )
    if row is None:
        raise NotFound(f"Delivery {row_id} does not exist.")
    if row.status is not OutboxStatus.FAILED:
        raise Conflict(
            f"Delivery {row_id} is {row.status.value}; only a failed delivery can"
            " be sent again."
        )
    if row.chat_id > 0:
        customer = db.session.get(Customer, row.chat_id)
        if customer is not None and customer.blocked_at is not None:
            raise Conflict(
                "The customer has blocked the bot. Their messages can be sent"
                " again once they unblock it or write to it."
            )

    rows = [row]
    if row.parts > 1:
        first = row.first_part_id or row.id
        rows = db.session.scalars(
            select(OutboxMessage)
            .options(selectinload(OutboxMessage.message))
            .where(OutboxMessage.chat_id == row.chat_id)
            .where(or_(OutboxMessage.id == first, OutboxMessage.first_part_id == first))
            .where(OutboxMessage.status == OutboxStatus.FAILED)
            .order_by(OutboxMessage.id)
        ).all()

    now = utcnow()
    for failed in rows:
        failed.status = OutboxStatus.QUEUED
        failed.error = None
        failed.attempts = 0
        failed.queued_at = now
        failed.next_attempt_at = now
    _request_wake()
    logger.info("outbox %s queued again for chat %s", row.id, row.chat_id)
    return row


@dataclass(frozen=True)
class DeliveryProblems:
    """Deliveries given up, and deliveries that should have left by now."""

    failed: list[OutboxMessage]
    stuck: list[OutboxMessage]


def failed_and_stuck(
    stuck_after: timedelta = timedelta(minutes=5), limit: int = 100
) -> DeliveryProblems:
    """Return failed rows, newest first, and rows unsent after ``stuck_after``."""
    failed = db.session.scalars(
        select(OutboxMessage)
        .options(selectinload(OutboxMessage.message))
        .where(OutboxMessage.status == OutboxStatus.FAILED)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    ).all()
    stuck = db.session.scalars(
        select(OutboxMessage)
        .options(selectinload(OutboxMessage.message))
        .where(OutboxMessage.status.in_(UNFINISHED))
        .where(OutboxMessage.queued_at <= utcnow() - stuck_after)
        .order_by(OutboxMessage.queued_at, OutboxMessage.id)
        .limit(limit)
    ).all()
    return DeliveryProblems(failed=list(failed), stuck=list(stuck))


def _request_wake() -> None:
    session = db.session()
    session.info[WAKE] = True
    if session.info.get(NOTIFIED):
        return

    if current_app.extensions[STATE].postgres:
        # Delivered by PostgreSQL at commit, and never if the transaction fails.
        session.execute(text(f"NOTIFY {POSTGRES_CHANNEL}"))
        session.info[NOTIFIED] = True


def _ticket_of(row: OutboxMessage) -> int | None:
    # Only a message already loaded: a flush is no time to run queries.
    message = inspect(row).attrs.message.loaded_value
    return getattr(message, "ticket_id", None)


def note_changes(session: Session, flush_context) -> None:
    """Remember outbox rows added or requeued, to announce them after commit."""
    for row in [*session.new, *session.dirty]:
        if not isinstance(row, OutboxMessage):
            continue
        if row in session.dirty and not inspect(row).attrs.status.history.has_changes():
            continue
        session.info.setdefault(CHANGED, {})[row.id] = state_of(row, _ticket_of(row))


def after_commit(session: Session) -> None:
    """Wake the senders and announce the rows once the rows are committed."""
    changed = session.info.pop(CHANGED, {})
    wake = session.info.pop(WAKE, False)
    session.info.pop(NOTIFIED, None)
    if not has_app_context() or STATE not in current_app.extensions:
        return

    app = current_app._get_current_object()
    if wake:
        app.extensions[STATE].wake()
    for state in changed.values():
        announce(app, state)


def after_rollback(session: Session) -> None:
    """Forget what the rolled-back transaction would have announced."""
    for key in (CHANGED, WAKE, NOTIFIED):
        session.info.pop(key, None)
