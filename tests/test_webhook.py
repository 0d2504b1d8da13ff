"""The webhook: who may post, what it accepts, and storing each update once;
handling stored updates in order, and again after a failure."""

import logging
import threading
import time

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from supportbot import events, tickets
from supportbot.errors import NotFound
from supportbot.extensions import db
from supportbot.models import Customer, Message, TelegramUpdate, Ticket, utcnow
from supportbot.telegram import inbox

from helpers import needs_postgresql

SECRET = {"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"}


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("secret", [None, "", "wrong", "test-webhook-secreT"])
def test_refuses_missing_or_wrong_secret(app, send_update, telegram, secret):
    response = send_update(telegram.user().text("hello"), secret=secret)

    assert response.status_code == 403
    assert response.json["ok"] is False
    with app.app_context():
        assert count(TelegramUpdate) == 0


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
        assert count(TelegramUpdate) == 1
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
        assert count(TelegramUpdate) == 0


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
        assert count(TelegramUpdate) == 0


def test_acknowledges_update_kinds_it_does_not_handle(app, send_update):
    response = send_update({"update_id": 50, "poll": {"id": "1"}})

    assert response.status_code == 200
    with app.app_context():
        assert db.session.get(TelegramUpdate, 50).kind == "poll"


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


def test_parallel_replays_store_one_message(app, telegram, handle_updates):
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
    handle_updates()
    with app.app_context():
        assert count(Message) == 1
        assert count(Customer) == 1


def test_first_messages_arriving_together_open_one_ticket(
    app, telegram, handle_updates
):
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
    handle_updates()
    with app.app_context():
        assert count(Ticket) == 1
        assert count(Message) == 10


def test_follow_ups_handled_together_are_written_together_and_announced_apart(
    app, client, telegram, handle_updates
):
    users = [telegram.user() for _ in range(5)]
    for user in users:
        client.post("/telegram/webhook", json=user.text("first"), headers=SECRET)
    handle_updates()
    for user in users:
        client.post("/telegram/webhook", json=user.text("again"), headers=SECRET)

    statements, announced = [], []
    with app.app_context():
        engine = db.engine

    def note(connection, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        with events.message_created.connected_to(
            lambda sender, **payload: announced.append(payload)
        ):
            assert handle_updates() == 5
    finally:
        event.remove(engine, "before_cursor_execute", note)

    if engine.dialect.name == "postgresql":
        # One batch: its messages go to the database in one statement. (SQLite
        # has them inserted one by one, still in one flush.)
        assert sum(s.startswith("INSERT INTO message ") for s in statements) == 1
    with app.app_context():
        written = db.session.execute(
            select(Message.id, Message.ticket_id).where(Message.text == "again")
        ).all()
    assert len(written) == 5
    assert sorted((p["message_id"], p["ticket_id"]) for p in announced) == sorted(
        tuple(row) for row in written
    )


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


@pytest.fixture
def fail_on(monkeypatch):
    """Make filing one text fail, as a fault in the app would."""
    real = tickets.add_customer_message

    def make(failing_text):
        def add(customer, text, **kwargs):
            if text == failing_text:
                raise RuntimeError("handler bug")
            return real(customer, text, **kwargs)

        monkeypatch.setattr(tickets, "add_customer_message", add)

    return make


def test_failed_handling_keeps_the_update_and_the_chat_goes_on(
    app, send_update, telegram, fail_on, caplog
):
    fail_on("hello")
    user = telegram.user()
    failing = user.text("hello")

    response = send_update(failing)
    send_update(user.text("still there?"))

    # Telegram is answered: the update is stored, and redelivery would not help.
    assert response.status_code == 200
    assert f"update {failing['update_id']} not handled" in caplog.text
    with app.app_context():
        stored = db.session.get(TelegramUpdate, failing["update_id"])
        assert stored.error == "RuntimeError: handler bug"
        assert stored.handled_at is not None
        assert [m.text for m in db.session.scalars(select(Message))] == ["still there?"]


def test_one_failing_update_does_not_undo_the_others_handled_with_it(
    app, client, telegram, fail_on, handle_updates
):
    fail_on("breaks")
    updates = [telegram.user().text(text) for text in ("one", "breaks", "three")]
    for update in updates:
        client.post("/telegram/webhook", json=update, headers=SECRET)

    # Taken together in one batch, then each again on its own.
    assert handle_updates() == 3

    with app.app_context():
        texts = db.session.scalars(select(Message.text).order_by(Message.id))
        assert list(texts) == ["one", "three"]
        assert [u.update_id for u in inbox.failed_updates()] == [
            updates[1]["update_id"]
        ]


def test_failed_update_is_handled_again_once_fixed(
    app, send_update, telegram, monkeypatch, handle_updates
):
    def broken(*args, **kwargs):
        raise RuntimeError("handler bug")

    with monkeypatch.context() as patch:
        patch.setattr(tickets, "add_customer_message", broken)
        update = telegram.user().text("hello")
        send_update(update)

    with app.app_context():
        assert inbox.handle_again([update["update_id"]]) == [update["update_id"]]
        db.session.commit()
    assert handle_updates() == 1

    with app.app_context():
        stored = db.session.get(TelegramUpdate, update["update_id"])
        assert stored.error is None
        assert stored.handled_at is not None
        assert count(Message) == 1
        assert inbox.failed_updates() == []


def test_handling_again_an_update_that_did_not_fail_is_refused(
    app, send_update, telegram
):
    update = telegram.user().text("hello")
    send_update(update)

    with app.app_context(), pytest.raises(NotFound, match=str(update["update_id"])):
        inbox.handle_again([update["update_id"], 999])


def test_updates_of_a_chat_are_handled_in_order_of_their_ids(
    app, client, telegram, handle_updates
):
    user = telegram.user()
    first, second = user.text("first"), user.text("second")
    # Telegram's parallel connections can deliver a later update first.
    for update in (second, first):
        client.post("/telegram/webhook", json=update, headers=SECRET)

    assert handle_updates() == 2

    with app.app_context():
        texts = db.session.scalars(select(Message.text).order_by(Message.id))
        assert list(texts) == ["first", "second"]


def test_a_handler_takes_a_chats_next_update_as_soon_as_the_earlier_is_handled(
    app, client, telegram
):
    user = telegram.user()
    for line in ("first", "second", "third"):
        client.post("/telegram/webhook", json=user.text(line), headers=SECRET)
    # One handler, and no doorbell rung after the updates were stored: only
    # looking again after each commit finds the next one before the poll.
    handler = inbox.Inbox(app, handlers=1, poll_interval=60)

    handler.start()
    try:
        with app.app_context():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                waiting = db.session.scalar(
                    select(func.count())
                    .select_from(TelegramUpdate)
                    .where(TelegramUpdate.handled_at.is_(None))
                )
                db.session.rollback()
                if not waiting:
                    break
                time.sleep(0.02)
            texts = db.session.scalars(select(Message.text).order_by(Message.id))
            assert list(texts) == ["first", "second", "third"]
    finally:
        handler.stop()


@needs_postgresql
def test_a_chat_waits_while_another_handler_holds_its_earlier_update(
    app, client, telegram
):
    first_user, second_user = telegram.user(), telegram.user()
    updates = [
        first_user.text("one"),
        first_user.text("two"),
        second_user.text("three"),
    ]
    for update in updates:
        client.post("/telegram/webhook", json=update, headers=SECRET)

    with app.app_context():
        elsewhere = Session(db.engine)
        try:
            now = {"now": utcnow()}
            held = [
                u.update_id for u in elsewhere.scalars(inbox._claim_waiting(1), now)
            ]
            taken = [
                u.update_id
                for u in db.session.scalars(inbox._claim_waiting(inbox.BATCH), now)
            ]
        finally:
            elsewhere.rollback()
            elsewhere.close()

        assert held == [updates[0]["update_id"]]
        # The first customer's second update waits; the other customer's goes.
        assert taken == [updates[2]["update_id"]]


def test_database_outage_leaves_the_update_waiting(
    app, client, telegram, monkeypatch, handle_updates
):
    update = telegram.user().text("hello")
    client.post("/telegram/webhook", json=update, headers=SECRET)

    def unavailable(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patch:
        patch.setattr(tickets, "add_customer_message", unavailable)
        with pytest.raises(OperationalError):
            handle_updates()

    with app.app_context():
        stored = db.session.get(TelegramUpdate, update["update_id"])
        assert stored.handled_at is None
        assert stored.error is None
    assert handle_updates() == 1
    with app.app_context():
        assert count(Message) == 1


def test_token_appears_in_no_log_line(app, send_update, telegram, deliver, caplog):
    caplog.set_level(logging.DEBUG)
    telegram.fail("sendMessage", error_code=500)
    telegram.drop_connection("sendMessage")

    send_update(telegram.user().text("hello"))
    deliver()

    assert caplog.records
    assert telegram.token not in caplog.text
    assert telegram.token.split(":")[1] not in caplog.text


def test_an_update_one_handler_holds_is_not_taken_by_another(app, client, telegram):
    update = telegram.user().text("only once")
    client.post("/telegram/webhook", json=update, headers=SECRET)
    with app.app_context():
        first = Session(db.engine)
    taken_by_second = []

    def second_handler():
        with app.app_context():
            try:
                taken_by_second.append(inbox.handle_next())
            finally:
                db.session.remove()

    try:
        held = first.scalars(inbox._claim_waiting(inbox.BATCH), {"now": utcnow()})
        held_ids = [stored.update_id for stored in held]
        second = threading.Thread(target=second_handler)
        second.start()
        # PostgreSQL's second handler skips the locked row; SQLite's waits
        # for the first one's transaction to end.
        time.sleep(0.3)
        first.commit()
        second.join(30)
    finally:
        first.close()

    assert held_ids == [update["update_id"]]
    assert taken_by_second == [0]
    with app.app_context():
        assert count(Message) == 0
        assert count(Customer) == 0
