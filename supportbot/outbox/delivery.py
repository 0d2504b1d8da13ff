"""Claiming, sending and recording outbox rows, one Bot API call at a time.

A row may go when it is its chat's oldest unfinished row, nothing else of its
chat is being sent, and its ``next_attempt_at`` has come. Claiming it sets it
``sending`` with a lease; the outcome is recorded only while that claim holds,
so a worker that lost its lease cannot overwrite what another one did.
"""

import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from .. import uploads
from ..extensions import db
from ..models import Customer, Message, OutboxMessage, OutboxStatus, utcnow
from ..telegram.api import (
    BotAPI,
    TelegramAPIError,
    TelegramError,
    TelegramNetworkError,
)
from .metrics import ERRORS, FAILED, SENT
from .settings import Rate
from .signals import announce
from .state import outbox_of

logger = logging.getLogger(__name__)

QUEUED, SENDING, SENT_STATUS, FAILED_STATUS = (
    OutboxStatus.QUEUED,
    OutboxStatus.SENDING,
    OutboxStatus.SENT,
    OutboxStatus.FAILED,
)
# A row is claimable when queued, or when a worker's claim on it has lapsed.
CLAIMABLE = (QUEUED, SENDING)
UNREACHABLE = "not sent: the customer has blocked the bot"
# The longest a sender keeps a claimed row while it waits for the overall rate.
SLOT_WAIT_LIMIT = 1.0


@dataclass(frozen=True)
class Claim:
    """A row a sender holds while it makes the row's call."""

    id: int
    chat_id: int
    method: str
    payload: dict
    message_id: int | None
    ticket_id: int | None
    attempts: int
    queued_at: datetime
    part: int
    parts: int
    first_part_id: int | None

    @property
    def held(self) -> dict:
        """Return the parameters that match the row only while this claim holds."""
        return {"row_id": self.id, "claim_attempts": self.attempts}

    def state(self, status, error=None, telegram_message_id=None) -> dict:
        """Return what ``delivery_changed`` tells about this row in ``status``."""
        return {
            "id": self.id,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "ticket_id": self.ticket_id,
            "status": status,
            "error": error,
            "telegram_message_id": telegram_message_id,
            "part": self.part,
            "parts": self.parts,
        }


def nothing_ahead():
    """Match rows with no older unfinished row and no row being sent in their chat."""
    other = aliased(OutboxMessage, name="other")
    return ~exists().where(
        other.chat_id == OutboxMessage.chat_id,
        other.id != OutboxMessage.id,
        or_(
            other.status == SENDING,
            and_(other.status == QUEUED, other.id < OutboxMessage.id),
        ),
    )


def _update(*criteria):
    # Rows are changed by id, with no ORM objects to keep in step.
    return (
        update(OutboxMessage)
        .where(*criteria)
        .execution_options(synchronize_session=False)
    )


# The statements are built once: building them costs more than running them.
NEXT_DUE = (
    select(
        OutboxMessage.id,
        OutboxMessage.chat_id,
        OutboxMessage.method,
        OutboxMessage.payload,
        OutboxMessage.message_id,
        OutboxMessage.attempts,
        OutboxMessage.queued_at,
        OutboxMessage.part,
        OutboxMessage.parts,
        OutboxMessage.first_part_id,
        select(Message.ticket_id)
        .where(Message.id == OutboxMessage.message_id)
        .scalar_subquery()
        .label("ticket_id"),
        select(Customer.blocked_at)
        .where(Customer.id == OutboxMessage.chat_id)
        .scalar_subquery()
        .label("blocked_at"),
    )
    .where(OutboxMessage.status.in_(CLAIMABLE))
    .where(OutboxMessage.next_attempt_at <= bindparam("now"))
    .where(nothing_ahead())
    .order_by(OutboxMessage.id)
    .limit(1)
    # SKIP LOCKED lets several workers on PostgreSQL pass each other by.
    .with_for_update(skip_locked=True, of=OutboxMessage.__table__)
)
EARLIEST_DUE = select(func.min(OutboxMessage.next_attempt_at)).where(
    or_(
        OutboxMessage.status == SENDING,
        and_(OutboxMessage.status == QUEUED, nothing_ahead()),
    )
)
UNCHANGED = (
    OutboxMessage.id == bindparam("row_id"),
    OutboxMessage.status.in_(CLAIMABLE),
    OutboxMessage.attempts == bindparam("seen_attempts"),
)
CLAIM = _update(
    *UNCHANGED,
    OutboxMessage.next_attempt_at <= bindparam("now"),
    nothing_ahead(),
).values(
    status=SENDING,
    attempts=OutboxMessage.attempts + 1,
    next_attempt_at=bindparam("lease_end"),
)
DEFER = _update(*UNCHANGED).values(
    status=QUEUED, next_attempt_at=bindparam("not_before")
)
FAIL_UNREACHABLE = _update(*UNCHANGED).values(status=FAILED_STATUS, error=UNREACHABLE)
# Only while the claim holds: the same row, still sending, on the same attempt.
HELD = (
    OutboxMessage.id == bindparam("row_id"),
    OutboxMessage.status == SENDING,
    OutboxMessage.attempts == bindparam("claim_attempts"),
)
RELEASE = _update(*HELD).values(
    status=QUEUED,
    attempts=OutboxMessage.attempts - 1,
    next_attempt_at=bindparam("not_before"),
)
RECORD_SENT = _update(*HELD).values(
    status=SENT_STATUS,
    sent_at=bindparam("now"),
    error=None,
    telegram_message_id=bindparam("telegram_id"),
)
RETRY = _update(*HELD).values(
    status=QUEUED, next_attempt_at=bindparam("not_before"), error=bindparam("reason")
)
FAIL = _update(*HELD).values(status=FAILED_STATUS, error=bindparam("reason"))
LATER_PARTS = (
    select(OutboxMessage.id, OutboxMessage.part)
    .where(OutboxMessage.chat_id == bindparam("chat"))
    .where(OutboxMessage.first_part_id == bindparam("first"))
    .where(OutboxMessage.part > bindparam("failed_part"))
    .where(OutboxMessage.status == QUEUED)
)
FAIL_LATER_PARTS = _update(
    OutboxMessage.chat_id == bindparam("chat"),
    OutboxMessage.first_part_id == bindparam("first"),
    OutboxMessage.part > bindparam("failed_part"),
    OutboxMessage.status == QUEUED,
).values(status=FAILED_STATUS, error=bindparam("reason"))
LINK_MESSAGE = (
    update(Message)
    .where(Message.id == bindparam("linked_message"))
    .values(
        telegram_message_id=bindparam("telegram_id"),
        telegram_chat_id=func.coalesce(Message.telegram_chat_id, bindparam("chat")),
    )
    .execution_options(synchronize_session=False)
)
MARK_UNREACHABLE = (
    update(Customer)
    .where(Customer.id == bindparam("chat"))
    .where(Customer.blocked_at.is_(None))
    .values(blocked_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


def recent_sends(rate: Rate):
    """Build the query for a chat's latest sends within one window of ``rate``."""
    return (
        select(OutboxMessage.sent_at)
        .where(OutboxMessage.chat_id == bindparam("chat"))
        .where(OutboxMessage.sent_at > bindparam("since"))
        .order_by(OutboxMessage.sent_at.desc())
        .limit(rate.count)
    )


class Courier:
    """Deliver outbox rows for one app through one Bot API client."""

    def __init__(self, app, api: BotAPI, stopping: threading.Event | None = None):
        self.app = app
        self.api = api
        self.outbox = outbox_of(app)
        self.settings = self.outbox.settings
        self.stopping = stopping or threading.Event()
        self._recent_sends = {
            rate: recent_sends(rate)
            for rate in (self.settings.private_chat, self.settings.group_chat)
        }

    def deliver_one(self) -> bool:
        """Claim the next due row and make its call; return False if none was due."""
        claim = self._claim_next()
        if claim is None:
            return False

        if self._wait_for_slot(claim):
            self._send(claim)
        return True

    def seconds_until_due(self) -> float:
        """Return how long until a row may be due: its backoff, pacing or lease end."""
        earliest = db.session.scalar(EARLIEST_DUE)
        db.session.rollback()
        if earliest is None:
            return float("inf")
        return max((earliest - utcnow()).total_seconds(), 0.0)

    def _claim_next(self) -> Claim | None:
        while True:
            now = utcnow()
            row = db.session.execute(NEXT_DUE, {"now": now}).first()
            if row is None:
                db.session.rollback()
                return None

            claim = Claim(
                id=row.id,
                chat_id=row.chat_id,
                method=row.method,
                payload=row.payload,
                message_id=row.message_id,
                ticket_id=row.ticket_id,
                attempts=row.attempts + 1,
                queued_at=row.queued_at,
                part=row.part,
                parts=row.parts,
                first_part_id=row.first_part_id,
            )
            seen = {"row_id": row.id, "seen_attempts": row.attempts}
            if row.chat_id > 0 and row.blocked_at is not None:
                self._fail_unreachable(claim, seen)
                continue

            paced_until = self._paced_until(row.chat_id, now)
            if paced_until is not None:
                db.session.execute(DEFER, {**seen, "not_before": paced_until})
                db.session.commit()
                continue

            lease_end = now + self.settings.lease
            claimed = db.session.execute(
                CLAIM, {**seen, "now": now, "lease_end": lease_end}
            ).rowcount
            db.session.commit()
            if claimed:
                announce(self.app, claim.state(SENDING))
                return claim

    def _paced_until(self, chat_id: int, now: datetime) -> datetime | None:
        """Return when the chat's rate lets its next call go, or None for now."""
        rate = self.settings.chat_rate(chat_id)
        window = timedelta(seconds=rate.seconds)
        recent = db.session.scalars(
            self._recent_sends[rate], {"chat": chat_id, "since": now - window}
        ).all()
        if len(recent) < rate.count:
            return None
        return recent[-1] + window

    def _wait_for_slot(self, claim: Claim) -> bool:
        """Wait for the overall rate to allow a call; False if the row went back."""
        while True:
            verdict = self.outbox.throttle.reserve()
            if verdict.granted:
                return True

            if verdict.paused or verdict.wait > SLOT_WAIT_LIMIT:
                # A long wait could outlast the lease: give the row back.
                self._release(claim, utcnow() + timedelta(seconds=verdict.wait))
                self.stopping.wait(verdict.wait)
                return False
            if self.stopping.wait(verdict.wait):
                self._release(claim, utcnow())
                return False

    def _release(self, claim: Claim, not_before: datetime) -> None:
        db.session.execute(RELEASE, {**claim.held, "not_before": not_before})
        db.session.commit()
        announce(self.app, claim.state(QUEUED))

    def _send(self, claim: Claim) -> None:
        try:
            with uploads.opened(claim.payload) as (params, files):
                result = self.api.call(claim.method, params, files=files)
        except uploads.Missing as error:
            self._fail(claim, str(error), "file_missing")
        except TelegramError as error:
            self._record_error(claim, error)
        else:
            self._record_sent(claim, result)

    def _record_sent(self, claim: Claim, result) -> None:
        telegram_id = result.get("message_id") if isinstance(result, dict) else None
        held = db.session.execute(
            RECORD_SENT, {**claim.held, "now": utcnow(), "telegram_id": telegram_id}
        ).rowcount
        if claim.message_id is not None and claim.part == 1 and telegram_id:
            db.session.execute(
                LINK_MESSAGE,
                {
                    "linked_message": claim.message_id,
                    "telegram_id": telegram_id,
                    "chat": claim.chat_id,
                },
            )
        db.session.commit()
        SENT.inc()

        if not held:
            logger.warning(
                "outbox %s: sent to chat %s after its lease ended; another worker"
                " may have sent it as well",
                claim.id,
                claim.chat_id,
            )
            return
        logger.info(
            "outbox %s sent %s to chat %s as message %s",
            claim.id,
            claim.method,
            claim.chat_id,
            telegram_id,
        )
        announce(self.app, claim.state(SENT_STATUS, telegram_message_id=telegram_id))

    def _record_error(self, claim: Claim, error: TelegramError) -> None:
        reason = error_reason(error)
        ERRORS.labels(reason).inc()
        now = utcnow()

        if reason == "rate_limited":
            retry_after = float(error.retry_after or 1)
            self._retry_at(claim, error, now + timedelta(seconds=retry_after))
            everyone = self.outbox.throttle.rate_limited(claim.chat_id, retry_after)
            logger.warning(
                "outbox %s: Telegram rate-limits %s for %ss",
                claim.id,
                "the whole bot" if everyone else f"chat {claim.chat_id}",
                retry_after,
            )
            return

        deadline = claim.queued_at + self.settings.retry_deadline
        if error.retryable and now < deadline:
            backoff = self._backoff(claim.attempts)
            self._retry_at(claim, error, now + timedelta(seconds=backoff))
            logger.warning(
                "outbox %s to chat %s: %s; trying again in %.1fs",
                claim.id,
                claim.chat_id,
                error.reason,
                backoff,
            )
            return

        if reason == "blocked" and claim.chat_id > 0:
            marked = db.session.execute(
                MARK_UNREACHABLE, {"chat": claim.chat_id, "now": now}
            ).rowcount
            if marked:
                logger.info("customer %s can no longer be reached", claim.chat_id)
        self._fail(claim, error.reason, "deadline" if error.retryable else reason)

    def _backoff(self, attempts: int) -> float:
        # Exponential, and spread out so that chats do not retry in lockstep.
        ceiling = min(2 ** (attempts - 1), self.settings.backoff_max)
        return ceiling * random.uniform(0.5, 1.0)

    def _retry_at(self, claim: Claim, error: TelegramError, when: datetime) -> None:
        db.session.execute(
            RETRY, {**claim.held, "not_before": when, "reason": error.reason}
        )
        db.session.commit()
        announce(self.app, claim.state(QUEUED, error=error.reason))

    def _fail(self, claim: Claim, error: str, reason: str) -> None:
        held = db.session.execute(FAIL, {**claim.held, "reason": error}).rowcount
        later_parts = self._fail_later_parts(claim, error) if held else []
        db.session.commit()
        if not held:
            return

        FAILED.labels(reason).inc()
        logger.warning(
            "outbox %s to chat %s failed: %s", claim.id, claim.chat_id, error
        )
        announce(self.app, claim.state(FAILED_STATUS, error=error))
        for state in later_parts:
            FAILED.labels("earlier_part_failed").inc()
            announce(self.app, state)

    def _fail_unreachable(self, claim: Claim, seen: dict) -> None:
        failed = db.session.execute(FAIL_UNREACHABLE, seen).rowcount
        db.session.commit()
        if failed:
            FAILED.labels("unreachable").inc()
            logger.info(
                "outbox %s to chat %s not sent: the customer has blocked the bot",
                claim.id,
                claim.chat_id,
            )
            announce(self.app, claim.state(FAILED_STATUS, error=UNREACHABLE))

    def _fail_later_parts(self, claim: Claim, error: str) -> list[dict]:
        """Fail the parts after a failed one: a message with a gap helps nobody."""
        if claim.part >= claim.parts:
            return []

        reason = f"not sent: part {claim.part} of {claim.parts} failed: {error}"
        which = {
            "chat": claim.chat_id,
            "first": claim.first_part_id or claim.id,
            "failed_part": claim.part,
        }
        later = db.session.execute(LATER_PARTS, which).all()
        db.session.execute(FAIL_LATER_PARTS, {**which, "reason": reason})
        return [
            {
                **claim.state(FAILED_STATUS, error=reason),
                "id": row.id,
                "part": row.part,
            }
            for row in later
        ]


def error_reason(error: TelegramError) -> str:
    """Name the kind of a failed call, for metrics and for deciding what next."""
    if isinstance(error, TelegramNetworkError):
        return "network"
    if not isinstance(error, TelegramAPIError):
        return "other"
    if error.error_code == 429:
        return "rate_limited"
    if error.error_code >= 500:
        return "server_error"
    if error.error_code == 403:
        return "blocked"
    return "bad_request"


def deliver_due(api: BotAPI, limit: int = 100) -> int:
    """Send rows that are due now, in order per chat and within the rates; count them.

    Rows held back by a chat's rate, a retry's backoff or a 429 stay queued for
    a later call. Waits for the overall rate happen here, in the caller's thread.
    """
    courier = Courier(current_app._get_current_object(), api)
    delivered = 0
    while delivered < limit and courier.deliver_one():
        delivered += 1
    return delivered
