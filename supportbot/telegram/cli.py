"""``flask bot``: connect the app to Telegram, by webhook or by long polling."""

import logging
import time

import click
from flask import current_app, url_for
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError

from ..extensions import db
from ..outbox import Worker
from .api import BotAPI, TelegramError
from .conversation import mini_app_menu_button, process_update
from .strings import text
from .updates import ALLOWED_UPDATES, MalformedUpdate

logger = logging.getLogger(__name__)

bot = AppGroup("bot", help="Connect the bot to Telegram.")

COMMANDS = ("new", "status", "close", "help")
POLL_TIMEOUT = 30


def _api() -> BotAPI:
    api = current_app.extensions["supportbot.telegram"]
    if api is None:
        raise click.ClickException("TELEGRAM_BOT_TOKEN is not set.")
    return api


def _call(method: str, params: dict | None = None, **kwargs):
    try:
        return _api().call(method, params, **kwargs)
    except TelegramError as error:
        raise click.ClickException(f"Telegram refused: {error}") from None


@bot.command("set-webhook")
@click.option("--drop-pending", is_flag=True, help="Discard updates not yet delivered.")
def set_webhook(drop_pending: bool) -> None:
    """Point Telegram at this app's webhook under PUBLIC_URL."""
    public_url = current_app.config["PUBLIC_URL"]
    secret = current_app.config["TELEGRAM_WEBHOOK_SECRET"]
    if not public_url.startswith("https://"):
        raise click.ClickException("PUBLIC_URL must be set to an https:// address.")
    if not secret:
        raise click.ClickException("TELEGRAM_WEBHOOK_SECRET is not set.")

    with current_app.test_request_context(base_url=public_url):
        url = url_for("telegram.webhook", _external=True)
    _call(
        "setWebhook",
        {
            "url": url,
            "secret_token": secret,
            "allowed_updates": ALLOWED_UPDATES,
            "drop_pending_updates": drop_pending,
        },
    )
    _set_commands()
    click.echo(f"Webhook set to {url}")


@bot.command("delete-webhook")
@click.option("--drop-pending", is_flag=True, help="Discard updates not yet delivered.")
def delete_webhook(drop_pending: bool) -> None:
    """Stop Telegram posting to the webhook, as polling requires."""
    _call("deleteWebhook", {"drop_pending_updates": drop_pending})
    click.echo("Webhook deleted.")


@bot.command("info")
def info() -> None:
    """Show the bot's name and the state of its webhook."""
    me = _call("getMe")
    hook = _call("getWebhookInfo")

    click.echo(f"Bot: @{me.get('username')} (id {me.get('id')})")
    click.echo(f"Webhook: {hook.get('url') or 'not set (polling)'}")
    click.echo(f"Pending updates: {hook.get('pending_update_count', 0)}")
    if hook.get("last_error_message"):
        click.echo(f"Last error: {hook['last_error_message']}")


@bot.command("poll")
def poll() -> None:
    """Fetch updates by long polling, for development without a public address."""
    api = _api()
    hook = _call("getWebhookInfo")
    if hook.get("url"):
        raise click.ClickException(
            "A webhook is set, and Telegram allows no polling then:"
            " run 'flask bot delete-webhook' first."
        )
    _set_commands()

    worker = Worker(current_app._get_current_object(), api)
    worker.start()
    click.echo("Polling for updates; press Ctrl+C to stop.")
    try:
        _poll_forever(api)
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        worker.stop()


def _poll_forever(api: BotAPI) -> None:
    offset = None
    while True:
        try:
            offset = poll_round(api, offset)
        except TelegramError as error:
            logger.warning("getUpdates failed: %s; retrying in 5s", error)
            time.sleep(5)


def poll_round(api: BotAPI, offset: int | None, timeout: int = POLL_TIMEOUT):
    """Fetch one batch of updates, handle each, and return the next offset."""
    updates = api.call(
        "getUpdates",
        {"offset": offset, "timeout": timeout, "allowed_updates": ALLOWED_UPDATES},
        timeout=timeout + 10,
    )
    for update in updates:
        while not _process_one(update):
            time.sleep(5)
        offset = update["update_id"] + 1
    return offset


def _process_one(update: dict) -> bool:
    # The webhook's path. A broken update is skipped; while the database is
    # down the update is kept and tried again, as Telegram would redeliver it.
    try:
        process_update(update)
    except MalformedUpdate as error:
        db.session.rollback()
        logger.warning("update %s skipped: %s", update.get("update_id"), error)
    except OperationalError as error:
        db.session.rollback()
        logger.warning(
            "update %s not stored, database unavailable: %s",
            update.get("update_id"),
            error.orig,
        )
        return False
    finally:
        db.session.remove()
    return True


def _set_commands() -> None:
    commands = [
        {"command": name, "description": text(f"command_{name}")} for name in COMMANDS
    ]
    _call("setMyCommands", {"commands": commands})

    # Without a chat_id this is every private chat's default menu button.
    button = mini_app_menu_button()
    if button is not None:
        _call("setChatMenuButton", {"menu_button": button})
