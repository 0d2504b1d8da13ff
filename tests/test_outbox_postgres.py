"""Several outbox workers on PostgreSQL: claims, leases and a worker killed mid-send."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from supportbot import outbox
from supportbot.extensions import db
from supportbot.models import OutboxMessage, OutboxStatus

ROOT = Path(__file__).resolve().parent.parent
LEASE = 3

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
    reason="needs PostgreSQL: set TEST_DATABASE_URL to run several workers",
)


def queue_many(app, messages):
    """Queue (chat_id, text) pairs in one transaction."""
    with app.app_context():
        for chat_id, text in messages:
            outbox.enqueue(chat_id, "sendMessage", {"text": text})
        db.session.commit()


def statuses(app):
    """Return every outbox row's status, oldest row first."""
    with app.app_context():
        return list(
            db.session.scalars(select(OutboxMessage.status).order_by(OutboxMessage.id))
        )


def wait_for_statuses(app, expected, timeout=10.0):
    """Wait until the rows' statuses are ``expected``; return the last ones seen."""
    deadline = time.monotonic() + timeout
    while (seen := statuses(app)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


@pytest.fixture
def worker_process(telegram, tmp_path):
    """Start ``flask outbox work`` processes on the test database and fake Bot API."""
    processes = []
    env = {
        **os.environ,
        "DATABASE_URL": os.environ["TEST_DATABASE_URL"],
        "SECRET_KEY": "test-secret-key",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.base_url,
        "TELEGRAM_TIMEOUT": "2",
        "OUTBOX_WORKER": "off",
        "OUTBOX_LEASE": str(LEASE),
        "LOG_TO_DATABASE": "off",
    }
    env.pop("REDIS_URL", None)

    def start(*options):
        log = open(tmp_path / f"worker-{len(processes)}.log", "w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "wsgi",
                "outbox",
                "work",
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append((process, log))
        return process

    yield start

    for process, log in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()


def test_a_message_in_flight_when_its_worker_is_killed_is_sent_after_the_lease(
    app, telegram, worker_process
):
    # The first call hangs at Telegram and then fails, so that the message is
    # not delivered by the worker that dies.
    telegram.delay(2.0, "sendMessage")
    telegram.fail("sendMessage", error_code=500, times=1)
    queue_many(app, [(1, "survives the crash"), (1, "and comes after it")])

    doomed = worker_process()
    [in_flight] = telegram.wait_for("sendMessage", timeout=30)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    telegram.delay(0, "sendMessage")
    assert statuses(app) == [OutboxStatus.SENDING, OutboxStatus.QUEUED]

    survivor = worker_process()
    telegram.wait_for(
        "sendMessage", count=2, timeout=30, where=lambda call: call.status == 200
    )

    calls = telegram.calls_to("sendMessage")
    accepted = [c.params["text"] for c in calls if c.status == 200]
    assert accepted == ["survives the crash", "and comes after it"]
    assert in_flight.status == 500
    retried = calls[1]
    assert retried.at - in_flight.at >= LEASE - 0.5
    assert wait_for_statuses(app, [OutboxStatus.SENT] * 2) == [OutboxStatus.SENT] * 2

    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=15) == 0


def test_two_workers_send_each_row_exactly_once(make_app, app, telegram):
    telegram.delay(0.01, "sendMessage")
    messages = [
        (chat, f"message {n} to {chat}") for n in range(10) for chat in range(1, 31)
    ]
    queue_many(app, messages)
    fast = {"OUTBOX_RATE": "1000/1", "OUTBOX_RATE_PRIVATE": "100/1"}
    apps = [make_app(**fast, OUTBOX_SENDERS=4) for _ in range(2)]
    sent_by = Counter()

    def count(sender, **state):
        if state["status"] is OutboxStatus.SENT:
            sent_by[apps.index(sender)] += 1

    workers = [
        outbox.Worker(each, each.extensions["supportbot.telegram"]) for each in apps
    ]
    with outbox.delivery_changed.connected_to(count):
        for worker in workers:
            worker.start()
        try:
            telegram.wait_for(
                "sendMessage",
                count=len(messages),
                timeout=60,
                where=lambda call: call.status == 200,
            )
            final = wait_for_statuses(app, [OutboxStatus.SENT] * len(messages))
        finally:
            for worker in workers:
                worker.stop()

    accepted = [c for c in telegram.calls_to("sendMessage") if c.status == 200]
    assert Counter(c.params["text"] for c in accepted) == Counter(
        text for _, text in messages
    )
    for chat in range(1, 31):
        in_order = [c.params["text"] for c in accepted if c.chat_id == chat]
        assert in_order == [text for c, text in messages if c == chat]
    assert final == [OutboxStatus.SENT] * len(messages)
    assert len(sent_by) == 2
    assert sum(sent_by.values()) == len(messages)


def test_a_worker_process_serves_its_own_metrics(app, telegram, worker_process):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker_process("--metrics-port", str(port))
    queue_many(app, [(1, "counted")])

    assert wait_for_statuses(app, [OutboxStatus.SENT]) == [OutboxStatus.SENT]
    deadline = time.monotonic() + 10
    while True:
        try:
            body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the worker serves no metrics"
            time.sleep(0.1)
    assert "supportbot_outbox_sent_total 1.0" in body
