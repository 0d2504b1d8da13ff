"""Real gunicorn servers and an outbox worker sharing one database and Redis."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import socketio as socketio_package
from sqlalchemy import select

from supportbot.extensions import db
from supportbot.models import Message

from helpers import PASSWORD, csrf_token_in

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "multiprocess-webhook-secret"
# Generous: on a busy machine gunicorn and the app take seconds to start.
START_TIMEOUT = 60
EVENT_TIMEOUT = 30


@pytest.fixture
def start_process(app, database_uri, telegram, redis_url, tmp_path):
    """Start processes of the app on the test database, Redis and fake Bot API."""
    started = []
    base_env = {
        **os.environ,
        "SUPPORTBOT_ENV": "development",
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database_uri,
        "REDIS_URL": redis_url,
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.base_url,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TELEGRAM_TIMEOUT": "5",
        "OUTBOX_WORKER": "off",
        "LOG_TO_DATABASE": "off",
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
    }

    def start(name, command, **env):
        log = open(tmp_path / f"{name}.log", "w")
        # None leaves a variable out, so that the process uses its default.
        merged = {**base_env, **env}
        process = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env={key: value for key, value in merged.items() if value is not None},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((process, log))
        return process

    yield start

    for process, log in started:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture
def web_process(start_process, tmp_path):
    """Start one gunicorn process, as production runs it, and return its URL."""

    def start(name, **env):
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        settings = {
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "1",
            "PUBLIC_URL": base_url,
            # Each server clears its metrics folder when it starts.
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{name}"),
            **env,
        }
        process = start_process(
            name, ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], **settings
        )
        wait_until_up(process, base_url, tmp_path / f"{name}.log")
        return base_url

    return start


def free_port() -> int:
    """Ask the system for a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(process, base_url, log_path):
    """Wait until the process answers its health check, or fail with its log."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{base_url} exited:\n{log_path.read_text()}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=5).ok:
                return
        # gunicorn listens before its worker has loaded the app.
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    pytest.fail(f"{base_url} did not start:\n{log_path.read_text()}")


def sign_in(base_url) -> tuple[requests.Session, str]:
    """Sign Alice in as a browser would; return the session and the page's token."""
    browser = requests.Session()
    token = csrf_token_in(browser.get(f"{base_url}/login", timeout=10).text)
    signed_in = browser.post(
        f"{base_url}/login",
        data={"email": "alice@example.com", "password": PASSWORD, "csrf_token": token},
        timeout=10,
    )
    assert signed_in.url.endswith("/console/"), signed_in.text
    return browser, csrf_token_in(signed_in.text)


def stored_message(app, timeout=EVENT_TIMEOUT) -> tuple[int, int]:
    """Wait until a handler has stored the one customer message; return its ids."""
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            row = db.session.execute(select(Message.ticket_id, Message.id)).first()
        if row is not None:
            return tuple(row)
        assert time.monotonic() < deadline, "no handler stored the message"
        time.sleep(0.05)


class LiveEvents:
    """Collect the events a Socket.IO client receives on ``/staff``."""

    def __init__(self, client):
        self._condition = threading.Condition()
        self._events = []
        client.on("*", self._record, namespace="/staff")

    def _record(self, name, data=None):
        with self._condition:
            self._events.append((name, data))
            self._condition.notify_all()

    def wait_for(self, name, where=lambda data: True, timeout=EVENT_TIMEOUT):
        """Return the first ``name`` event whose data matches, waiting for it."""

        def found():
            return next((d for n, d in self._events if n == name and where(d)), None)

        with self._condition:
            self._condition.wait_for(lambda: found() is not None, timeout)
            seen = found()
            assert seen is not None, f"no {name} event among {self._events}"
            return seen


def test_webhook_on_one_process_reaches_a_console_on_another_and_replies_leave(
    app, make_staff, telegram, web_process, start_process
):
    make_staff("Alice")
    process_a = web_process("web-a")
    process_b = web_process("web-b")
    start_process("worker", ["flask", "--app", "wsgi", "outbox", "work"])
    telegram.set_webhook(f"{process_a}/telegram/webhook", WEBHOOK_SECRET)

    browser, token = sign_in(process_b)
    client = socketio_package.Client(http_session=browser)
    events = LiveEvents(client)
    # As static/console.js connects; this client can only poll.
    client.connect(
        process_b,
        namespaces=["/staff"],
        transports=["polling"],
        auth={"csrf_token": token},
        headers={"Origin": process_b},
        wait_timeout=EVENT_TIMEOUT,
    )

    try:
        user = telegram.user()
        pushed = telegram.push(user.text("my parcel never came"))
        assert pushed.status == 200, pushed.text

        ticket_id, message_id = stored_message(app)
        # Redis hands its channels to every client of the server, whatever
        # database they chose: other suites' events may arrive too.
        message = events.wait_for(
            "customer_message",
            where=lambda data: (
                (data["ticket_id"], data["message_id"]) == (ticket_id, message_id)
            ),
        )
        assert message["kind"] == "customer"
        joined = client.call(
            "join_ticket",
            {"ticket_id": ticket_id},
            namespace="/staff",
            timeout=EVENT_TIMEOUT,
        )
        assert joined == {"ok": True}

        reply = browser.post(
            f"{process_b}/console/tickets/{ticket_id}/messages",
            data={"text": "We are on it", "csrf_token": token},
            headers={"Accept": "application/json"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text

        [sent] = telegram.wait_for(
            "sendMessage",
            timeout=EVENT_TIMEOUT,
            where=lambda call: call.params.get("text") == "We are on it",
        )
        assert sent.chat_id == user.id
        reply_id = reply.json()["message_id"]
        events.wait_for(
            "delivery_changed",
            where=lambda data: (
                (data["ticket_id"], data["message_id"]) == (ticket_id, reply_id)
                and data["status"] == "sent"
            ),
        )
    finally:
        client.disconnect()


def test_a_polling_socket_keeps_working_under_the_shipped_gunicorn_settings(
    app, make_staff, web_process
):
    make_staff("Alice")
    # Left unset, as a platform that sets only PORT leaves it.
    base_url = web_process("web", WEB_CONCURRENCY=None)
    browser, token = sign_in(base_url)
    # A new connection for each request, as a proxy in front opens them.
    browser.headers["Connection"] = "close"
    client = socketio_package.Client(http_session=browser)

    # Each request of a polling connection must reach the worker that holds
    # it; gunicorn hands connections to its workers with no such regard.
    client.connect(
        base_url,
        namespaces=["/staff"],
        transports=["polling"],
        auth={"csrf_token": token},
        headers={"Origin": base_url},
        wait_timeout=EVENT_TIMEOUT,
    )
    try:
        answers = [
            client.call(
                "typing", {"ticket_id": 1}, namespace="/staff", timeout=EVENT_TIMEOUT
            )
            for _ in range(10)
        ]
    finally:
        client.disconnect()

    assert answers == [{"ok": False, "error": "Join the ticket first."}] * 10
