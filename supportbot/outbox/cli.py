"""``flask outbox``: the worker process that delivers the outbox."""

import signal

import click
from flask import current_app
from flask.cli import AppGroup
from prometheus_client import start_http_server

from .worker import Worker

cli = AppGroup("outbox", help="Deliver the bot's queued messages.")


@cli.command("work")
@click.option(
    "--poll-interval",
    default=5.0,
    show_default=True,
    help="Most seconds between looks for due rows when no wake-up comes.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve this worker's Prometheus metrics on this port.",
)
def work(poll_interval: float, metrics_port: int | None) -> None:
    """Deliver queued messages until stopped: the production worker process."""
    api = current_app.extensions["supportbot.telegram"]
    if api is None:
        raise click.ClickException("TELEGRAM_BOT_TOKEN is not set.")

    if metrics_port is not None:
        # Its sends and failures are counted here, not in the web processes.
        start_http_server(metrics_port)
        click.echo(f"Metrics on http://0.0.0.0:{metrics_port}/metrics")

    worker = Worker(current_app._get_current_object(), api, poll_interval)
    # Platforms stop processes with SIGTERM: finish the calls in flight first.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    click.echo("Delivering the outbox; press Ctrl+C to stop.")
    try:
        worker.run()
    except KeyboardInterrupt:
        click.echo("Stopped.")
