"""Updates stored by the webhook, then handled by this process's handlers.

The webhook stores each update whole in one statement and answers Telegram at
once, so a burst of updates never keeps Telegram waiting. Handler threads then
claim stored updates, the oldest of each chat first, and handle them in the
transaction that marks them handled: an update is handled once, and one whose
handling fails keeps its error until it is handled again.
"""

import functools
import logging
import threading
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import aliased

from ..errors import NotFound
from ..extensions import db
from ..models import Staff, TelegramUpdate, insert_or_ignore, utcnow
from ..monitoring.metrics import UPDATES_HANDLED, WEBHOOK_UPDATES
from ..outbox.wakeup import Doorbell, work_until_stopped
from .conversation import handle_update
from .updates import ALLOWED_UPDATES, chat_of, parse_update

logger = logging.getLogger(__name__)
audit = logging.getLogger("supportbot.audit")

STATE = "supportbot.inbox"
# Errors that say the database is out of reach, not that the update is bad.
UNAVAILABLE = (OperationalError, InterfaceError)
ERROR_LENGTH = 2000
# Most updates one handler takes into one transaction.
BATCH = 20


def store(payload) -> bool:
    """Check ``payload`` and store it unless it was stored before, and commit.

    Returns whether the update was new. A new update is handled soon after by
    a handler of this process, or of another one.
    """
    update_id, kind, parsed = parse_update(payload)
    if parsed is None:
        # Nothing to do but know it again if it comes again.
        row = {"update_id": update_id, "kind": kind[:32], "handled_at": utcnow()}
    else:
        row = {
            "update_id": update_id,
            "kind": kind,
            "chat_id": chat_of(parsed),
            "payload": payload,
        }

    # One statement in a transaction of its own, without the session's
    # bookkeeping, which would cost the webhook more than the statement.
    with db.engine.begin() as connection:
        new = insert_or_ignore(TelegramUpdate, connection=connection, **row)

    label = kind if kind in ALLOWED_UPDATES else "other"
    WEBHOOK_UPDATES.labels(label, "new" if new else "duplicate").inc()
    if not new:
        logger.info("update %s is a duplicate; ignored", update_id)
    elif parsed is None:
        logger.info("update %s of kind %r ignored", update_id, kind[:32])
    else:
        wake()
    return new


def wake() -> None:
    """Tell this process's idle handlers that updates are waiting."""
    current_app.extensions[STATE].doorbell.ring()


def handle_next(limit: int = BATCH) -> int:
    """Handle the next stored updates that may go now, and commit; return how many.

    Takes up to ``limit`` updates of different chats and handles them in one
    transaction; should one fail, each goes again in a transaction of its
    own, so that only that one fails. Returns 0 when none may go: every stored
    update is handled, or waits behind an earlier update of its chat that
    another handler holds. Raises the database's error when the database is
    out of reach; the updates then stay stored for the next try.
    """
    claimed = _claim(_claim_waiting(limit))
    if not claimed:
        db.session.rollback()
        return 0

    update_ids = [stored.update_id for stored in claimed]
    try:
        _handle(claimed)
    except UNAVAILABLE:
        db.session.rollback()
        raise
    except Exception:
        db.session.rollback()
        for update_id in update_ids:
            _handle_alone(update_id)
    return len(update_ids)


def handle_waiting() -> int:
    """Handle stored updates until none may go; return how many were taken."""
    taken = 0
    while count := handle_next():
        taken += count
    return taken


def handle_again(update_ids: list[int] | None = None, by: Staff | None = None):
    """Put failed updates back in line, all of them without ``update_ids``.

    Returns the ids put back; the caller commits, then :func:`wake` starts them.
    """
    statement = select(TelegramUpdate.update_id).where(
        TelegramUpdate.error.is_not(None)
    )
    if update_ids is not None:
        statement = statement.where(TelegramUpdate.update_id.in_(update_ids))
    failed = sorted(db.session.scalars(statement))

    missing = set(update_ids or ()) - set(failed)
    if missing:
        raise NotFound(
            "No failed update has the id "
            + ", ".join(str(update_id) for update_id in sorted(missing))
            + "."
        )

    db.session.execute(
        update(TelegramUpdate)
        .where(TelegramUpdate.update_id.in_(failed))
        .values(handled_at=None, error=None)
    )
    who = f"staff {by.id}" if by is not None else "the command line"
    audit.info(
        "%s put updates %s back to be handled",
        who,
        failed,
        extra={"staff_id": by.id if by is not None else None},
    )
    return failed


def prune(days: int) -> int:
    """Delete updates handled more than ``days`` days ago; return how many.

    Failed updates stay until they are handled. Telegram gives up delivering
    an update long before, so a deleted update is never delivered again.
    """
    cutoff = utcnow() - timedelta(days=days)
    deleted = db.session.execute(
        delete(TelegramUpdate)
        .where(TelegramUpdate.handled_at < cutoff)
        .where(TelegramUpdate.error.is_(None))
    )
    db.session.commit()
    return deleted.rowcount


def failed_updates(limit: int = 100) -> list[TelegramUpdate]:
    """Return updates whose handling failed, newest first."""
    return list(
        db.session.scalars(
            select(TelegramUpdate)
            .where(TelegramUpdate.error.is_not(None))
            .order_by(TelegramUpdate.update_id.desc())
            .limit(limit)
        )
    )


def _claim(statement, **params) -> list[TelegramUpdate]:
    # Until the transaction ends no other handler takes these updates:
    # PostgreSQL's row locks skip them, and SQLite lets one writer at a time.
    # Should it roll back, they wait again.
    claimed = db.session.scalars(statement, {"now": utcnow(), **params}).all()
    return sorted(claimed, key=lambda stored: stored.update_id)


@functools.cache
def _claim_waiting(limit: int):
    # The oldest update of a chat goes first; later ones wait until it is
    # handled, whichever process holds it. Built once: composing it costs
    # more than running it.
    waiting, earlier = aliased(TelegramUpdate), aliased(TelegramUpdate)
    earlier_waiting = (
        exists()
        .where(earlier.chat_id == waiting.chat_id)
        .where(earlier.handled_at.is_(None))
        .where(earlier.update_id < waiting.update_id)
    )
    return _claiming(
        select(waiting.update_id)
        .where(waiting.handled_at.is_(None))
        .where(~earlier_waiting)
        .order_by(waiting.update_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


@functools.cache
def _claim_one():
    waiting = aliased(TelegramUpdate)
    return _claiming(
        select(waiting.update_id)
        .where(waiting.update_id == bindparam("one"))
        .where(waiting.handled_at.is_(None))
        .with_for_update(skip_locked=True)
    )


def _claiming(waiting):
    # One statement takes the updates and marks them, and hands them back.
    return (
        update(TelegramUpdate)
        .where(TelegramUpdate.update_id.in_(waiting))
        .values(handled_at=bindparam("now"))
        .returning(TelegramUpdate)
        .execution_options(synchronize_session=False)
    )


def _handle(claimed: list[TelegramUpdate]) -> None:
    # A batch holds one update a chat, and none reads what another chat's
    # update wrote: their rows are flushed together at the end, a statement a
    # table, rather than before each query.
    with db.session.no_autoflush:
        for stored in claimed:
            handle_update(parse_update(stored.payload)[2])
    db.session.commit()
    UPDATES_HANDLED.labels("handled").inc(len(claimed))


def _handle_alone(update_id: int) -> None:
    claimed = _claim(_claim_one(), one=update_id)
    if not claimed:
        # Taken by another handler meanwhile.
        db.session.rollback()
        return

    try:
        _handle(claimed)
    except UNAVAILABLE:
        db.session.rollback()
        raise
    except Exception as error:
        # One update that cannot be handled must not hold up its chat or
        # the others: its error is kept, and the next update goes on.
        db.session.rollback()
        _fail(update_id, error)


def _fail(update_id: int, error: Exception) -> None:
    logger.error("update %s not handled", update_id, exc_info=error)
    reason = f"{type(error).__name__}: {error}"[:ERROR_LENGTH]
    db.session.execute(
        update(TelegramUpdate)
        .where(TelegramUpdate.update_id == update_id)
        .where(TelegramUpdate.handled_at.is_(None))
        .values(handled_at=utcnow(), error=reason)
    )
    db.session.commit()
    UPDATES_HANDLED.labels("failed").inc()


class Inbox:
    """The doorbell the webhook rings, and this process's handler threads."""

    def __init__(self, app: Flask, handlers: int, poll_interval: float = 5.0):
        self.app = app
        self.handlers = handlers
        self.poll_interval = poll_interval
        self.doorbell = Doorbell()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the handler threads unless they are running."""
        with self._lock:
            if self._threads or not self.handlers:
                return
            self._stopping.clear()
            self._threads = [
                threading.Thread(
                    target=self._handle_until_stopped,
                    name=f"update-handler-{number}",
                    daemon=True,
                )
                for number in range(1, self.handlers + 1)
            ]
            for thread in self._threads:
                thread.start()
        logger.info("%s update handlers started", self.handlers)

    def stop(self, timeout: float = 15.0) -> None:
        """Let updates in hand finish, then end the threads."""
        with self._lock:
            threads, self._threads = self._threads, []
        self._stopping.set()
        self.doorbell.ring_everyone()
        for thread in threads:
            thread.join(timeout)

    def run(self) -> None:
        """Handle updates until interrupted, as ``flask bot handle`` does."""
        self.start()
        try:
            while not self._stopping.wait(1.0):
                pass
        finally:
            self.stop()

    def _handle_until_stopped(self) -> None:
        def handle_some():
            taken = handle_next()
            if taken == BATCH:
                # More may be waiting: another handler takes some of them.
                return None
            if taken:
                # Look again at once, but alone: this batch's commit may have
                # let later updates of its chats go, and each update stored
                # meanwhile rang the doorbell itself.
                return 0
            # Updates stored by other processes are found by looking.
            return self.poll_interval

        work_until_stopped(
            self.app,
            self.doorbell,
            self._stopping,
            handle_some,
            self.poll_interval,
            "updates not handled",
        )


def init_app(app: Flask) -> None:
    """Give the app its inbox, with handler threads started by the first request."""
    handlers = app.config["TELEGRAM_HANDLERS"]
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # SQLite takes one writer at a time and cannot skip locked rows.
        handlers = min(handlers, 1)

    inbox = Inbox(app, handlers)
    app.extensions[STATE] = inbox
    if handlers:
        app.before_request(inbox.start)


def inbox_of(app: Flask) -> Inbox:
    """Return the app's inbox."""
    return app.extensions[STATE]
