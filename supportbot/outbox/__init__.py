"""Outgoing Bot API calls, queued in the database and sent in order per chat.

Whatever makes the bot speak writes an outbox row in its own transaction, so a
message is never lost between the database and Telegram. Workers claim the
oldest row of each chat, keep to Telegram's rates, make the call and record the
outcome; listeners follow each row's state through :data:`delivery_changed`.
"""

import redis
from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session

from .delivery import deliver_due
from .queue import (
    DeliveryProblems,
    after_commit,
    after_rollback,
    enqueue,
    failed_and_stuck,
    note_changes,
    resend,
)
from .settings import Settings
from .signals import delivery_changed
from .state import STATE, Outbox, outbox_of
from .throttle import LocalThrottle, RedisThrottle
from .wakeup import Doorbell
from .worker import Worker

__all__ = [
    "DeliveryProblems",
    "Worker",
    "deliver_due",
    "delivery_changed",
    "enqueue",
    "failed_and_stuck",
    "init_app",
    "outbox_of",
    "resend",
]


# Seconds a call to Redis may take.
REDIS_TIMEOUT = 3.0


def init_app(app: Flask) -> None:
    """Set up the app's outbox, and a delivery thread when the configuration asks."""
    from .cli import cli

    app.cli.add_command(cli)
    app.extensions[STATE] = _outbox_for(app)
    if not event.contains(Session, "after_commit", after_commit):
        event.listen(Session, "after_flush", note_changes)
        event.listen(Session, "after_commit", after_commit)
        event.listen(Session, "after_rollback", after_rollback)

    api = app.extensions["supportbot.telegram"]
    if api is None or app.config["OUTBOX_WORKER"] != "thread":
        return

    worker = Worker(app, api)
    app.extensions["supportbot.outbox"] = worker
    # Started by the first request the app serves, which also sends rows left
    # from an earlier run; never at import, nor by CLI commands.
    app.before_request(worker.start)


def _outbox_for(app: Flask) -> Outbox:
    settings = Settings.from_config(app.config)
    postgres = app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    redis_url = app.config["REDIS_URL"]
    if not redis_url:
        return Outbox(settings, LocalThrottle(settings.overall), Doorbell(), postgres)

    # A Redis that stops answering fails a call in seconds, and senders carry
    # on without it, rather than hanging.
    client = redis.Redis.from_url(
        redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    # Telegram's limits are per bot, so every process of one bot shares them.
    prefix = f"supportbot:outbox:{_bot_id(app.config['TELEGRAM_BOT_TOKEN'])}"
    return Outbox(
        settings,
        RedisThrottle(settings.overall, client, prefix),
        Doorbell(),
        postgres,
        redis=client,
        redis_channel=f"{prefix}:wake",
    )


def _bot_id(token: str) -> str:
    # The part before the colon is the bot's public id, not its secret.
    bot_id = token.partition(":")[0]
    return bot_id if bot_id.isdigit() else "bot"
