"""The webhook: who may post, what it accepts, and storing each update once."""

import logging
import threading

import pytest
from sqlalchemy import func, select

from supportbot.extensions import db
from supportbot.models import Customer, Message, ProcessedUpdate, Ticket


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("secret", [None, "", "wrong", "test-webhook-secreT"])
def test_refuses_missing_or_wrong_secret(app, send_update, telegram, secret):
    response = send_update(telegram.user().text("hello"), secret=secret)

    assert response.status_code == 403
    assert response.json["ok"] is False
    with app.app_context():
        assert count(ProcessedUpdate) == 0


def test_refuses_everything_when_no_secret_is_configured(make_app, telegram):
    app = make_app(TELEGRAM_WEBHOOK_SECRET="")

    response = app.test_client().post(
        "/telegram/webhook", json=telegram.user().text("hi"), headers={}
    )

    assert response.status_code == 403
    assert "TELEGRAM_WEBHOOK_SECRET" in response.json["error"]


def test_stores_update_with_right_secret(app, send_update, telegram):
    response = send_update(telegram.user().text("hello"))

    assert response.status_code == 200
    assert response.json == {"ok": True, "duplicate": False}
    with app.app_context():
        assert count(ProcessedUpdate) == 1
        assert count(Message) == 1


def test_refuses_non_json_body(client, caplog):
    response = client.post(
        "/telegram/webhook",
        data="update_id=1",
        content_type="application/x-www-form-urlencoded",
        headers={"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"},
    )

    assert response.status_code == 415
    assert response.json["ok"] is False
    assert "refused with 415" in caplog.text


@pytest.mark.parametrize("body", ["{", "", "[1, 2", "\xff"])
def test_refuses_invalid_json(client, body):
    response = client.post(
        "/telegram/webhook",
        data=body,
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"},
    )

    assert response.status_code == 400
    assert response.json["ok"] is False


def test_refuses_oversized_body(app, send_update, telegram, caplog):
    update = telegram.user().text("x" * (300 * 1024))

    response = send_update(update)

    assert response.status_code == 413
    assert "refused with 413" in caplog.text
    with app.app_context():
        assert count(ProcessedUpdate) == 0


@pytest.mark.parametrize(
    "update",
    [
        [],
        {"message": {}},
        {"update_id": "7"},
        {"update_id": -1},
        {"update_id": 2**64},
        {"update_id": True},
        {"update_id": 8, "message": 5},
        {"update_id": 9, "message": {"message_id": 1}},
        {"update_id": 10, "message": {"message_id": 1, "date": 0, "chat": {"id": 1}}},
        {
            "update_id": 11,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 1, "type": "private"},
                "from": {"id": 1, "is_bot": False, "first_name": "A"},
                "text": 5,
            },
        },
    ],
)
def test_refuses_malformed_update(app, send_update, update):
    response = send_update(update)

    assert response.status_code == 400
    assert response.json["ok"] is False
    with app.app_context():
        assert count(ProcessedUpdate) == 0


def test_acknowledges_update_kinds_it_does_not_handle(app, send_update):
    response = send_update({"update_id": 50, "poll": {"id": "1"}})

    assert response.status_code == 200
    with app.app_context():
        assert db.session.get(ProcessedUpdate, 50).kind == "poll"


def test_replayed_update_is_processed_once(app, send_update, telegram, deliver):
    update = telegram.user().text("my order is late")

    first = send_update(update)
    second = send_update(update)

    assert first.json["duplicate"] is False
    assert second.status_code == 200
    assert second.json["duplicate"] is True
    with app.app_context():
        assert count(Message) == 1
        assert count(Ticket) == 1
    deliver()
    assert len(telegram.calls_to("sendMessage")) == 1


def test_parallel_replays_store_one_message(app, telegram):
    update = telegram.user().text("sent a hundred times")
    statuses = []
    start = threading.Barrier(20)

    def replay(times):
        client = app.test_client()
        start.wait()
        for _ in range(times):
            response = client.post(
                "/telegram/webhook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"},
            )
            statuses.append((response.status_code, response.json["duplicate"]))

    threads = [threading.Thread(target=replay, args=(5,)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(statuses) == 100
    assert {status for status, _ in statuses} == {200}
    assert sum(not duplicate for _, duplicate in statuses) == 1
    with app.app_context():
        assert count(Message) == 1
        assert count(Customer) == 1


def test_first_messages_arriving_together_open_one_ticket(app, telegram):
    user = telegram.user()
    updates = [user.text(f"line {n}") for n in range(10)]
    start = threading.Barrier(len(updates))
    statuses = []

    def post(update):
        client = app.test_client()
        start.wait()
        response = client.post(
            "/telegram/webhook",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=post, args=(u,)) for u in updates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 10
    with app.app_context():
        assert count(Ticket) == 1
        assert count(Message) == 10


def test_answers_503_when_update_cannot_be_stored(make_app, telegram):
    app = make_app(
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://nobody@127.0.0.1:1/none",
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 1}},
    )

    response = app.test_client().post(
        "/telegram/webhook",
        json=telegram.user().text("hello"),
        headers={"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"},
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json["error_id"]


def test_failed_handling_stores_nothing_and_answers_500(
    app, send_update, telegram, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("handler bug")

    monkeypatch.setattr("supportbot.tickets.add_customer_message", broken)
    update = telegram.user().text("hello")

    response = send_update(update)

    assert response.status_code == 500
    assert response.json["error_id"]
    with app.app_context():
        # Not marked as processed: Telegram's redelivery gets another chance.
        assert count(ProcessedUpdate) == 0
        assert count(Customer) == 0


def test_token_appears_in_no_log_line(app, send_update, telegram, deliver, caplog):
    caplog.set_level(logging.DEBUG)
    telegram.fail("sendMessage", error_code=500)
    telegram.drop_connection("sendMessage")

    send_update(telegram.user().text("hello"))
    deliver()

    assert caplog.records
    assert telegram.token not in caplog.text
    assert telegram.token.split(":")[1] not in caplog.text
