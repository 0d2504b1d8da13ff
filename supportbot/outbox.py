"""Outgoing Bot API calls, queued in the database and sent in order per chat.

Whatever makes the bot speak writes an outbox row in its own transaction, so a
message is never lost between the database and Telegram. A worker claims the
oldest row of each chat, makes the call and records the outcome.
"""

import logging
import random
import threading
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from . import events, uploads
from .extensions import db
from .models import Customer, OutboxMessage, OutboxStatus, utcnow
from .telegram.api import BotAPI, TelegramAPIError, TelegramError

logger = logging.getLogger(__name__)

PENDING = (OutboxStatus.QUEUED, OutboxStatus.SENDING)
# How long a claimed row stays with its worker before another may take it.
LEASE = timedelta(seconds=60)
MAX_BACKOFF = 300
WAKE = "supportbot.outbox.wake"


def enqueue(chat_id: int, method: str, payload: dict, message=None) -> OutboxMessage:
    """Queue a Bot API call; it is sent once the current transaction commits."""
    row = OutboxMessage(
        chat_id=chat_id,
        method=method,
        payload={"chat_id": chat_id, **payload},
        message=message,
    )
    db.session.add(row)
    db.session.info[WAKE] = True
    return row


def deliver_due(api: BotAPI, limit: int = 100) -> int:
    """Send every row that is due, oldest first per chat; return how many."""
    delivered = 0
    while True:
        heads = _due_heads(limit)
        if not heads:
            return delivered

        for row_id in heads:
            row = _claim(row_id)
            if row is not None:
                _send(api, row)
                delivered += 1


def _due_heads(limit: int) -> list[int]:
    # Only the oldest unfinished row of each chat may go: order within a chat.
    oldest = (
        select(func.min(OutboxMessage.id))
        .where(OutboxMessage.status.in_(PENDING))
        .group_by(OutboxMessage.chat_id)
    )
    statement = (
        select(OutboxMessage.id)
        .where(OutboxMessage.id.in_(oldest))
        .where(OutboxMessage.next_attempt_at <= utcnow())
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    heads = list(db.session.scalars(statement))
    db.session.commit()
    return heads


def _claim(row_id: int) -> OutboxMessage | None:
    # A conditional update: when several workers race, one of them wins.
    now = utcnow()
    claimed = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id)
        .where(OutboxMessage.status.in_(PENDING))
        .where(OutboxMessage.next_attempt_at <= now)
        .values(
            status=OutboxStatus.SENDING,
            next_attempt_at=now + LEASE,
            attempts=OutboxMessage.attempts + 1,
        )
    ).rowcount
    db.session.commit()
    if not claimed:
        return None
    return db.session.get(OutboxMessage, row_id)


def _send(api: BotAPI, row: OutboxMessage) -> None:
    try:
        with uploads.opened(row.payload) as (params, files):
            result = api.call(row.method, params, files=files)
    except uploads.Missing as error:
        _record_failure(row, TelegramError(row.method, str(error), retryable=False))
    except TelegramError as error:
        _record_failure(row, error)
    else:
        row.status = OutboxStatus.SENT
        row.sent_at = utcnow()
        row.error = None
        if isinstance(result, dict):
            row.telegram_message_id = result.get("message_id")
        if row.message is not None and row.telegram_message_id:
            row.message.telegram_message_id = row.telegram_message_id
        logger.info("outbox %s sent %s to chat %s", row.id, row.method, row.chat_id)
    if row.message is not None:
        events.announce(
            events.delivery_changed,
            ticket_id=row.message.ticket_id,
            message_id=row.message_id,
            status=row.status.value,
            error=row.error,
        )
    db.session.commit()


def _record_failure(row: OutboxMessage, error: TelegramError) -> None:
    now = utcnow()
    row.error = str(error.reason)
    deadline = row.created_at + timedelta(
        seconds=current_app.config["OUTBOX_RETRY_DEADLINE"]
    )

    if isinstance(error, TelegramAPIError) and error.error_code == 429:
        row.status = OutboxStatus.QUEUED
        row.next_attempt_at = now + timedelta(seconds=error.retry_after or 1)
        logger.warning(
            "outbox %s: chat %s rate limited for %ss",
            row.id,
            row.chat_id,
            error.retry_after,
        )
    elif error.retryable and now < deadline:
        backoff = min(2**row.attempts, MAX_BACKOFF) * random.uniform(0.5, 1.0)
        row.status = OutboxStatus.QUEUED
        row.next_attempt_at = now + timedelta(seconds=backoff)
        logger.warning(
            "outbox %s: %s; retrying in %.1fs", row.id, error.reason, backoff
        )
    else:
        row.status = OutboxStatus.FAILED
        logger.warning("outbox %s failed for chat %s: %s", row.id, row.chat_id, error)
        if isinstance(error, TelegramAPIError) and error.error_code == 403:
            _mark_unreachable(row.chat_id, now)


def _mark_unreachable(chat_id: int, now) -> None:
    db.session.execute(
        update(Customer)
        .where(Customer.id == chat_id)
        .where(Customer.blocked_at.is_(None))
        .values(blocked_at=now)
    )


class Worker:
    """Deliver the outbox from a background thread of this process."""

    def __init__(self, app: Flask, api: BotAPI, poll_interval: float = 5.0):
        self.app = app
        self.api = api
        self.poll_interval = poll_interval
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread unless it is running."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self.run, name="outbox-worker", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        """Look for new rows now rather than at the next poll."""
        self.start()
        self._wakeup.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish and wait for it."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Deliver until stopped, sleeping between rounds until woken."""
        logger.info("outbox worker started")
        while not self._stopping.is_set():
            self._wakeup.clear()
            with self.app.app_context():
                try:
                    deliver_due(self.api)
                except Exception:
                    # A broken round must not end delivery for good.
                    db.session.rollback()
                    logger.exception("outbox delivery round failed")
                finally:
                    db.session.remove()
            self._wakeup.wait(self.poll_interval)


def _wake_after_commit(session: Session) -> None:
    if session.info.pop(WAKE, False):
        worker = current_app.extensions.get("supportbot.outbox")
        if worker is not None:
            worker.wake()


def _forget_after_rollback(session: Session) -> None:
    session.info.pop(WAKE, None)


cli = AppGroup("outbox", help="Deliver the bot's queued messages.")


@cli.command("work")
@click.option("--poll-interval", default=2.0, help="Seconds between looks for rows.")
def work(poll_interval: float) -> None:
    """Deliver queued messages until stopped: the production worker process."""
    api = current_app.extensions["supportbot.telegram"]
    if api is None:
        raise click.ClickException("TELEGRAM_BOT_TOKEN is not set.")

    worker = Worker(current_app._get_current_object(), api, poll_interval)
    click.echo("Delivering the outbox; press Ctrl+C to stop.")
    try:
        worker.run()
    except KeyboardInterrupt:
        click.echo("Stopped.")


def init_app(app: Flask) -> None:
    """Run a delivery thread in this process when the configuration asks for it."""
    app.cli.add_command(cli)
    api = app.extensions["supportbot.telegram"]
    if not event.contains(Session, "after_commit", _wake_after_commit):
        event.listen(Session, "after_commit", _wake_after_commit)
        event.listen(Session, "after_rollback", _forget_after_rollback)

    if api is None or app.config["OUTBOX_WORKER"] != "thread":
        return

    worker = Worker(app, api)
    app.extensions["supportbot.outbox"] = worker
    # Started by the first request, so that rows left from an earlier run go
    # out too; never at import, and never in CLI commands that do not ask.
    app.before_request(worker.start)
