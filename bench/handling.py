"""Measure what handling a stored update costs: the app's CPU and the database's.

Messages from many customers are stored as the webhook stores them (the first
of each customer opens a ticket, the rest follow it up), then this process
handles them in the handlers' batches until none waits. The script prints the
time, its own CPU and the CPU of the local PostgreSQL server's processes per
update. Nothing else should run on the machine meanwhile.

    .venv/bin/python bench/handling.py \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_live

To compare two versions of the code, run it in turns from two worktrees with
``PYTHONPATH`` naming each one's folder; runs of one version differ by about
a tenth, so compare the medians of several.

The PostgreSQL database must exist and may be empty; its tables are replaced.
"""

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import psutil
from flask_migrate import upgrade

from supportbot.config import database_url
from supportbot.extensions import db
from supportbot.telegram import inbox

from common import bench_app, cpu_seconds, empty_database, text_update

FIRST_USER_ID = 10_000


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", help="an empty database; a temporary SQLite file if unset"
    )
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--messages", type=int, default=10, help="per customer")
    return parser.parse_args()


def database_cpu() -> float:
    """Return the CPU seconds the local PostgreSQL server's processes have used."""
    processes = psutil.process_iter(["username"])
    return cpu_seconds(p for p in processes if p.info["username"] == "postgres")


def own_cpu() -> float:
    """Return the CPU seconds this process has used."""
    return cpu_seconds([psutil.Process()])


def store_updates(customers: int, messages: int) -> int:
    """Store the messages as the webhook would; return how many."""
    update_id = 0
    for turn in range(messages):
        for customer in range(customers):
            update_id += 1
            text = f"About order {update_id}: the refund has not arrived, turn {turn}"
            update = text_update(update_id, FIRST_USER_ID + customer, turn + 1, text)
            inbox.store(json.loads(update))
    return update_id


def main() -> None:
    """Store the updates, handle them all, and print the cost of each."""
    arguments = parse_arguments()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        uri = database_url(
            arguments.database_url or f"sqlite:///{Path(scratch, 'bench.sqlite')}",
            scratch,
        )
        app = bench_app(uri, TELEGRAM_HANDLERS=0, ATTACHMENT_CACHE=scratch)
        with app.app_context():
            empty_database()
            upgrade()
            count = store_updates(arguments.customers, arguments.messages)
            db.session.remove()

            started, cpu, server = time.monotonic(), own_cpu(), database_cpu()
            while inbox.handle_next():
                pass
            took = time.monotonic() - started
            cpu, server = own_cpu() - cpu, database_cpu() - server
            db.engine.dispose()

    per_update = 1000 / count
    print(
        f"{count} updates from {arguments.customers} customers,"
        f" handled in batches of up to {inbox.BATCH}"
    )
    print(
        f"per update: {took * per_update:.2f} ms, app CPU {cpu * per_update:.2f} ms,"
        f" PostgreSQL CPU {server * per_update:.2f} ms"
    )


if __name__ == "__main__":
    main()
