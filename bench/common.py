"""What the benchmark scripts share: the app on a chosen database, emptied, and
the updates they post."""

import json
import time
from collections.abc import Iterable

import psutil
from flask import Flask
from sqlalchemy import Engine, text

from supportbot import create_app
from supportbot.config import engine_options
from supportbot.extensions import db


def bench_app(uri: str, **config) -> Flask:
    """Create the app on ``uri`` with no outbox thread and no database logging."""
    return create_app(
        {
            "SECRET_KEY": "bench",
            "SQLALCHEMY_DATABASE_URI": uri,
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options(uri),
            "OUTBOX_WORKER": "off",
            "LOG_TO_DATABASE": False,
            **config,
        }
    )


def empty_database() -> None:
    """Drop every table of the app's database, migrations' record included."""
    db.drop_all()
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


def text_update(update_id: int, user_id: int, message_id: int, text: str) -> bytes:
    """Encode an update carrying a private-chat text message from ``user_id``."""
    name = f"Customer{user_id % 1_000_000}"
    message = {
        "message_id": message_id,
        "from": {
            "id": user_id,
            "is_bot": False,
            "first_name": name,
            "language_code": "en",
        },
        "chat": {"id": user_id, "first_name": name, "type": "private"},
        "date": int(time.time()),
        "text": text,
    }
    return json.dumps({"update_id": update_id, "message": message}).encode()


def wait_until_handled(engine: Engine, timeout: float = 600) -> float:
    """Wait until no stored update waits to be handled; return the seconds it took."""
    started = time.monotonic()
    query = text("SELECT count(*) FROM telegram_update WHERE handled_at IS NULL")
    while True:
        with engine.connect() as connection:
            if connection.scalar(query) == 0:
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise SystemExit(f"stored updates still waiting after {timeout:g} s")
        time.sleep(0.05)


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    """Add up the CPU time ``processes`` have used, leaving out any that ended."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total
