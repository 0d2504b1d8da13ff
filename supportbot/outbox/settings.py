"""The outbox's settings, read once from the app's configuration."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from ..config import ConfigError

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Rate:
    """At most ``count`` calls in any window of ``seconds``."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, name: str, value) -> "Rate":
        """Read a rate written as "messages/seconds", such as "25/1"."""
        if isinstance(value, Rate):
            return value

        match = _RATE.match(str(value))
        if match is None or int(match[1]) < 1 or float(match[2]) <= 0:
            raise ConfigError(
                f"{name} must be messages/seconds, such as 25/1 or 20/60,"
                f" not {value!r}."
            )
        return cls(int(match[1]), float(match[2]))

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"


@dataclass(frozen=True)
class Settings:
    """How fast, how often and how long the outbox tries to deliver."""

    overall: Rate
    private_chat: Rate
    group_chat: Rate
    lease: timedelta
    retry_deadline: timedelta
    backoff_max: float
    senders: int

    @classmethod
    def from_config(cls, config: Mapping) -> "Settings":
        """Check and gather the ``OUTBOX_*`` settings; raise ConfigError if wrong."""
        lease = float(config["OUTBOX_LEASE"])
        timeout = float(config["TELEGRAM_TIMEOUT"])
        # A lease that ends while its worker still waits for Telegram would let
        # a second worker send the same message.
        if lease <= timeout:
            raise ConfigError(
                f"OUTBOX_LEASE ({lease:g}s) must be longer than TELEGRAM_TIMEOUT"
                f" ({timeout:g}s)."
            )
        senders = int(config["OUTBOX_SENDERS"])
        if senders < 1:
            raise ConfigError("OUTBOX_SENDERS must be at least 1.")

        def rate(name: str) -> Rate:
            return Rate.parse(name, config[name])

        return cls(
            overall=rate("OUTBOX_RATE"),
            private_chat=rate("OUTBOX_RATE_PRIVATE"),
            group_chat=rate("OUTBOX_RATE_GROUP"),
            lease=timedelta(seconds=lease),
            retry_deadline=timedelta(seconds=float(config["OUTBOX_RETRY_DEADLINE"])),
            backoff_max=float(config["OUTBOX_BACKOFF_MAX"]),
            senders=senders,
        )

    def chat_rate(self, chat_id: int) -> Rate:
        """Return the rate for one chat: private chats have positive ids."""
        return self.private_chat if chat_id > 0 else self.group_chat
