"""What one app's outbox shares between its senders and its callers."""

from dataclasses import dataclass

from flask import Flask

from .settings import Settings
from .throttle import LocalThrottle, RedisThrottle
from .wakeup import Doorbell, publish

STATE = "supportbot.outbox.state"


@dataclass
class Outbox:
    """The app's outbox settings, overall throttle and ways to wake its senders."""

    settings: Settings
    throttle: LocalThrottle | RedisThrottle
    doorbell: Doorbell
    # Set when rows are announced by PostgreSQL's NOTIFY.
    postgres: bool
    # Set when rows are announced through Redis instead.
    redis: object | None = None
    redis_channel: str = ""

    def wake(self) -> None:
        """Tell senders here, and through Redis elsewhere, that rows were committed."""
        self.doorbell.ring()
        if self.redis is not None and not self.postgres:
            publish(self.redis, self.redis_channel)


def outbox_of(app: Flask) -> Outbox:
    """Return the app's outbox state."""
    return app.extensions[STATE]
