"""The whole path over HTTP: fake Telegram, webhook, handler, outbox, fake Telegram."""

from sqlalchemy import func, select

from supportbot.extensions import db
from supportbot.models import Customer, Message, Ticket


def test_pushed_message_becomes_a_ticket_and_is_confirmed(live_server, telegram):
    live_app, base_url = live_server
    telegram.set_webhook(
        base_url + "/telegram/webhook", secret_token="test-webhook-secret"
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
