"""The whole path over HTTP: fake Telegram, webhook, outbox, fake Telegram."""

import threading

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from supportbot.extensions import db
from supportbot.models import Customer, Message, Ticket


@pytest.fixture
def live_app(make_app, app):
    """Serve an app with its outbox thread on a local port."""
    live = make_app(OUTBOX_WORKER="thread")
    server = make_server("127.0.0.1", 0, live, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live.config["LIVE_URL"] = f"http://127.0.0.1:{server.server_port}"

    yield live

    server.shutdown()
    live.extensions["supportbot.outbox"].stop()


def test_pushed_message_becomes_a_ticket_and_is_confirmed(live_app, telegram):
    telegram.set_webhook(
        live_app.config["LIVE_URL"] + "/telegram/webhook",
        secret_token="test-webhook-secret",
    )
    user = telegram.user(first_name="Linus")
    update = user.text("The printer is on fire")

    first = telegram.push(update)
    [confirmation] = telegram.wait_for(
        "sendMessage", where=lambda call: call.chat_id == user.id
    )
    again = telegram.push(update)

    assert first.status == 200
    assert again.status == 200
    assert again.json["duplicate"] is True
    with live_app.app_context():
        assert db.session.get(Customer, user.id).first_name == "Linus"
        [ticket] = db.session.scalars(select(Ticket)).all()
        assert db.session.scalar(select(func.count()).select_from(Message)) == 1
        assert f"#{ticket.number}" in confirmation.params["text"]
    assert len(telegram.calls_to("sendMessage")) == 1
