"""Fixtures: the app on SQLite or PostgreSQL, its clients, and a fake Bot API."""

import os
import threading

import pytest
import redis
from sqlalchemy import text
from werkzeug.serving import make_server

from supportbot import create_app, outbox
from supportbot import staff as staff_service
from supportbot.config import database_url, engine_options
from supportbot.extensions import db, socketio
from supportbot.fake_telegram import FakeTelegram
from supportbot.models import StaffRole
from supportbot.telegram import bot_api, inbox
from supportbot.telegram.views import SECRET_HEADER

from helpers import CHROMIUM, PASSWORD, csrf_token_of, log_in

WEBHOOK_SECRET = "test-webhook-secret"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PUBLIC_URL = "https://support.example.com"


@pytest.fixture(scope="session")
def telegram_server():
    """Run one fake Bot API server for the whole session."""
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def telegram(telegram_server):
    """Give each test the fake Bot API with no calls, failures or updates left."""
    telegram_server.reset()
    return telegram_server


@pytest.fixture
def redis_url():
    """Name a Redis database for the test, cleared before and after; skip without."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"needs Redis at {REDIS_URL} (set TEST_REDIS_URL)")
    client.flushdb()

    yield REDIS_URL

    client.flushdb()
    client.close()


@pytest.fixture
def database_uri(tmp_path):
    """Name an empty database: TEST_DATABASE_URL's, or a new SQLite file."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return "sqlite:///" + str(tmp_path / "test.sqlite")
    return database_url(url, str(tmp_path))


@pytest.fixture
def make_app(database_uri, telegram, tmp_path):
    """Build apps wired to the test database and the fake Bot API, and close
    their database connections after the test."""
    made = []

    def make(**overrides):
        config = {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_uri),
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_URL": telegram.base_url,
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TELEGRAM_TIMEOUT": 2,
            "PUBLIC_URL": PUBLIC_URL,
            "OUTBOX_WORKER": "off",
            "TELEGRAM_HANDLERS": 0,
            "RATELIMIT_STORAGE_URI": "memory://",
            "ATTACHMENT_CACHE": str(tmp_path / "files"),
            "UPLOAD_FOLDER": str(tmp_path / "uploads"),
            "LOG_TO_DATABASE": False,
        }
        config.update(overrides)
        made.append(create_app(config))
        return made[-1]

    yield make

    for each in made:
        with each.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    """Create the app with a fresh schema, dropped again after the test."""
    app = make_app()
    with app.app_context():
        _drop_everything()
        db.create_all()

    yield app

    with app.app_context():
        db.session.remove()
        _drop_everything()
        db.engine.dispose()


def _drop_everything():
    db.drop_all()
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A runner for the app's CLI commands."""
    return app.test_cli_runner()


@pytest.fixture
def send_update(client, handle_updates):
    """Post an update to the webhook as Telegram would, handle what it stored,
    and return the webhook's response."""

    def send(update, secret=WEBHOOK_SECRET):
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        response = client.post("/telegram/webhook", json=update, headers=headers)
        handle_updates()
        return response

    return send


@pytest.fixture
def handle_updates(app):
    """Handle the stored updates, as the app's handler threads would."""

    def run():
        with app.app_context():
            try:
                return inbox.handle_waiting()
            finally:
                db.session.remove()

    return run


@pytest.fixture
def deliver(app):
    """Run the outbox once, sending whatever is due to the fake Bot API."""

    def run():
        with app.app_context():
            return outbox.deliver_due(bot_api())

    return run


@pytest.fixture
def make_staff(app):
    """Create staff accounts, all with the password ``PASSWORD``."""

    def make(name="Alice", role=StaffRole.AGENT, email=None):
        with app.app_context():
            email = email or f"{name.lower()}@example.com"
            account, _ = staff_service.create(email, name, role, PASSWORD)
            db.session.commit()
            return account.id

    return make


@pytest.fixture
def agent_client(app, make_staff):
    """A test client signed in as an agent, Alice."""
    make_staff("Alice")
    client = app.test_client()
    log_in(client, "alice@example.com")
    return client


@pytest.fixture
def admin_client(app, make_staff):
    """A test client signed in as an admin, Ada."""
    make_staff("Ada", role=StaffRole.ADMIN)
    client = app.test_client()
    log_in(client, "ada@example.com")
    return client


@pytest.fixture
def staff_socket(app):
    """Connect Socket.IO clients that share cookies with a signed-in test client."""
    sockets = []

    def connect(client, token=None):
        auth = {"csrf_token": csrf_token_of(client) if token is None else token}
        socket = socketio.test_client(
            app, namespace="/staff", flask_test_client=client, auth=auth
        )
        sockets.append(socket)
        return socket

    yield connect

    for socket in sockets:
        if socket.is_connected("/staff"):
            socket.disconnect("/staff")


@pytest.fixture
def live_server(make_app, app):
    """Serve the app, with its outbox and update handler threads, on a local port."""
    server = make_server("127.0.0.1", 0, None, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    # Browsers come from the public address, and sockets check the origin.
    live = make_app(OUTBOX_WORKER="thread", TELEGRAM_HANDLERS=2, PUBLIC_URL=base_url)
    server.app = live
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    yield live, base_url

    server.shutdown()
    live.extensions["supportbot.outbox"].stop()
    inbox.inbox_of(live).stop()


@pytest.fixture
def browser():
    """Start headless Chromium for the test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()
