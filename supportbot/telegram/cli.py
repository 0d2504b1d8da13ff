"""``flask bot``: connect the app to Telegram, by webhook or by long polling."""

import logging
import signal
import time

import click
from flask import current_app, url_for
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from ..errors import NotFound
from ..extensions import db
from ..models import TelegramUpdate
from ..outbox import Worker
from . import inbox
from .api import BotAPI, TelegramError
from .conversation import mini_app_menu_button
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
    """Fetch one batch of updates, store and handle them, and return the next offset."""
    updates = api.call(
        "getUpdates",
        {"offset": offset, "timeout": timeout, "allowed_updates": ALLOWED_UPDATES},
        timeout=timeout + 10,
    )
    for update in updates:
        while not _store_one(update):
            time.sleep(5)
        offset = update["update_id"] + 1
    if updates:
        try:
            inbox.handle_waiting()
        finally:
            db.session.remove()
    return offset


def _store_one(update: dict) -> bool:
    # The webhook's path. A broken update is skipped; while the database is
    # down the update is kept and tried again, as Telegram would redeliver it.
    try:
        inbox.store(update)
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


@bot.command("handle")
def handle() -> None:
    """Handle stored updates until stopped, beside or instead of the web's handlers."""
    state = inbox.inbox_of(current_app)
    if not state.handlers:
        raise click.ClickException("TELEGRAM_HANDLERS is 0: no handler would run.")

    # Platforms stop processes with SIGTERM: finish the updates in hand first.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    click.echo(f"Handling updates with {state.handlers} threads; Ctrl+C stops.")
    try:
        state.run()
    except KeyboardInterrupt:
        click.echo("Stopped.")


@bot.command("failed")
def failed() -> None:
    """List the updates whose handling failed, newest first."""
    updates = inbox.failed_updates()
    if not updates:
        click.echo("No update failed.")
        return

    for stored in updates:
        moment = f"{stored.handled_at:%Y-%m-%d %H:%M:%S}"
        click.echo(f"{stored.update_id}  {moment}  {stored.kind}  {stored.error}")


@bot.command("handle-again")
@click.argument("update_ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every failed update.")
def handle_again(update_ids: tuple[int, ...], every: bool) -> None:
    """Handle failed updates again, once what made them fail is fixed."""
    if bool(update_ids) == every:
        raise click.UsageError("Name the update ids, or give --all.")

    try:
        again = inbox.handle_again(None if every else list(update_ids))
    except NotFound as error:
        raise click.ClickException(error.message) from None
    db.session.commit()

    inbox.handle_waiting()
    still = sorted(
        db.session.scalars(
            select(TelegramUpdate.update_id)
            .where(TelegramUpdate.update_id.in_(again))
            .where(TelegramUpdate.error.is_not(None))
        )
    )
    click.echo(f"Handled {len(again) - len(still)} of {len(again)} updates again.")
    if still:
        raise click.ClickException(
            "Failed again: "
            + ", ".join(str(update_id) for update_id in still)
            + ". 'flask bot failed' shows why."
        )


def _set_commands() -> None:
    commands = [
        {"command": name, "description": text(f"command_{name}")} for name in COMMANDS
    ]
    _call("setMyCommands", {"commands": commands})

    # Without a chat_id this is every private chat's default menu button.
    button = mini_app_menu_button()
    if button is not None:
        _call("setChatMenuButton", {"menu_button": button})
