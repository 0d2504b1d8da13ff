"""The outbox worker in real time: wake-ups, Telegram's rates, 429s and outages.

The overall budget is checked on the moments the throttle granted each call;
what Telegram would see, on the fake Bot API's own clock: the times its calls
arrived.
"""

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from supportbot import outbox
from supportbot.extensions import db
from supportbot.models import (
    LogRecord,
    OutboxMessage,
    OutboxStatus,
    TelegramUpdate,
    utcnow,
)

# A slot of the overall rate is taken just before each call leaves, and the
# call reaches the fake a moment later. That moment varies: a call that opens a
# new connection, on a busy two-core machine, can take a tenth of a second more.
ARRIVAL_JITTER = 0.25
# A grant is noted by the sender just after the throttle made it; on a busy
# machine another thread may run in between.
GRANT_JITTER = 0.2
# Telegram's own limit on a bot's messages in any second.
TELEGRAM_PER_SECOND = 30


@pytest.fixture
def grants():
    """Collect the moments the workers' throttles granted a call, in any order."""
    return []


@pytest.fixture
def start_worker(make_app, app, grants):
    """Start outbox workers, each on an app of its own; stop them after the test."""
    workers = []

    def start(poll_interval=5.0, **config):
        worker_app = make_app(**config)
        _note_grants(outbox.outbox_of(worker_app).throttle, grants)
        api = worker_app.extensions["supportbot.telegram"]
        worker = outbox.Worker(worker_app, api, poll_interval)
        worker.start()
        workers.append(worker)
        return worker

    yield start

    for worker in workers:
        worker.stop()


def _note_grants(throttle, grants):
    """Make ``throttle`` note in ``grants`` when it lets a call go."""
    reserve = throttle.reserve

    def noting_reserve():
        verdict = reserve()
        if verdict.granted:
            grants.append(time.monotonic())
        return verdict

    throttle.reserve = noting_reserve


def queue_many(app, messages):
    """Queue (chat_id, text) pairs in one transaction, as a burst of replies."""
    with app.app_context():
        for chat_id, text in messages:
            outbox.enqueue(chat_id, "sendMessage", {"text": text})
        db.session.commit()


def arrivals(telegram, chat_id=None):
    """Return when each accepted sendMessage reached the fake, oldest first."""
    return [
        call.at
        for call in telegram.calls_to("sendMessage")
        if call.status == 200 and (chat_id is None or call.chat_id == chat_id)
    ]


def busiest_window(times, seconds):
    """Return the most calls that arrived within any span of ``seconds``."""
    most = 0
    for index, start in enumerate(times):
        within = [t for t in times[index:] if t < start + seconds]
        most = max(most, len(within))
    return most


def wait_until_all_sent(app, timeout=10.0):
    """Wait until every outbox row is recorded as sent; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            statuses = set(db.session.scalars(select(OutboxMessage.status)))
        if statuses == {OutboxStatus.SENT} or time.monotonic() > deadline:
            return statuses
        # Telegram has answered; the worker records the answer a moment later.
        time.sleep(0.05)


def accepted_texts(telegram):
    """Return the texts Telegram accepted, per chat, in the order they arrived."""
    accepted = {}
    for call in telegram.calls_to("sendMessage"):
        if call.status == 200:
            accepted.setdefault(call.chat_id, []).append(call.params["text"])
    return accepted


def test_a_committed_reply_leaves_within_tens_of_milliseconds(start_worker, telegram):
    worker_app = start_worker(poll_interval=30).app
    # Let the senders find the queue empty and fall asleep.
    time.sleep(0.3)

    committed = time.monotonic()
    queue_many(worker_app, [(1, "quick")])
    [call] = telegram.wait_for("sendMessage", timeout=5)

    assert call.at - committed < 0.25


def test_a_commit_in_another_process_wakes_the_worker(
    start_worker, make_app, telegram, database_uri, request
):
    config = {}
    if not database_uri.startswith("postgresql"):
        # Without PostgreSQL's NOTIFY, Redis carries the news.
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
    start_worker(poll_interval=30, **config)
    elsewhere = make_app(**config)
    time.sleep(0.5)

    committed = time.monotonic()
    queue_many(elsewhere, [(1, "from the web process")])
    [call] = telegram.wait_for("sendMessage", timeout=5)

    assert call.at - committed < 0.5


def test_default_overall_rate_holds_and_allows_a_full_second_at_once(
    start_worker, app, telegram, grants
):
    queue_many(app, [(chat, f"to chat {chat}") for chat in range(1, 61)])

    start_worker()
    telegram.wait_for("sendMessage", count=60, timeout=15)

    times = sorted(arrivals(telegram))
    assert len(times) == 60
    assert busiest_window(sorted(grants), 1.0 - GRANT_JITTER) <= 25
    # A late call arriving with the next second's must not take Telegram over.
    assert busiest_window(times, 1.0) <= TELEGRAM_PER_SECOND
    # Sixty calls take into the third second, and not much more.
    assert 2.0 - ARRIVAL_JITTER <= times[-1] - times[0] < 3.5


def test_default_private_chat_rate_allows_a_short_burst_then_one_a_second(
    start_worker, app, telegram
):
    queue_many(app, [(7, f"line {n}") for n in range(1, 7)])

    start_worker()
    telegram.wait_for("sendMessage", count=6, timeout=15)

    times = arrivals(telegram, 7)
    assert times[2] - times[0] < 0.5
    assert busiest_window(times, 3.0) <= 3
    assert times[-1] - times[0] < 4.5


def test_default_group_rate_spaces_messages_three_seconds_apart(
    start_worker, app, telegram
):
    group = telegram.group()
    queue_many(app, [(group.id, f"notice {n}") for n in range(1, 4)])

    start_worker()
    telegram.wait_for("sendMessage", count=3, timeout=15)

    times = arrivals(telegram, group.id)
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # Twenty a minute, and never more in any minute.
    assert min(gaps) >= 3.0
    assert times[-1] - times[0] < 7.5


def test_nothing_goes_to_a_rate_limited_chat_before_retry_after(
    start_worker, app, telegram
):
    telegram.fail("sendMessage", error_code=429, retry_after=2, chat_id=1)
    queue_many(app, [(1, "first"), (1, "second"), (2, "meanwhile")])

    start_worker()
    telegram.wait_for("sendMessage", count=4, timeout=10)

    to_chat_one = [c for c in telegram.calls_to("sendMessage") if c.chat_id == 1]
    limited, *after = to_chat_one
    assert limited.status == 429
    assert [c.params["text"] for c in after] == ["first", "second"]
    assert after[0].at - limited.at >= 2.0
    [other] = [c for c in telegram.calls_to("sendMessage") if c.chat_id == 2]
    assert other.at < after[0].at


def test_rate_limits_on_two_chats_at_once_pause_every_chat(start_worker, app, telegram):
    telegram.fail("sendMessage", error_code=429, retry_after=2, times=2)
    queue_many(app, [(1, "one"), (2, "two"), (3, "three")])

    # One sender, so that the calls go one after another.
    start_worker(OUTBOX_SENDERS=1)
    telegram.wait_for("sendMessage", count=5, timeout=10)

    calls = telegram.calls_to("sendMessage")
    first_limit, second_limit = calls[0], calls[1]
    assert (first_limit.status, second_limit.status) == (429, 429)
    later = calls[2:]
    assert sorted(c.params["text"] for c in later) == ["one", "three", "two"]
    assert min(c.at for c in later) - second_limit.at >= 2.0


def test_a_minute_of_outage_loses_reorders_and_repeats_nothing(
    start_worker, app, telegram
):
    # Rates well above the defaults: this test is about the outage, and the
    # defaults would add forty seconds of draining for no new knowledge.
    start_worker(
        OUTBOX_RATE="500/1",
        OUTBOX_RATE_PRIVATE="100/1",
        OUTBOX_BACKOFF_MAX=2,
        TELEGRAM_TIMEOUT=1,
    )
    telegram.fail("sendMessage", error_code=502, times=None)
    replies = [
        (chat, f"reply {n} to {chat}") for n in range(20) for chat in range(1, 51)
    ]
    queue_many(app, replies)

    time.sleep(20)
    # Then Telegram answers too late: the calls time out.
    telegram.delay(1.5, "sendMessage")
    time.sleep(20)
    # Then connections break. Calls still waiting from before answer 502.
    telegram.drop_connection("sendMessage", times=None)
    time.sleep(20)
    telegram.clear_failures()

    telegram.wait_for(
        "sendMessage", count=1000, timeout=90, where=lambda call: call.status == 200
    )

    expected = {}
    for chat, text in replies:
        expected.setdefault(chat, []).append(text)
    assert accepted_texts(telegram) == expected
    assert wait_until_all_sent(app) == {OutboxStatus.SENT}


def test_workers_sharing_redis_share_the_overall_rate(
    start_worker, app, telegram, redis_url, grants
):
    queue_many(app, [(chat, f"to chat {chat}") for chat in range(1, 41)])

    for _ in range(2):
        start_worker(REDIS_URL=redis_url, OUTBOX_RATE="10/1", OUTBOX_SENDERS=4)
    telegram.wait_for("sendMessage", count=40, timeout=15)

    times = sorted(arrivals(telegram))
    # Every call took a grant; one sent again after a lost connection, another.
    assert len(grants) >= 40
    assert busiest_window(sorted(grants), 1.0 - GRANT_JITTER) <= 10
    assert times[-1] - times[0] >= 3.0 - ARRIVAL_JITTER


def test_a_bot_wide_pause_reaches_workers_sharing_redis(
    start_worker, app, telegram, redis_url
):
    telegram.fail("sendMessage", error_code=429, retry_after=2, times=2)
    queue_many(app, [(1, "one"), (2, "two")])
    first = start_worker(REDIS_URL=redis_url, OUTBOX_SENDERS=1)
    telegram.wait_for("sendMessage", count=2, timeout=5)
    first.stop()

    queue_many(app, [(3, "three")])
    start_worker(REDIS_URL=redis_url, OUTBOX_SENDERS=1)
    telegram.wait_for("sendMessage", count=5, timeout=10)

    calls = telegram.calls_to("sendMessage")
    second_limit, later = calls[1], calls[2:]
    assert sorted(c.params["text"] for c in later) == ["one", "three", "two"]
    assert min(c.at for c in later) - second_limit.at >= 2.0


def test_the_worker_deletes_records_and_handled_updates_past_their_retention(
    start_worker, app
):
    with app.app_context():
        for age in (20, 13):
            moment = utcnow() - timedelta(days=age)
            db.session.add(
                LogRecord(
                    created_at=moment,
                    level=20,
                    logger="supportbot.test",
                    message=f"{age} days old",
                )
            )
            db.session.add(
                TelegramUpdate(
                    update_id=age, kind="message", received_at=moment, handled_at=moment
                )
            )
        # A failed update stays until it is handled, however old.
        db.session.add(
            TelegramUpdate(
                update_id=30,
                kind="message",
                received_at=utcnow() - timedelta(days=30),
                handled_at=utcnow() - timedelta(days=30),
                error="RuntimeError: handler bug",
            )
        )
        db.session.commit()

    start_worker(LOG_RETENTION_DAYS=14)

    def kept():
        with app.app_context():
            records = db.session.scalars(
                select(LogRecord.message).where(LogRecord.logger == "supportbot.test")
            )
            updates = db.session.scalars(select(TelegramUpdate.update_id))
            return set(records), set(updates)

    deadline = time.monotonic() + 5
    while kept() != ({"13 days old"}, {13, 30}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kept() == ({"13 days old"}, {13, 30})
