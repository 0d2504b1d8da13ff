"""Socket.IO's Redis queue, with a way to publish several events in one round trip.

Every process publishes the events it emits to a Redis channel that every
process listens to, and each passes them to its own connections. A commit
often announces several events at once (a customer message is news to the
queue, to the ticket's viewers and to the customer's Mini App); inside
:meth:`RedisQueue.together` they are held and then sent to Redis together.
"""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import socketio

logger = logging.getLogger(__name__)


class RedisQueue(socketio.RedisManager):
    """The Redis client manager, able to hold events and send them at once."""

    def __init__(self, url: str, channel: str):
        super().__init__(url, channel=channel)
        self._held = threading.local()

    @contextmanager
    def together(self) -> Iterator[None]:
        """Hold what this thread publishes until the block ends, then send it all.

        The events go in the order they were emitted. Inside another such
        block, the outer one sends them.
        """
        if getattr(self._held, "messages", None) is not None:
            yield
            return

        self._held.messages = []
        try:
            yield
        finally:
            messages, self._held.messages = self._held.messages, None
            if messages:
                self._publish_together(messages)

    def _publish(self, data):
        held = getattr(self._held, "messages", None)
        if held is None:
            return super()._publish(data)
        held.append(data)
        return None

    def _publish_together(self, messages: list) -> None:
        encoded = [self.json.dumps(data) for data in messages]
        # A connection lost since the last publish is opened again once.
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                pipeline = self.redis.pipeline(transaction=False)
                for message in encoded:
                    pipeline.publish(self.channel, message)
                pipeline.execute()
                return
            except redis.RedisError as error:
                self.connected = False
                if attempt == 2:
                    # What they announce is stored; consoles see it on reload.
                    logger.error(
                        "%s live events not published to Redis: %s",
                        len(messages),
                        error,
                    )
