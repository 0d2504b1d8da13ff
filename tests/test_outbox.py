"""Delivering the outbox to the Bot API: order, outcomes, retries and resends."""

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from supportbot import outbox
from supportbot.config import ConfigError
from supportbot.errors import Conflict, NotFound
from supportbot.extensions import db
from supportbot.models import (
    Customer,
    Message,
    MessageKind,
    OutboxMessage,
    OutboxStatus,
    Ticket,
    utcnow,
)


def queue(app, chat_id, *texts):
    """Queue one sendMessage per text for ``chat_id``; return the rows' ids."""
    with app.app_context():
        rows = [outbox.enqueue(chat_id, "sendMessage", {"text": t}) for t in texts]
        db.session.commit()
        return [row.id for row in rows]


def row(app, row_id) -> OutboxMessage:
    """Load an outbox row, detached from any session."""
    with app.app_context():
        found = db.session.get(OutboxMessage, row_id)
        db.session.expunge(found)
        return found


def make_due(app):
    """Pretend every backoff, pause and lease has run out."""
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
        db.session.commit()


def add_customer(app, customer_id, blocked=False):
    """Store a customer, who may have blocked the bot."""
    with app.app_context():
        db.session.add(
            Customer(
                id=customer_id,
                first_name="Ada",
                blocked_at=utcnow() if blocked else None,
            )
        )
        db.session.commit()


def texts_by_chat(telegram):
    """Return the texts Telegram accepted, per chat, in the order they arrived."""
    by_chat = {}
    for call in telegram.calls_to("sendMessage"):
        if call.status == 200:
            by_chat.setdefault(call.chat_id, []).append(call.params["text"])
    return by_chat


def sample(name, **labels):
    """Return a metric's current value, or 0 when it has none yet."""
    return REGISTRY.get_sample_value(name, labels) or 0


@pytest.fixture
def changes(app):
    """Record every delivery_changed the app sends, as (row id, status) pairs."""
    seen = []

    def record(sender, **state):
        seen.append((state["id"], state["status"]))

    with outbox.delivery_changed.connected_to(record, sender=app):
        yield seen


def test_sends_in_creation_order_per_chat(app, telegram, deliver):
    queue(app, 1, "a1", "a2")
    queue(app, 2, "b1")
    queue(app, 1, "a3")

    assert deliver() == 4

    assert texts_by_chat(telegram) == {1: ["a1", "a2", "a3"], 2: ["b1"]}


def test_sent_row_records_telegram_message_id(app, telegram, deliver):
    [row_id] = queue(app, 5, "hello")

    deliver()

    sent = row(app, row_id)
    assert sent.status is OutboxStatus.SENT
    assert sent.telegram_message_id
    assert sent.sent_at is not None


def test_sent_reply_records_where_it_lives_in_telegram(app, telegram, deliver):
    add_customer(app, 8)
    with app.app_context():
        ticket = Ticket(customer_id=8)
        reply = Message(ticket=ticket, kind=MessageKind.REPLY, text="On it")
        db.session.add_all([ticket, reply])
        outbox.enqueue(8, "sendMessage", {"text": "On it"}, message=reply)
        db.session.commit()
        reply_id = reply.id

    deliver()

    with app.app_context():
        reply = db.session.get(Message, reply_id)
        [sent] = telegram.sent_messages(8)
        assert reply.telegram_message_id == sent["message_id"]
        assert reply.telegram_chat_id == 8


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
    assert texts_by_chat(telegram)[1] == ["one", "two"]


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


def test_backoff_grows_with_each_attempt_up_to_its_ceiling(make_app, app, telegram):
    capped = make_app(OUTBOX_BACKOFF_MAX=8)
    telegram.fail("sendMessage", error_code=500, times=None)
    [row_id] = queue(capped, 1, "hello")

    waits = []
    for _ in range(6):
        with capped.app_context():
            outbox.deliver_due(capped.extensions["supportbot.telegram"])
        waited = row(capped, row_id)
        waits.append((waited.next_attempt_at - utcnow()).total_seconds())
        make_due(capped)

    # Doubling from one second, with jitter between half and all of it.
    for attempt, wait in enumerate(waits, start=1):
        ceiling = min(2 ** (attempt - 1), 8)
        assert ceiling * 0.5 - 0.5 <= wait <= ceiling


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
    add_customer(app, 77)
    telegram.block(77)
    first, second = queue(app, 77, "are you there?", "hello?")

    deliver()
    make_due(app)
    deliver()

    failed = row(app, first)
    assert failed.status is OutboxStatus.FAILED
    assert failed.error == "403 Forbidden: bot was blocked by the user"
    # Once Telegram said so, nothing more is tried on that chat.
    assert row(app, second).status is OutboxStatus.FAILED
    assert "blocked the bot" in row(app, second).error
    assert len(telegram.calls_to("sendMessage")) == 1
    with app.app_context():
        assert db.session.get(Customer, 77).blocked_at is not None


def test_customer_who_writes_again_is_reachable_again(
    app, telegram, send_update, deliver
):
    user = telegram.user()
    send_update(user.text("hello"))
    send_update(user.blocks_bot())
    [early] = queue(app, user.id, "while blocked")
    deliver()

    send_update(user.unblocks_bot())
    send_update(user.text("I am back"))
    deliver()

    assert row(app, early).status is OutboxStatus.FAILED
    assert telegram.calls_to("sendMessage") == []
    [reaction] = telegram.calls_to("setMessageReaction")
    assert reaction.status == 200


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


def test_row_of_a_crashed_worker_waits_for_its_lease_to_end(app, telegram, deliver):
    [row_id] = queue(app, 1, "orphan")
    [later_id] = queue(app, 1, "after the orphan")
    with app.app_context():
        # What a worker that died mid-send leaves behind.
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row_id)
            .values(
                status=OutboxStatus.SENDING,
                attempts=1,
                next_attempt_at=utcnow() + timedelta(seconds=60),
            )
        )
        db.session.commit()

    assert deliver() == 0
    with app.app_context():
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row_id)
            .values(next_attempt_at=utcnow())
        )
        db.session.commit()
    assert deliver() == 2

    assert row(app, row_id).status is OutboxStatus.SENT
    assert row(app, later_id).status is OutboxStatus.SENT
    assert texts_by_chat(telegram) == {1: ["orphan", "after the orphan"]}


def test_private_chat_beyond_its_rate_waits_for_the_window(make_app, app, telegram):
    paced = make_app(OUTBOX_RATE_PRIVATE="2/60")
    ids = queue(paced, 4, "one", "two", "three")

    with paced.app_context():
        assert outbox.deliver_due(paced.extensions["supportbot.telegram"]) == 2

    held = row(paced, ids[2])
    first_sent = row(paced, ids[0]).sent_at
    assert held.status is OutboxStatus.QUEUED
    assert held.next_attempt_at == first_sent + timedelta(seconds=60)


def test_group_chats_have_their_own_rate(make_app, app, telegram):
    paced = make_app(OUTBOX_RATE_PRIVATE="5/1", OUTBOX_RATE_GROUP="1/60")
    queue(paced, -100, "group one", "group two")
    queue(paced, 4, "private one", "private two")

    with paced.app_context():
        outbox.deliver_due(paced.extensions["supportbot.telegram"])

    assert texts_by_chat(telegram) == {
        -100: ["group one"],
        4: ["private one", "private two"],
    }


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("OUTBOX_RATE", "fast"),
        ("OUTBOX_RATE_PRIVATE", "0/1"),
        ("OUTBOX_RATE_GROUP", "20/0"),
        ("OUTBOX_LEASE", 2),
        ("OUTBOX_SENDERS", 0),
    ],
)
def test_bad_outbox_settings_stop_the_app_naming_the_variable(make_app, setting, value):
    with pytest.raises(ConfigError, match=setting):
        make_app(**{setting: value})


def test_resend_queues_a_failed_row_again(app, telegram, deliver):
    telegram.fail("sendMessage", error_code=400, times=1)
    [row_id] = queue(app, 1, "try me again")
    deliver()
    assert row(app, row_id).status is OutboxStatus.FAILED

    with app.app_context():
        outbox.resend(row_id)
        db.session.commit()
    deliver()

    again = row(app, row_id)
    assert again.status is OutboxStatus.SENT
    assert again.error is None
    assert texts_by_chat(telegram) == {1: ["try me again"]}


def test_resend_goes_before_what_the_chat_queued_since(app, telegram, deliver):
    [first_id] = queue(app, 1, "first")
    with app.app_context():
        db.session.execute(
            update(OutboxMessage).values(
                status=OutboxStatus.FAILED, error="500 Internal Server Error"
            )
        )
        db.session.commit()
    queue(app, 1, "second")

    with app.app_context():
        outbox.resend(first_id)
        db.session.commit()
    deliver()

    assert texts_by_chat(telegram) == {1: ["first", "second"]}


def test_resend_refuses_unknown_and_unfailed_rows(app, telegram):
    [row_id] = queue(app, 1, "queued")

    with app.app_context():
        with pytest.raises(NotFound):
            outbox.resend(row_id + 1000)
        with pytest.raises(Conflict, match="queued"):
            outbox.resend(row_id)


def test_resend_refuses_while_the_customer_blocks_the_bot(app, telegram, deliver):
    add_customer(app, 9, blocked=True)
    [row_id] = queue(app, 9, "hello")
    deliver()

    with app.app_context():
        with pytest.raises(Conflict, match="blocked the bot"):
            outbox.resend(row_id)


def test_failed_and_stuck_lists_what_needs_attention(app, telegram, deliver):
    telegram.fail("sendMessage", error_code=400, times=2)
    failed_ids = queue(app, 1, "bad one", "bad two")
    deliver()
    [stuck_id] = queue(app, 2, "waiting for ages")
    [fresh_id] = queue(app, 3, "just queued")
    with app.app_context():
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == stuck_id)
            .values(
                queued_at=utcnow() - timedelta(minutes=30),
                next_attempt_at=utcnow() + timedelta(minutes=5),
                error="502 Bad Gateway",
            )
        )
        db.session.commit()

        problems = outbox.failed_and_stuck()

        assert [r.id for r in problems.failed] == failed_ids[::-1]
        assert [r.id for r in problems.stuck] == [stuck_id]
        assert problems.stuck[0].error == "502 Bad Gateway"
        assert fresh_id not in [r.id for r in problems.failed + problems.stuck]


def test_delivery_changes_are_announced_after_commit(app, telegram, deliver, changes):
    with app.app_context():
        outbox.enqueue(1, "sendMessage", {"text": "rolled back"})
        db.session.rollback()
    assert changes == []

    [row_id] = queue(app, 1, "hello")
    assert changes == [(row_id, OutboxStatus.QUEUED)]

    deliver()
    assert changes[1:] == [(row_id, OutboxStatus.SENDING), (row_id, OutboxStatus.SENT)]


def test_announcement_tells_the_outcome_in_full(app, telegram, deliver):
    telegram.fail("sendMessage", error_code=400, description="Bad Request: nope")
    [row_id] = queue(app, 6, "hello")
    states = []

    def record(sender, **state):
        states.append(state)

    with outbox.delivery_changed.connected_to(record, sender=app):
        deliver()

    assert states[-1] == {
        "id": row_id,
        "chat_id": 6,
        "message_id": None,
        "ticket_id": None,
        "status": OutboxStatus.FAILED,
        "error": "400 Bad Request: nope",
        "telegram_message_id": None,
        "part": 1,
        "parts": 1,
    }


def test_a_failing_listener_stops_no_delivery(app, telegram, deliver):
    def broken(sender, **state):
        raise RuntimeError("listener bug")

    [row_id] = queue(app, 1, "hello")
    with outbox.delivery_changed.connected_to(broken, sender=app):
        deliver()

    assert row(app, row_id).status is OutboxStatus.SENT


def test_metrics_count_sends_and_failures_by_reason(app, telegram, deliver):
    sent = sample("supportbot_outbox_sent_total")
    server_errors = sample("supportbot_outbox_errors_total", reason="server_error")
    bad_requests = sample(
        "supportbot_outbox_failed_messages_total", reason="bad_request"
    )
    telegram.fail("sendMessage", error_code=502, chat_id=1)
    telegram.fail("sendMessage", error_code=400, chat_id=2)
    queue(app, 1, "retried")
    queue(app, 2, "refused")
    queue(app, 3, "fine")

    deliver()

    assert sample("supportbot_outbox_sent_total") == sent + 1
    assert (
        sample("supportbot_outbox_errors_total", reason="server_error")
        == server_errors + 1
    )
    assert (
        sample("supportbot_outbox_failed_messages_total", reason="bad_request")
        == bad_requests + 1
    )


def test_dev_worker_starts_with_the_first_request_and_sends_at_once(
    make_app, app, telegram
):
    threaded = make_app(OUTBOX_WORKER="thread")
    worker = threaded.extensions["supportbot.outbox"]
    try:
        queue(threaded, 3, "left from before")
        with pytest.raises(AssertionError):
            telegram.wait_for("sendMessage", timeout=0.5)

        threaded.test_client().get("/telegram/webhook")
        telegram.wait_for("sendMessage", timeout=5)
        queue(threaded, 3, "right away")
        telegram.wait_for("sendMessage", count=2, timeout=5)
    finally:
        worker.stop()

    with threaded.app_context():
        statuses = db.session.scalars(select(OutboxMessage.status)).all()
    assert statuses == [OutboxStatus.SENT, OutboxStatus.SENT]
