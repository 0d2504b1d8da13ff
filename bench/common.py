"""What the benchmark scripts share: the app on a chosen database, emptied."""

from flask import Flask
from sqlalchemy import text

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
