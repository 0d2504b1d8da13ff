"""Delivering the outbox to the Bot API: order, outcomes and retries."""

from datetime import timedelta

from sqlalchemy import select, update

from supportbot import outbox
from supportbot.extensions import db
from supportbot.models import Customer, OutboxMessage, OutboxStatus, utcnow


def queue(app, chat_id, *texts):
    with app.app_context():
        rows = [outbox.enqueue(chat_id, "sendMessage", {"text": t}) for t in texts]
        db.session.commit()
        return [row.id for row in rows]


def row(app, row_id) -> OutboxMessage:
    with app.app_context():
        found = db.session.get(OutboxMessage, row_id)
        db.session.expunge(found)
        return found


def make_due(app):
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
        db.session.commit()


def test_sends_in_creation_order_per_chat(app, telegram, deliver):
    queue(app, 1, "a1", "a2")
    queue(app, 2, "b1")
    queue(app, 1, "a3")

    assert deliver() == 4

    by_chat = {}
    for call in telegram.calls_to("sendMessage"):
        by_chat.setdefault(call.chat_id, []).append(call.params["text"])
    assert by_chat == {1: ["a1", "a2", "a3"], 2: ["b1"]}


def test_sent_row_records_telegram_message_id(app, telegram, deliver):
    [row_id] = queue(app, 5, "hello")

    deliver()

    sent = row(app, row_id)
    assert sent.status is OutboxStatus.SENT
    assert sent.telegram_message_id
    assert sent.sent_at is not None


def test_rate_limited_chat_waits_retry_after_and_others_go_on(app, telegram, deliver):
    telegram.fail("sendMessage", error_code=429, retry_after=30, chat_id=1)
    first, second = queue(app, 1, "one", "two")
    queue(app, 2, "other chat")

    deliver()

    waiting = row(app, first)
    assert waiting.status is OutboxStatus.QUEUED
    assert waiting.next_attempt_at - utcnow() > timedelta(seconds=25)
    assert row(app, second).status is OutboxStatus.QUEUED
    assert [c.params["text"] for c in telegram.calls_to("sendMessage")] == [
        "one",
        "other chat",
    ]

    deliver()
    assert len(telegram.calls_to("sendMessage")) == 2

    make_due(app)
    deliver()
    texts = [c.params["text"] for c in telegram.calls_to("sendMessage")]
    assert texts[-2:] == ["one", "two"]


def test_server_error_is_retried_with_backoff(app, telegram, deliver):
    telegram.fail("sendMessage", error_code=502)
    [row_id] = queue(app, 1, "hello")

    deliver()

    retry = row(app, row_id)
    assert retry.status is OutboxStatus.QUEUED
    assert retry.attempts == 1
    assert "502" in retry.error
    assert retry.next_attempt_at > utcnow()

    make_due(app)
    deliver()
    assert row(app, row_id).status is OutboxStatus.SENT


def test_network_error_is_retried(app, telegram, deliver):
    telegram.drop_connection("sendMessage")
    [row_id] = queue(app, 1, "hello")

    deliver()

    assert row(app, row_id).status is OutboxStatus.QUEUED
    make_due(app)
    deliver()
    assert row(app, row_id).status is OutboxStatus.SENT


def test_retries_stop_at_the_deadline(make_app, app, telegram):
    late_app = make_app(OUTBOX_RETRY_DEADLINE=0)
    telegram.fail("sendMessage", error_code=500)
    [row_id] = queue(late_app, 1, "hello")

    with late_app.app_context():
        outbox.deliver_due(late_app.extensions["supportbot.telegram"])

    failed = row(late_app, row_id)
    assert failed.status is OutboxStatus.FAILED
    assert "500" in failed.error


def test_blocked_customer_fails_without_retry_and_is_marked(app, telegram, deliver):
    with app.app_context():
        db.session.add(Customer(id=77, first_name="Blocker"))
        db.session.commit()
    telegram.block(77)
    [row_id] = queue(app, 77, "are you there?")

    deliver()
    deliver()

    failed = row(app, row_id)
    assert failed.status is OutboxStatus.FAILED
    assert "blocked" in failed.error
    assert len(telegram.calls_to("sendMessage")) == 1
    with app.app_context():
        assert db.session.get(Customer, 77).blocked_at is not None


def test_bad_request_fails_with_telegrams_description(app, telegram, deliver):
    telegram.fail(
        "sendMessage", error_code=400, description="Bad Request: chat not found"
    )
    [row_id] = queue(app, 1, "hello")

    deliver()

    failed = row(app, row_id)
    assert failed.status is OutboxStatus.FAILED
    assert failed.error == "400 Bad Request: chat not found"


def test_a_failed_row_does_not_hold_up_its_chat(app, telegram, deliver):
    telegram.fail("sendMessage", error_code=400, times=1)
    queue(app, 1, "bad", "good")

    deliver()

    assert [c.params["text"] for c in telegram.calls_to("sendMessage")] == [
        "bad",
        "good",
    ]


def test_claimed_row_is_not_sent_twice(app, telegram, deliver):
    [row_id] = queue(app, 1, "once")
    with app.app_context():
        assert outbox._claim(row_id) is not None
        assert outbox._claim(row_id) is None


def test_row_of_a_crashed_worker_is_taken_over_when_the_lease_ends(
    app, telegram, deliver
):
    [row_id] = queue(app, 1, "orphan")
    with app.app_context():
        outbox._claim(row_id)

    assert deliver() == 0
    make_due(app)
    assert deliver() == 1
    assert row(app, row_id).status is OutboxStatus.SENT


def test_worker_thread_delivers_after_commit(make_app, app, telegram):
    threaded = make_app(OUTBOX_WORKER="thread")
    worker = threaded.extensions["supportbot.outbox"]
    try:
        queue(threaded, 3, "right away")
        telegram.wait_for("sendMessage", timeout=5)
    finally:
        worker.stop()

    with threaded.app_context():
        statuses = db.session.scalars(select(OutboxMessage.status)).all()
    assert statuses == [OutboxStatus.SENT]
