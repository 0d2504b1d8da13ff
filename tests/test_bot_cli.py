"""``flask bot``: webhook set-up, information and long polling."""

import pytest
from sqlalchemy import select

from supportbot.extensions import db
from supportbot.models import Message
from supportbot.telegram import bot_api
from supportbot.telegram.cli import poll_round


def test_set_webhook_sends_url_secret_and_allowed_updates(runner, telegram):
    result = runner.invoke(args=["bot", "set-webhook"])

    assert result.exit_code == 0, result.output
    assert "https://support.example.com/telegram/webhook" in result.output
    [call] = telegram.calls_to("setWebhook")
    assert call.params["url"] == "https://support.example.com/telegram/webhook"
    assert call.params["secret_token"] == "test-webhook-secret"
    assert set(call.params["allowed_updates"]) == {
        "message",
        "edited_message",
        "my_chat_member",
        "callback_query",
    }
    [commands] = telegram.calls_to("setMyCommands")
    assert "status" in {c["command"] for c in commands.params["commands"]}


def test_set_webhook_needs_https_public_url(make_app, telegram):
    runner = make_app(PUBLIC_URL="http://localhost:5000").test_cli_runner()

    result = runner.invoke(args=["bot", "set-webhook"])

    assert result.exit_code != 0
    assert "PUBLIC_URL" in result.output
    assert telegram.calls_to("setWebhook") == []


def test_set_webhook_reports_telegrams_refusal(runner, telegram):
    telegram.fail("setWebhook", error_code=400, description="Bad Request: bad webhook")

    result = runner.invoke(args=["bot", "set-webhook"])

    assert result.exit_code != 0
    assert "bad webhook" in result.output
    assert telegram.token not in result.output


def test_delete_webhook(runner, telegram):
    telegram.set_webhook("https://support.example.com/telegram/webhook")

    result = runner.invoke(args=["bot", "delete-webhook"])

    assert result.exit_code == 0
    assert len(telegram.calls_to("deleteWebhook")) == 1


def test_info_shows_bot_and_webhook(runner, telegram):
    telegram.set_webhook("https://support.example.com/telegram/webhook")

    result = runner.invoke(args=["bot", "info"])

    assert result.exit_code == 0, result.output
    assert "Bot: @" in result.output
    assert "https://support.example.com/telegram/webhook" in result.output


def test_commands_say_when_the_bot_is_off(make_app):
    runner = make_app(TELEGRAM_BOT_TOKEN="").test_cli_runner()

    result = runner.invoke(args=["bot", "info"])

    assert result.exit_code != 0
    assert "TELEGRAM_BOT_TOKEN is not set" in result.output


def test_poll_refuses_while_a_webhook_is_set(runner, telegram):
    telegram.set_webhook("https://support.example.com/telegram/webhook")

    result = runner.invoke(args=["bot", "poll"])

    assert result.exit_code != 0
    assert "delete-webhook" in result.output


def test_poll_round_handles_updates_like_the_webhook(app, telegram):
    user = telegram.user()
    telegram.push(user.text("polled hello"))
    telegram.push(user.text("polled again"))

    with app.app_context():
        offset = poll_round(bot_api(), None, timeout=0)
        again = poll_round(bot_api(), offset, timeout=0)

        texts = db.session.scalars(select(Message.text).order_by(Message.id)).all()
    assert texts == ["polled hello", "polled again"]
    assert again == offset


def test_failed_updates_are_listed_and_handled_again(
    app, runner, send_update, telegram, monkeypatch
):
    updates = [telegram.user().text(f"hello {n}") for n in range(2)]
    with monkeypatch.context() as patch:
        patch.setattr("supportbot.tickets.add_customer_message", broken)
        for update in updates:
            send_update(update)

    listed = runner.invoke(args=["bot", "failed"])
    unnamed = runner.invoke(args=["bot", "handle-again"])
    unknown = runner.invoke(args=["bot", "handle-again", "424242"])
    again = runner.invoke(args=["bot", "handle-again", "--all"])
    after = runner.invoke(args=["bot", "failed"])

    for update in updates:
        assert f"{update['update_id']} " in listed.output
    assert "RuntimeError: handler bug" in listed.output
    assert unnamed.exit_code == 2
    assert "No failed update has the id 424242." in unknown.output
    assert again.exit_code == 0, again.output
    assert "Handled 2 of 2 updates again." in again.output
    assert after.output.strip() == "No update failed."
    with app.app_context():
        texts = db.session.scalars(select(Message.text).order_by(Message.id)).all()
    assert texts == ["hello 0", "hello 1"]


def test_an_update_that_fails_again_is_named(app, runner, send_update, telegram):
    update = telegram.user().text("hello")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("supportbot.tickets.add_customer_message", broken)
        send_update(update)
        again = runner.invoke(args=["bot", "handle-again", str(update["update_id"])])

    assert again.exit_code == 1
    assert f"Failed again: {update['update_id']}." in again.output


def test_handle_refuses_to_run_without_handlers(runner):
    result = runner.invoke(args=["bot", "handle"])

    assert result.exit_code == 1
    assert "TELEGRAM_HANDLERS is 0" in result.output


def broken(*args, **kwargs):
    """Stand in for a service with a fault in it."""
    raise RuntimeError("handler bug")
