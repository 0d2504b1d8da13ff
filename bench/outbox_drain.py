"""Measure how fast the outbox drains a backlog into a Bot API answering in 50 ms.

The fake Bot API here also keeps Telegram's published flood limits, answering
429 past 30 messages in any second overall, or 20 in any minute to one group,
so that the run shows whether the outbox's own rates keep clear of them.

    .venv/bin/python bench/outbox_drain.py
    .venv/bin/python bench/outbox_drain.py \
        --database-url postgresql://postgres@127.0.0.1/bench
    .venv/bin/python bench/outbox_drain.py --rate 60/1   # past Telegram's limit

The PostgreSQL database must exist and may be empty; its tables are replaced.
"""

import argparse
import logging
import tempfile
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from supportbot import outbox
from supportbot.config import database_url
from supportbot.extensions import db
from supportbot.fake_telegram import ApiError, FakeTelegram

from common import bench_app, empty_database

TARGET = 25.0
ANSWER_DELAY = 0.05
OVERALL_LIMIT = 30
GROUP_LIMIT = 20


class FloodControlledTelegram(FakeTelegram):
    """A fake Bot API that answers 429 where Telegram's published limits end."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._flood_lock = threading.Lock()
        self._sent: deque[float] = deque()
        self._sent_to_group: dict[int, deque[float]] = defaultdict(deque)

    def _dispatch(self, method, request, token):
        if method == "sendMessage":
            self._keep_flood_limits(request.params.get("chat_id"))
        return super()._dispatch(method, request, token)

    def _keep_flood_limits(self, chat_id) -> None:
        now = time.monotonic()
        with self._flood_lock:
            while self._sent and self._sent[0] <= now - 1:
                self._sent.popleft()
            if len(self._sent) >= OVERALL_LIMIT:
                raise ApiError(429, "Too Many Requests: retry after 1", 1)

            group = self._sent_to_group[chat_id] if int(chat_id) < 0 else None
            if group is not None:
                while group and group[0] <= now - 60:
                    group.popleft()
                if len(group) >= GROUP_LIMIT:
                    raise ApiError(429, "Too Many Requests: retry after 3", 3)
                group.append(now)
            self._sent.append(now)


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument(
        "--database-url", help="an empty database; a temporary SQLite file if unset"
    )
    parser.add_argument(
        "--rate", default="25/1", help="OUTBOX_RATE, to try other overall rates"
    )
    return parser.parse_args()


def main() -> None:
    """Queue a backlog, let one worker drain it, and print the rate it kept."""
    arguments = parse_arguments()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch, FloodControlledTelegram() as bot:
        bot.delay(ANSWER_DELAY, "sendMessage")
        uri = database_url(
            arguments.database_url or f"sqlite:///{Path(scratch, 'bench.sqlite')}",
            scratch,
        )
        app = bench_app(
            uri,
            TELEGRAM_BOT_TOKEN=bot.token,
            TELEGRAM_API_URL=bot.base_url,
            OUTBOX_RATE=arguments.rate,
            ATTACHMENT_CACHE=scratch,
        )
        with app.app_context():
            empty_database()
            db.create_all()
            for number in range(arguments.messages):
                chat_id = number % arguments.chats + 1
                outbox.enqueue(chat_id, "sendMessage", {"text": f"reply {number}"})
            db.session.commit()

        worker = outbox.Worker(app, app.extensions["supportbot.telegram"])
        started = time.monotonic()
        worker.start()
        try:
            bot.wait_for(
                "sendMessage",
                count=arguments.messages,
                timeout=arguments.messages / 5 + 60,
                where=lambda call: call.status == 200,
            )
        finally:
            worker.stop()

        calls = bot.calls_to("sendMessage")
        accepted = sorted(call.at for call in calls if call.status == 200)
        limited = sum(1 for call in calls if call.status == 429)
        settings = outbox.outbox_of(app).settings
        backend = uri.split(":", 1)[0]

    # The first second is a burst the rate allows; the sustained rate follows it.
    steady = accepted[settings.overall.count :]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    print(f"database: {backend}, senders: {settings.senders}")
    print(f"rates: overall {settings.overall}, private chat {settings.private_chat}")
    print(
        f"{arguments.messages} messages to {arguments.chats} chats,"
        f" Bot API answering in {ANSWER_DELAY * 1000:.0f} ms"
    )
    print(f"drained in {accepted[-1] - started:.1f} s")
    print(f"sustained: {rate:.1f} messages/s = {rate / TARGET:.2f} of the 25/s target")
    print(f"429 answers provoked: {limited}")


if __name__ == "__main__":
    main()
