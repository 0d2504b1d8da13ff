"""Logging set-up: one line a record on standard output."""

import logging
import sys

from flask import Flask

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def init_app(app: Flask) -> None:
    """Send the app's records to stdout once per process, at the configured level."""
    root = logging.getLogger()
    if not any(getattr(h, "supportbot", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.supportbot = True
        root.addHandler(handler)

    logging.getLogger("supportbot").setLevel(app.config["LOG_LEVEL"])
    # Migrations say which revisions they apply.
    logging.getLogger("alembic").setLevel(logging.INFO)
    # The HTTP client logs full URLs, and Bot API URLs carry the bot token.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
