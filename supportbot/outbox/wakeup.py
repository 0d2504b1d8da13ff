"""Waking idle senders as soon as a row is committed, in any process.

Inside one process a commit rings the app's :class:`Doorbell`. Between processes
the news travels by PostgreSQL's NOTIFY, sent in the committing transaction so
that it arrives only if the rows do, or, on other databases, by a Redis
message published after the commit. Senders also look on their own every poll
interval, so a lost notice delays delivery but loses nothing. Senders, and the
update handlers that wait on a doorbell of their own, loop in
:func:`work_until_stopped`.
"""

import logging
import select
import threading

import redis

from ..extensions import db

logger = logging.getLogger(__name__)

POSTGRES_CHANNEL = "supportbot_outbox"
# How long a listener waits before connecting again after losing its connection.
RECONNECT_PAUSE = 2.0
# The longest pause after an unexpected error, such as the database being down.
MAX_ERROR_PAUSE = 30.0


class Doorbell:
    """Wake one idle sender per ring, or every sender at once."""

    def __init__(self):
        self._condition = threading.Condition()
        self._rung = False

    def ring(self) -> None:
        """Tell one idle sender that rows may be due."""
        with self._condition:
            self._rung = True
            self._condition.notify()

    def ring_everyone(self) -> None:
        """Wake every waiting sender, so that they see they are being stopped."""
        with self._condition:
            self._condition.notify_all()

    def wait(self, timeout: float, stopping: threading.Event) -> None:
        """Wait for a ring or for ``stopping``, at most ``timeout`` seconds."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._rung or stopping.is_set(), max(timeout, 0.0)
            )
            self._rung = False


def work_until_stopped(
    app,
    doorbell: Doorbell,
    stopping: threading.Event,
    step,
    poll_interval: float,
    failure: str,
) -> None:
    """Call ``step`` in an app context, again and again, until ``stopping`` is set.

    ``step`` returns None when it did something: another idle thread is then
    woken for what may be left, and ``step`` runs again at once. Otherwise it
    returns the seconds until it may find work, and the thread waits that long
    for a ring, ``poll_interval`` at most. After an error the pause doubles
    each time, up to ``MAX_ERROR_PAUSE``, and ``failure`` is logged.
    """
    errors = 0
    while not stopping.is_set():
        try:
            with app.app_context():
                try:
                    idle = step()
                finally:
                    db.session.remove()
        except Exception:
            errors += 1
            pause = min(2.0**errors, MAX_ERROR_PAUSE)
            logger.exception("%s; trying again in %ss", failure, pause)
            stopping.wait(pause)
            continue

        errors = 0
        if idle is None:
            doorbell.ring()
        else:
            doorbell.wait(min(idle, poll_interval), stopping)


class Listener:
    """Ring the doorbell whenever another process says rows were committed."""

    def __init__(self, doorbell: Doorbell, stopping: threading.Event):
        self.doorbell = doorbell
        self.stopping = stopping

    def run(self) -> None:
        """Listen until stopped, connecting again whenever the connection breaks."""
        while not self.stopping.is_set():
            try:
                self.listen()
            except Exception:
                # Senders still poll meanwhile; the listener only makes them quick.
                logger.exception(
                    "outbox listener lost its connection; listening again in %ss",
                    RECONNECT_PAUSE,
                )
                self.stopping.wait(RECONNECT_PAUSE)

    def listen(self) -> None:
        """Ring on each notice until stopped or disconnected."""
        raise NotImplementedError


class PostgresListener(Listener):
    """Ring the doorbell on each NOTIFY of the outbox channel."""

    def __init__(self, app, doorbell: Doorbell, stopping: threading.Event):
        super().__init__(doorbell, stopping)
        self.app = app

    def listen(self) -> None:
        """LISTEN on a connection of its own and ring on each notification."""
        with self.app.app_context():
            pooled = db.engine.raw_connection()
        connection = pooled.driver_connection
        # The connection stays with the listener for good, out of the pool.
        pooled.detach()
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {POSTGRES_CHANNEL}")
            # Rows committed while nobody listened are due too.
            self.doorbell.ring()
            while not self.stopping.is_set():
                readable, _, _ = select.select([connection], [], [], 1.0)
                if not readable:
                    continue
                connection.poll()
                if connection.notifies:
                    connection.notifies.clear()
                    self.doorbell.ring()
        finally:
            connection.close()


class RedisListener(Listener):
    """Ring the doorbell on each message of the outbox's Redis channel."""

    def __init__(self, client, channel, doorbell: Doorbell, stopping):
        super().__init__(doorbell, stopping)
        self.client = client
        self.channel = channel

    def listen(self) -> None:
        """Subscribe to the channel and ring on each message."""
        subscription = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            subscription.subscribe(self.channel)
            self.doorbell.ring()
            while not self.stopping.is_set():
                if subscription.get_message(timeout=1.0) is not None:
                    self.doorbell.ring()
        finally:
            subscription.close()


def publish(client, channel: str) -> None:
    """Tell workers in other processes to look for rows; a failure only delays them."""
    try:
        client.publish(channel, "")
    except redis.RedisError as error:
        logger.warning("outbox wake-up not published to Redis: %s", error)
