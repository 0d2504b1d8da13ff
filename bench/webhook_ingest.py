"""Compare the webhook's throughput with a bare Flask endpoint doing one INSERT.

Both are served by gunicorn with ``gunicorn.conf.py`` (its gevent workers) on
the same database. Rounds alternate between them, each posting distinct
private-chat text messages with the secret header from a pool of concurrent
keep-alive connections, so that both see the same load and the same machine.

    .venv/bin/python bench/webhook_ingest.py
    .venv/bin/python bench/webhook_ingest.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/supportbot_bench_web
    .venv/bin/python bench/webhook_ingest.py --rounds 3 --seconds 5 --concurrency 32

The PostgreSQL database must exist and may be empty; its tables are replaced.
The app runs with OUTBOX_WORKER=off, so that no delivery competes with the
webhook, and LOG_TO_DATABASE as production leaves it (on) unless
``--no-database-logs`` is given.

The webhook stores each update and answers; handlers then handle it. By
default they run in the webhook's own workers, as shipped, and compete with it
for the CPU; ``--handlers apart`` runs them in a ``flask bot handle`` process
beside a server that only stores, and ``--handlers paused`` stops that process
during the rounds, so that the webhook's own path is measured alone, and lets
it go on between them. After each of the webhook's rounds the script waits
until every stored update is handled, and reports the rate at which updates
were stored and handled together.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from flask import Flask, abort, jsonify, request
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    insert,
)

from supportbot.config import database_url, engine_options
from supportbot.extensions import db
from supportbot.fake_telegram import FakeTelegram

from common import (
    bench_app,
    cpu_seconds,
    empty_database,
    text_update,
    wait_until_handled,
)

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.8
WEBHOOK_SECRET = "bench-webhook-secret"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
START_TIMEOUT = 60

bare_metadata = MetaData()
bare_updates = Table(
    "bench_bare_update",
    bare_metadata,
    Column("id", Integer, primary_key=True),
    Column("update_id", BigInteger, nullable=False, unique=True),
    Column("body", Text, nullable=False),
)


def bare_app() -> Flask:
    """Build the baseline: check the secret, read the JSON, INSERT it, answer."""
    uri = database_url(os.environ["DATABASE_URL"], tempfile.gettempdir())
    engine = create_engine(uri, **engine_options(uri))
    secret = os.environ["TELEGRAM_WEBHOOK_SECRET"]
    app = Flask(__name__)

    @app.post("/telegram/webhook")
    def webhook():
        """Store the update in one row."""
        if request.headers.get(SECRET_HEADER) != secret:
            abort(403)
        payload = request.get_json()
        with engine.begin() as connection:
            connection.execute(
                insert(bare_updates).values(
                    update_id=payload["update_id"], body=json.dumps(payload)
                )
            )
        return jsonify(ok=True)

    @app.get("/healthz")
    def healthz():
        """Say the process is up."""
        return jsonify(ok=True)

    return app


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", help="an empty database; a temporary SQLite file if unset"
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each server")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of a round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--users", type=int, default=1000, help="customers writing; each opens a ticket"
    )
    parser.add_argument("--workers", default="2", help="WEB_CONCURRENCY of both")
    parser.add_argument("--redis-url", default="", help="REDIS_URL for the app")
    parser.add_argument(
        "--handlers",
        choices=["web", "apart", "paused"],
        default="web",
        help="handle updates in the web workers, in a process of their own, or"
        " in one stopped while the webhook is loaded",
    )
    parser.add_argument(
        "--no-database-logs",
        action="store_true",
        help="run the app with LOG_TO_DATABASE=off",
    )
    return parser.parse_args()


class Server:
    """One gunicorn server started with the project's configuration file."""

    def __init__(self, name: str, app_spec: str, env: dict, scratch: str):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(scratch, f"{name}.log")
        self._log = open(self.log_path, "w")
        self.handler = None
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                # Other servers on this machine may hold the default socket.
                "--no-control-socket",
                "--pythonpath",
                str(ROOT / "bench"),
                app_spec,
            ],
            cwd=ROOT,
            env={
                **env,
                "GUNICORN_BIND": f"127.0.0.1:{self.port}",
                "PROMETHEUS_MULTIPROC_DIR": str(Path(scratch, f"metrics-{name}")),
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_until_up(self) -> None:
        """Wait for the health check to answer, or fail with the server's log."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            return
        self.stop()
        raise SystemExit(f"{self.name} did not start:\n{self.log_path.read_text()}")

    def start_handler(self, env: dict) -> None:
        """Run ``flask bot handle`` beside the server, logging to the same file."""
        self.handler = subprocess.Popen(
            [sys.executable, "-m", "flask", "bot", "handle"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def pause_handler(self, paused: bool) -> None:
        """Stop the handler process, or let it go on; the server keeps serving."""
        if self.handler is not None:
            self.handler.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def cpu_seconds(self) -> float:
        """Add up the CPU time of the server's workers and handler so far."""
        processes = psutil.Process(self.process.pid).children()
        if self.handler is not None:
            processes.append(psutil.Process(self.handler.pid))
        return cpu_seconds(processes)

    def stop(self) -> None:
        """Stop gunicorn and its workers, and the handler."""
        for process in (self.process, self.handler):
            if process is None:
                continue
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._log.close()


def free_port() -> int:
    """Ask the system for a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Updates:
    """Make distinct private-chat text messages, as Telegram would send them."""

    def __init__(self, users: int):
        self.users = users
        self._update_id = 100_000
        self._message_ids = [0] * users

    def next_body(self, number: int) -> bytes:
        """Return the encoded update from customer ``number % users``."""
        self._update_id += 1
        user = number % self.users
        self._message_ids[user] += 1
        return text_update(
            self._update_id,
            5_000_000 + user,
            self._message_ids[user],
            f"My order {self._update_id} has not arrived yet, can you help?",
        )


async def post_for(
    url: str, bodies: list[bytes], seconds: float, concurrency: int
) -> tuple[int, float, int]:
    """Post ``bodies`` until they or the time run out; return count, time, errors."""
    headers = {"Content-Type": "application/json", SECRET_HEADER: WEBHOOK_SECRET}
    connector = aiohttp.TCPConnector(limit=concurrency)
    queue = iter(bodies)
    done = errors = 0
    started = time.monotonic()
    deadline = started + seconds

    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal done, errors
            for body in queue:
                if time.monotonic() >= deadline:
                    return
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        done += 1
                    else:
                        errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return done, time.monotonic() - started, errors


def prepare_database(uri: str) -> None:
    """Empty the database, so that ``flask db upgrade`` starts from nothing."""
    app = bench_app(uri)
    with app.app_context():
        empty_database()
        bare_metadata.drop_all(db.engine)
        bare_metadata.create_all(db.engine)
        db.engine.dispose()


def main() -> None:
    """Start both servers, alternate rounds of load on them, print the ratio."""
    arguments = parse_arguments()
    with tempfile.TemporaryDirectory() as scratch, FakeTelegram() as bot:
        uri = database_url(
            arguments.database_url or f"sqlite:///{Path(scratch, 'bench.sqlite')}",
            scratch,
        )
        prepare_database(uri)
        env = {
            **os.environ,
            "SUPPORTBOT_ENV": "development",
            "SECRET_KEY": "bench-secret-key",
            "DATABASE_URL": uri,
            "TELEGRAM_BOT_TOKEN": bot.token,
            "TELEGRAM_API_URL": bot.base_url,
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "OUTBOX_WORKER": "off",
            "LOG_TO_DATABASE": "off" if arguments.no_database_logs else "on",
            "REDIS_URL": arguments.redis_url,
            "WEB_CONCURRENCY": arguments.workers,
            "FLASK_APP": "wsgi",
        }
        if arguments.handlers != "web":
            env["TELEGRAM_HANDLERS"] = "0"
        subprocess.run(
            [sys.executable, "-m", "flask", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )

        servers = {
            "webhook": Server("webhook", "wsgi:app", env, scratch),
            "bare": Server("bare", "webhook_ingest:bare_app()", env, scratch),
        }
        if arguments.handlers != "web":
            servers["webhook"].start_handler({**env, "TELEGRAM_HANDLERS": "2"})
        engine = create_engine(uri, **engine_options(uri))
        try:
            for server in servers.values():
                server.wait_until_up()
            results = run_rounds(arguments, servers, engine)
        finally:
            for server in servers.values():
                server.stop()
            engine.dispose()

    report(arguments, uri, results)


def run_rounds(arguments, servers: dict[str, Server], engine) -> dict[str, list[dict]]:
    """Warm both servers up, then load them in turn, round after round."""
    updates = Updates(arguments.users)
    # Plenty for a round at any plausible rate; unsent ones are never reused.
    per_round = int(arguments.seconds * 4000)
    number = 0

    def bodies(count: int) -> list[bytes]:
        nonlocal number
        made = [updates.next_body(number + i) for i in range(count)]
        number += count
        return made

    # Every customer's first message opens their ticket; the rounds then
    # measure follow-ups, the usual case, on both servers alike.
    for server in servers.values():
        asyncio.run(
            post_for(
                f"{server.url}/telegram/webhook",
                bodies(arguments.users),
                600,
                arguments.concurrency,
            )
        )
    wait_until_handled(engine)

    results: dict[str, list[dict]] = {name: [] for name in servers}
    for round_number in range(arguments.rounds):
        # Alternate which goes first, so neither always follows the other.
        order = list(servers.items())
        if round_number % 2:
            order.reverse()
        for name, server in order:
            prepared = bodies(per_round)
            paused = name == "webhook" and arguments.handlers == "paused"
            server.pause_handler(paused)
            cpu_before = server.cpu_seconds()
            done, elapsed, errors = asyncio.run(
                post_for(
                    f"{server.url}/telegram/webhook",
                    prepared,
                    arguments.seconds,
                    arguments.concurrency,
                )
            )
            answering = server.cpu_seconds() - cpu_before
            server.pause_handler(False)
            # The bare endpoint has nothing left to do once it has answered.
            behind = wait_until_handled(engine) if name == "webhook" else 0.0
            cpu = server.cpu_seconds() - cpu_before
            results[name].append(
                {
                    "rate": done / elapsed,
                    "handled_rate": done / (elapsed + behind),
                    "cpu_ms": answering * 1000 / max(done, 1),
                    "total_cpu_ms": cpu * 1000 / max(done, 1),
                    "errors": errors,
                }
            )
            print(
                f"round {round_number + 1} {name:8} {done / elapsed:8.1f} answered/s"
                f"  {done / (elapsed + behind):8.1f} stored and handled/s"
                f"  CPU ms/update {answering * 1000 / max(done, 1):5.2f} while"
                f" answering, {cpu * 1000 / max(done, 1):5.2f} in all"
                f"  {errors} errors",
                flush=True,
            )
    return results


def report(arguments, uri: str, results: dict[str, list[dict]]) -> None:
    """Print each server's median figures and the ratios of the two."""

    def median(name: str, figure: str) -> float:
        return statistics.median(r[figure] for r in results[name])

    webhook_rate = median("webhook", "rate")
    handled_rate = median("webhook", "handled_rate")
    bare_rate = median("bare", "rate")
    pairs = [
        w["rate"] / b["rate"]
        for w, b in zip(results["webhook"], results["bare"], strict=True)
    ]
    ratio = webhook_rate / bare_rate
    print()
    print(
        f"database: {uri.split(':', 1)[0]}, gunicorn workers: {arguments.workers},"
        f" concurrency: {arguments.concurrency}, {arguments.rounds} rounds of"
        f" {arguments.seconds:g} s each, handlers: {arguments.handlers}"
    )
    print(
        f"webhook: {webhook_rate:.1f} answered/s, {handled_rate:.1f} stored and"
        f" handled/s; CPU ms/update {median('webhook', 'cpu_ms'):.2f} while"
        f" answering, {median('webhook', 'total_cpu_ms'):.2f} in all (medians)"
    )
    print(
        f"bare:    {bare_rate:.1f} answered/s; CPU ms/update"
        f" {median('bare', 'cpu_ms'):.2f} (medians)"
    )
    rounds = ", ".join(f"{pair:.2f}" for pair in pairs)
    print(f"ratio answered webhook/bare: {ratio:.2f} (rounds: {rounds})")
    print(f"ratio stored and handled/bare: {handled_rate / bare_rate:.2f}")
    verdict = "met" if ratio >= TARGET else "not met"
    print(f"target {TARGET:.1f} for the answered ratio: {verdict}")


if __name__ == "__main__":
    main()
