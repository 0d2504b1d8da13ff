"""The worker: sender threads that deliver the outbox, a listener to wake them,
and the daily deletion of old log records and handled updates."""

import logging
import threading

from flask import Flask

from .. import logs
from ..extensions import db
from ..telegram import inbox
from ..telegram.api import BotAPI
from .delivery import Courier
from .state import outbox_of
from .wakeup import PostgresListener, RedisListener, work_until_stopped

logger = logging.getLogger(__name__)

# How often log records and updates past LOG_RETENTION_DAYS are deleted.
PRUNE_INTERVAL = 24 * 60 * 60.0
# How soon to try again when deleting them failed.
PRUNE_RETRY = 10 * 60.0


class Worker:
    """Deliver the outbox from background threads of this process.

    Each of ``OUTBOX_SENDERS`` threads claims one row at a time, so that a slow
    chat never holds up the others. Idle senders sleep until woken by a commit,
    until a row is due, or for ``poll_interval`` at most.
    """

    def __init__(self, app: Flask, api: BotAPI, poll_interval: float = 5.0):
        self.app = app
        self.api = api
        self.poll_interval = poll_interval
        self.outbox = outbox_of(app)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the threads unless they are running."""
        with self._lock:
            if self._threads:
                return
            self._stopping.clear()
            listener = self._listener()
            if listener is not None:
                self._threads.append(
                    threading.Thread(
                        target=listener.run, name="outbox-listener", daemon=True
                    )
                )
            self._threads.append(
                threading.Thread(target=self._prune_daily, name="pruner", daemon=True)
            )
            for number in range(1, self.outbox.settings.senders + 1):
                self._threads.append(
                    threading.Thread(
                        target=self._send_until_stopped,
                        name=f"outbox-sender-{number}",
                        daemon=True,
                    )
                )
            for thread in self._threads:
                thread.start()
        logger.info(
            "outbox worker started: %s senders, overall rate %s",
            self.outbox.settings.senders,
            self.outbox.settings.overall,
        )

    def wake(self) -> None:
        """Look for new rows now rather than at the next poll."""
        self.outbox.doorbell.ring()

    def stop(self, timeout: float = 15.0) -> None:
        """Let calls in flight finish, then end the threads."""
        with self._lock:
            threads, self._threads = self._threads, []
        self._stopping.set()
        self.outbox.doorbell.ring_everyone()
        for thread in threads:
            thread.join(timeout)
        if threads:
            logger.info("outbox worker stopped")

    def run(self) -> None:
        """Deliver until interrupted, as the worker process does."""
        self.start()
        try:
            while not self._stopping.wait(1.0):
                pass
        finally:
            self.stop()

    def _listener(self):
        if self.outbox.postgres:
            return PostgresListener(self.app, self.outbox.doorbell, self._stopping)
        if self.outbox.redis is not None:
            return RedisListener(
                self.outbox.redis,
                self.outbox.redis_channel,
                self.outbox.doorbell,
                self._stopping,
            )
        return None

    def _prune_daily(self) -> None:
        days = self.app.config["LOG_RETENTION_DAYS"]
        while True:
            try:
                with self.app.app_context():
                    try:
                        records = logs.prune(days)
                        updates = inbox.prune(days)
                    finally:
                        db.session.remove()
            except Exception:
                logger.exception("old records not deleted; trying again later")
                pause = PRUNE_RETRY
            else:
                logger.info(
                    "deleted %s log records and %s handled updates older than %s days",
                    records,
                    updates,
                    days,
                )
                pause = PRUNE_INTERVAL
            if self._stopping.wait(pause):
                return

    def _send_until_stopped(self) -> None:
        courier = Courier(self.app, self.api, self._stopping)

        def send_one():
            if courier.deliver_one():
                return None
            return courier.seconds_until_due()

        work_until_stopped(
            self.app,
            self.outbox.doorbell,
            self._stopping,
            send_one,
            self.poll_interval,
            "outbox delivery failed",
        )
