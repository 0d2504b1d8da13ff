"""Measure live latency: webhook to staff socket, and staff reply to the Bot API.

``socket`` posts private-chat messages to the webhook at a fixed rate and times
each one from the post to the ``customer_message`` event that a console signed
in through the login form receives in the ``queue`` room. ``reply`` posts
staff replies through the console's reply endpoint at a fixed rate and times
each one from the post to the ``sendMessage`` call the fake Bot API records,
with the outbox delivered by a ``flask outbox work`` process. Both run the app
under gunicorn with ``gunicorn.conf.py``, its workers sharing Redis.

    .venv/bin/python bench/live_latency.py
    .venv/bin/python bench/live_latency.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/supportbot_bench_live
    .venv/bin/python bench/live_latency.py --mode socket --rate 200 --seconds 20
    .venv/bin/python bench/live_latency.py --mode reply --reply-rate 10

The PostgreSQL database must exist and may be empty; its tables are replaced
for each mode. The Redis database (``--redis-url``) is emptied before and after.
"""

import argparse
import asyncio
import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import redis
import socketio
from sqlalchemy import create_engine, text

from supportbot.config import database_url, engine_options
from supportbot.extensions import db
from supportbot.fake_telegram import FakeTelegram

from common import bench_app, empty_database, text_update, wait_until_handled

ROOT = Path(__file__).resolve().parent.parent
SOCKET_TARGET_P99 = 0.050
REPLY_TARGET_P50 = 0.050
WEBHOOK_SECRET = "bench-webhook-secret"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
STAFF_EMAIL = "bench@example.com"
STAFF_PASSWORD = "bench password, long enough"
START_TIMEOUT = 60
# Telegram opens at most this many connections to a webhook by default.
WEBHOOK_CONNECTIONS = 40


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", help="an empty database; a temporary SQLite file if unset"
    )
    parser.add_argument("--mode", choices=["both", "socket", "reply"], default="both")
    parser.add_argument("--rate", type=float, default=200, help="updates a second")
    parser.add_argument("--seconds", type=float, default=20, help="measured period")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds")
    parser.add_argument(
        "--users", type=int, default=500, help="customers with an open ticket"
    )
    parser.add_argument("--reply-rate", type=float, default=10, help="replies a second")
    parser.add_argument("--reply-seconds", type=float, default=20)
    parser.add_argument("--workers", default="2", help="WEB_CONCURRENCY")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    return parser.parse_args()


def free_port() -> int:
    """Ask the system for a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    """The app's processes for one mode, stopped together at the end."""

    def __init__(self, env: dict, scratch: str):
        self.env = env
        self.scratch = scratch
        self._started: list[tuple[str, subprocess.Popen, object]] = []

    def run(self, *command: str) -> str:
        """Run a ``flask`` command to completion and return its output."""
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"flask {' '.join(command)} failed:\n{done.stderr}")
        return done.stdout

    def start(self, name: str, *command: str, **env: str) -> subprocess.Popen:
        """Start a long-running process with its output in a log file."""
        log = open(Path(self.scratch, f"{name}.log"), "w")
        process = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._started.append((name, process, log))
        return process

    def start_web(self) -> str:
        """Start gunicorn as production does, wait for it, and return its URL."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = self.start(
            "web",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            # Other servers on this machine may hold the default socket.
            "--no-control-socket",
            "wsgi:app",
            GUNICORN_BIND=f"127.0.0.1:{port}",
            PUBLIC_URL=url,
            PROMETHEUS_MULTIPROC_DIR=str(Path(self.scratch, "metrics")),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return url
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"gunicorn did not start:\n{self.log('web')}")

    def log(self, name: str) -> str:
        """Return what a process wrote so far."""
        return Path(self.scratch, f"{name}.log").read_text()

    def stop(self) -> None:
        """Stop every started process, the newest first."""
        for _, process, log in reversed(self._started):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()
        self._started.clear()


def prepare_database(uri: str) -> None:
    """Empty the database, so that ``flask db upgrade`` starts from nothing."""
    app = bench_app(uri)
    with app.app_context():
        empty_database()
        db.engine.dispose()


def update_body(update_id: int, user: int, message_id: int) -> bytes:
    """Encode a private-chat text message from customer ``user``."""
    return text_update(
        update_id,
        7_000_000 + user,
        message_id,
        f"Update {update_id}: my parcel has not arrived, can you help?",
    )


def percentile(values: list[float], share: float) -> float:
    """Return the value below which ``share`` of ``values`` fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def describe(values: list[float]) -> str:
    """Format p50, p90, p99 and the maximum in milliseconds."""
    return (
        f"p50 {percentile(values, 0.5) * 1000:.1f} ms,"
        f" p90 {percentile(values, 0.9) * 1000:.1f} ms,"
        f" p99 {percentile(values, 0.99) * 1000:.1f} ms,"
        f" max {max(values) * 1000:.1f} ms"
    )


async def sign_in(session: aiohttp.ClientSession, base_url: str) -> str:
    """Sign the staff member in through the login form; return the page's token."""
    async with session.get(f"{base_url}/login") as response:
        token = meta_token(await response.text())
    form = {"email": STAFF_EMAIL, "password": STAFF_PASSWORD, "csrf_token": token}
    async with session.post(f"{base_url}/login", data=form) as response:
        page = await response.text()
        if not str(response.url).endswith("/console/"):
            raise SystemExit(f"sign-in failed: {response.status}\n{page[:2000]}")
    return meta_token(page)


def meta_token(page: str) -> str:
    """Read the CSRF token that every page carries in its head."""
    return page.split('<meta name="csrf-token" content="')[1].split('"')[0]


async def offer(rate: float, count: int, send) -> tuple[float, float]:
    """Call ``send(number)`` ``count`` times at ``rate`` a second, open loop.

    Returns the rate the sends started at, the rate they were answered at,
    and the longest a send started behind schedule.
    """
    tasks = []
    worst = 0.0
    started = time.monotonic()
    for number in range(count):
        due = started + number / rate
        pause = due - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        worst = max(worst, time.monotonic() - due)
        tasks.append(asyncio.create_task(send(number)))
    offered = count / max(time.monotonic() - started, 1e-9) if count > 1 else rate
    await asyncio.gather(*tasks)
    return offered, count / (time.monotonic() - started), worst


async def measure_socket(arguments, base_url: str, engine) -> dict:
    """Post updates at a fixed rate and time them to the console's socket event."""
    warmup = int(arguments.warmup * arguments.rate)
    count = warmup + int(arguments.seconds * arguments.rate)
    received: dict[int, float] = {}
    sent: dict[tuple[int, int], float] = {}
    answered_at: dict[tuple[int, int], float] = {}
    failed = 0
    # Message 1 of each customer opened their ticket before the run.
    message_ids = [1] * arguments.users
    headers = {"Content-Type": "application/json", SECRET_HEADER: WEBHOOK_SECRET}
    connector = aiohttp.TCPConnector(limit=WEBHOOK_CONNECTIONS)
    jar = aiohttp.CookieJar(unsafe=True)

    async with (
        aiohttp.ClientSession(cookie_jar=jar) as browser,
        aiohttp.ClientSession(connector=connector) as telegram,
    ):
        token = await sign_in(browser, base_url)
        console = socketio.AsyncClient(http_session=browser)

        @console.on("customer_message", namespace="/staff")
        async def on_customer_message(data):
            received.setdefault(data["message_id"], time.monotonic())

        await console.connect(
            base_url,
            namespaces=["/staff"],
            transports=["websocket"],
            auth={"csrf_token": token},
            headers={"Origin": base_url},
            wait_timeout=10,
        )

        async def send(number: int) -> None:
            nonlocal failed
            user = number % arguments.users
            message_ids[user] += 1
            chat_id, message_id = 7_000_000 + user, message_ids[user]
            body = update_body(1_000_000 + number, user, message_id)
            before = time.monotonic()
            if number >= warmup:
                sent[(chat_id, message_id)] = before
            try:
                async with telegram.post(
                    f"{base_url}/telegram/webhook", data=body, headers=headers
                ) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                # Telegram would deliver it again; here it only counts as lost.
                ok = False
            if not ok:
                failed += 1
            elif number >= warmup:
                answered_at[(chat_id, message_id)] = time.monotonic()

        # The client stands in for Telegram and a browser on other machines:
        # its own collector's full passes would be counted as the app's delay.
        gc.freeze()
        rate, answered_rate, behind = await offer(arguments.rate, count, send)
        # Events still on their way when the last post was answered.
        deadline = time.monotonic() + 5
        while len(received) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await console.disconnect()

    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, telegram_chat_id, telegram_message_id FROM message"
                " WHERE telegram_message_id IS NOT NULL"
            )
        ).all()
    latencies = []
    after_answer = []
    for message_id, chat_id, telegram_message_id in rows:
        key = (chat_id, telegram_message_id)
        if key in sent and message_id in received:
            latencies.append(received[message_id] - sent[key])
            if key in answered_at:
                after_answer.append(received[message_id] - answered_at[key])
    return {
        "rate": rate,
        "answered_rate": answered_rate,
        "behind": behind,
        "sent": len(sent),
        "failed": failed,
        "latencies": latencies,
        "answered": [answered_at[key] - sent[key] for key in answered_at],
        "after_answer": after_answer,
    }


async def open_tickets(arguments, base_url: str, count: int) -> None:
    """Have ``count`` customers write once each, so that each has a ticket."""
    headers = {"Content-Type": "application/json", SECRET_HEADER: WEBHOOK_SECRET}
    connector = aiohttp.TCPConnector(limit=10)
    async with aiohttp.ClientSession(connector=connector) as telegram:

        async def send(user: int) -> None:
            body = update_body(1_000 + user, user, 1)
            async with telegram.post(
                f"{base_url}/telegram/webhook", data=body, headers=headers
            ) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"webhook answered {response.status}")

        await asyncio.gather(*(send(user) for user in range(count)))


async def measure_replies(arguments, base_url: str, ticket_ids: list[int]) -> dict:
    """Post replies at a fixed rate, each to its own ticket, and time their posts."""
    sent: dict[str, float] = {}
    answered_at: dict[str, float] = {}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        token = await sign_in(browser, base_url)
        headers = {"X-CSRFToken": token, "Accept": "application/json"}

        async def send(number: int) -> None:
            reply = f"Reply {number}: your parcel left the depot this morning."
            before = time.monotonic()
            sent[reply] = before
            async with browser.post(
                f"{base_url}/console/tickets/{ticket_ids[number]}/messages",
                data={"text": reply},
                headers=headers,
            ) as response:
                body = await response.text()
                if response.status != 200:
                    raise SystemExit(f"reply refused: {response.status} {body[:500]}")
            answered_at[reply] = time.monotonic()

        rate, answered_rate, behind = await offer(
            arguments.reply_rate, len(ticket_ids), send
        )
    return {
        "rate": rate,
        "answered_rate": answered_rate,
        "behind": behind,
        "sent": sent,
        "answered_at": answered_at,
    }


def run_socket_mode(arguments, uri: str, processes: Processes) -> bool:
    """Measure webhook to staff socket latency; return whether the target is met."""
    base_url = processes.start_web()
    engine = create_engine(uri, **engine_options(uri))
    # The run then times follow-ups in open tickets, the usual case.
    asyncio.run(open_tickets(arguments, base_url, arguments.users))
    wait_until_handled(engine)
    try:
        result = asyncio.run(measure_socket(arguments, base_url, engine))
    finally:
        engine.dispose()
    latencies = result["latencies"]
    print(
        f"offered {arguments.rate:g} updates/s for {arguments.seconds:g} s"
        f" (after {arguments.warmup:g} s of warm-up): sent at {result['rate']:.1f}/s,"
        f" at most {result['behind'] * 1000:.1f} ms behind schedule,"
        f" answered at {result['answered_rate']:.1f}/s"
    )
    print(
        f"events received for {len(latencies)} of {result['sent']} updates,"
        f" {result['failed']} posts refused or cut off"
    )
    print(f"webhook answered:      {describe(result['answered'])}")
    if not latencies:
        print("no events arrived")
        return False
    print(f"webhook -> socket:     {describe(latencies)}")
    # Negative: the console had the event before Telegram had the answer.
    print(f"event after answer:    {describe(result['after_answer'])}")
    p99 = percentile(latencies, 0.99)
    met = p99 <= SOCKET_TARGET_P99 and len(latencies) == result["sent"]
    verdict = "met" if met else "not met"
    print(f"target p99 <= {SOCKET_TARGET_P99 * 1000:.0f} ms: {verdict}")
    return met


def run_reply_mode(arguments, uri: str, processes: Processes, bot) -> bool:
    """Measure staff reply to ``sendMessage`` latency; return whether it is met."""
    count = int(arguments.reply_rate * arguments.reply_seconds)
    base_url = processes.start_web()
    processes.start("worker", "flask", "--app", "wsgi", "outbox", "work")

    asyncio.run(open_tickets(arguments, base_url, count))
    # Each new ticket is confirmed to its customer; those go out first, and
    # the overall rate's window is left to empty before replies start.
    bot.wait_for(
        "sendMessage",
        count=count,
        timeout=count / 10 + 60,
        where=lambda call: call.status == 200,
    )
    time.sleep(2)

    engine = create_engine(uri, **engine_options(uri))
    with engine.connect() as connection:
        by_customer = dict(
            connection.execute(text("SELECT customer_id, id FROM ticket")).all()
        )
    engine.dispose()
    ticket_ids = [by_customer[7_000_000 + user] for user in range(count)]

    result = asyncio.run(measure_replies(arguments, base_url, ticket_ids))
    sent = result["sent"]
    calls = bot.wait_for(
        "sendMessage",
        count=len(sent),
        timeout=count / 5 + 60,
        where=lambda call: call.params.get("text") in sent,
    )
    latencies = [call.at - sent[call.params["text"]] for call in calls]
    answered_at = result["answered_at"]
    answered = [answered_at[reply] - sent[reply] for reply in answered_at]
    # Negative: Telegram had the message before the console had the answer.
    after_answer = [call.at - answered_at[call.params["text"]] for call in calls]
    print(
        f"offered {arguments.reply_rate:g} replies/s for"
        f" {arguments.reply_seconds:g} s, each to its own ticket:"
        f" sent at {result['rate']:.1f}/s,"
        f" at most {result['behind'] * 1000:.1f} ms behind schedule,"
        f" answered at {result['answered_rate']:.1f}/s"
    )
    print(f"reply answered:        {describe(answered)}")
    print(f"reply -> sendMessage:  {describe(latencies)}")
    print(f"sent after answer:     {describe(after_answer)}")
    p50 = percentile(latencies, 0.5)
    met = p50 <= REPLY_TARGET_P50
    verdict = "met" if met else "not met"
    print(f"target p50 <= {REPLY_TARGET_P50 * 1000:.0f} ms: {verdict}")
    return met


def main() -> None:
    """Run the chosen modes, each on a fresh database, and print the figures."""
    arguments = parse_arguments()
    modes = ["socket", "reply"] if arguments.mode == "both" else [arguments.mode]
    redis_client = redis.Redis.from_url(arguments.redis_url)
    with tempfile.TemporaryDirectory() as scratch, FakeTelegram() as bot:
        uri = database_url(
            arguments.database_url or f"sqlite:///{Path(scratch, 'bench.sqlite')}",
            scratch,
        )
        env = {
            **os.environ,
            "SUPPORTBOT_ENV": "development",
            "SECRET_KEY": "bench-secret-key",
            "DATABASE_URL": uri,
            "REDIS_URL": arguments.redis_url,
            "TELEGRAM_BOT_TOKEN": bot.token,
            "TELEGRAM_API_URL": bot.base_url,
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            # The web processes only store; a separate worker delivers.
            "OUTBOX_WORKER": "off",
            "WEB_CONCURRENCY": arguments.workers,
            "UPLOAD_FOLDER": str(Path(scratch, "uploads")),
        }
        print(
            f"database: {uri.split(':', 1)[0]}, gunicorn workers: {arguments.workers},"
            f" Redis: {arguments.redis_url}"
        )
        for mode in modes:
            redis_client.flushdb()
            bot.reset()
            prepare_database(uri)
            processes = Processes(env, scratch)
            try:
                processes.run("db", "upgrade")
                processes.run(
                    "staff",
                    "create",
                    STAFF_EMAIL,
                    "--name",
                    "Bench",
                    "--password",
                    STAFF_PASSWORD,
                )
                print(f"\n{mode}")
                if mode == "socket":
                    run_socket_mode(arguments, uri, processes)
                else:
                    run_reply_mode(arguments, uri, processes, bot)
            finally:
                processes.stop()
        redis_client.flushdb()
    redis_client.close()


if __name__ == "__main__":
    main()
