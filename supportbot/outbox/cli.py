"""``flask outbox``: the worker process that delivers the outbox."""

import signal

import click
from flask import current_app
from flask.cli import AppGroup

from .worker import Worker

cli = AppGroup("outbox", help="Deliver the bot's queued messages.")


@cli.command("work")
@click.option(
    "--poll-interval",
    default=5.0,
    show_default=True,
    help="Most seconds between looks for due rows when no wake-up comes.",
)
def work(poll_interval: float) -> None:
    """Deliver queued messages until stopped: the production worker process."""
    api = current_app.extensions["supportbot.telegram"]
    if api is None:
        raise click.ClickException("TELEGRAM_BOT_TOKEN is not set.")

    worker = Worker(current_app._get_current_object(), api, poll_interval)
    # Platforms stop processes with SIGTERM: finish the calls in flight first.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    click.echo("Delivering the outbox; press Ctrl+C to stop.")
    try:
        worker.run()
    except KeyboardInterrupt:
        click.echo("Stopped.")
