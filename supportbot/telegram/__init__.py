"""The Telegram side: the webhook, the conversation and the bot's commands."""

import logging

from flask import Flask, current_app

from ..extensions import csrf
from .api import BotAPI

logger = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the webhook and the ``flask bot`` commands, and make the API client."""
    from . import cli, inbox, views

    token = app.config["TELEGRAM_BOT_TOKEN"]
    if token:
        app.extensions["supportbot.telegram"] = BotAPI(
            token, app.config["TELEGRAM_API_URL"], app.config["TELEGRAM_TIMEOUT"]
        )
    else:
        app.extensions["supportbot.telegram"] = None
        logger.warning(
            "TELEGRAM_BOT_TOKEN is not set: the bot is off. Updates are still"
            " stored, and replies wait in the outbox until a token is set."
        )

    # Telegram authenticates with its secret header, not a session.
    csrf.exempt(views.bp)
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.bot)
    inbox.init_app(app)


def bot_api() -> BotAPI | None:
    """Return the current app's Bot API client, or None when the bot is off."""
    return current_app.extensions["supportbot.telegram"]
