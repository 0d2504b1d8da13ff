"""Log records in the database, the logs and audit pages, and retention."""

import json
import logging
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from supportbot import logs
from supportbot.extensions import db, socketio
from supportbot.models import LogRecord, StaffRole, utcnow

from helpers import PASSWORD, csrf_token_of, log_in


@pytest.fixture
def logged_app(make_app, app):
    """An app that copies its log records into the database."""
    logged = make_app(LOG_TO_DATABASE=True)
    yield logged
    logging.getLogger().handlers[:] = [
        h
        for h in logging.getLogger().handlers
        if not isinstance(h, logs.DatabaseHandler)
    ]


def wait_for_records(app, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            found = db.session.scalar(select(func.count()).select_from(LogRecord))
            db.session.remove()
        if found >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{found} log records stored, wanted {count}")


def test_records_are_stored_with_ticket_staff_and_error_ids(logged_app):
    log = logging.getLogger("supportbot.test")

    log.info("plain line %s", 1)
    log.info("about a ticket", extra={"ticket_id": 42, "staff_id": 7})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it broke", extra={"error_id": "abc123"})
    logging.getLogger("somelibrary").info("library chatter is left out")

    wait_for_records(logged_app, 3)
    with logged_app.app_context():
        records = db.session.scalars(select(LogRecord).order_by(LogRecord.id)).all()
    assert [r.message for r in records] == [
        "plain line 1",
        "about a ticket",
        "it broke",
    ]
    assert (records[1].ticket_id, records[1].staff_id) == (42, 7)
    assert records[2].error_id == "abc123"
    assert "ValueError: boom" in records[2].traceback


def test_a_request_answers_at_once_while_the_writer_is_stalled(logged_app, monkeypatch):
    writer = logged_app.extensions["supportbot.logs"]
    release = threading.Event()
    original = writer.write

    def stalled(batch):
        release.wait(10)
        original(batch)

    monkeypatch.setattr(writer, "write", stalled)
    # The stalled batch takes the first record alone, the queue the next five.
    monkeypatch.setattr(logs, "LINGER", 0)
    writer.queue = __import__("queue").Queue(maxsize=5)
    client = logged_app.test_client()

    started = time.perf_counter()
    for _ in range(20):
        # Each refused request writes a WARNING line.
        assert client.post("/telegram/webhook", data="x").status_code == 403
    elapsed = time.perf_counter() - started
    release.set()

    assert elapsed < 2.0
    assert writer.dropped >= 10


def test_json_format_writes_one_json_object_a_line(make_app):
    make_app(LOG_FORMAT="json")
    [stdout] = [h for h in logging.getLogger().handlers if getattr(h, "supportbot", 0)]
    record = logging.LogRecord(
        "supportbot.test", logging.WARNING, __file__, 1, "hello %s", ("json",), None
    )
    record.ticket_id = 3

    line = stdout.format(record)
    make_app(LOG_FORMAT="text")

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "hello json"
    assert entry["level"] == "WARNING"
    assert entry["ticket_id"] == 3


def test_prune_deletes_records_older_than_the_retention(app, runner):
    with app.app_context():
        old = LogRecord(
            created_at=utcnow() - timedelta(days=20),
            level=20,
            logger="x",
            message="old",
        )
        new = LogRecord(created_at=utcnow(), level=20, logger="x", message="new")
        db.session.add_all([old, new])
        db.session.commit()

    result = runner.invoke(args=["logs", "prune"])

    assert "Deleted 1 log records older than 14 days" in result.output
    with app.app_context():
        assert db.session.scalars(select(LogRecord.message)).all() == ["new"]


def add_records(app, *rows):
    with app.app_context():
        for created_at, level, logger, message, extra in rows:
            db.session.add(
                LogRecord(
                    created_at=created_at,
                    level=level,
                    logger=logger,
                    message=message,
                    **extra,
                )
            )
        db.session.commit()


@pytest.fixture
def sample_records(app):
    """Store a handful of log records of different kinds."""
    now = utcnow()
    add_records(
        app,
        (
            now - timedelta(hours=3),
            20,
            "supportbot.tickets",
            "ticket 5 opened",
            {"ticket_id": 5},
        ),
        (now - timedelta(hours=2), 30, "supportbot.errors", "POST /x refused", {}),
        (
            now - timedelta(hours=1),
            40,
            "supportbot.errors",
            "unhandled error [error e1]",
            {"error_id": "e1", "traceback": "Traceback: KeyError"},
        ),
        (now, 20, "supportbot.outbox", "outbox 9 sent", {}),
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "",
            {"ticket 5 opened", "POST /x refused", "unhandled error", "outbox 9 sent"},
        ),
        ("level=WARNING", {"POST /x refused", "unhandled error"}),
        ("level=ERROR", {"unhandled error"}),
        ("logger=supportbot.outbox", {"outbox 9 sent"}),
        ("ticket=5", {"ticket 5 opened"}),
        ("error=e1", {"unhandled error"}),
        ("q=REFUSED", {"POST /x refused"}),
    ],
)
def test_logs_page_filters(admin_client, sample_records, query, expected):
    page = admin_client.get(f"/admin/logs?{query}").get_data(as_text=True)

    messages = {
        "ticket 5 opened",
        "POST /x refused",
        "unhandled error",
        "outbox 9 sent",
    }
    assert {m for m in messages if m in page} == expected


def test_logs_page_time_range(app, admin_client, sample_records):
    since = (utcnow() - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M")

    page = admin_client.get(f"/admin/logs?since={since}").get_data(as_text=True)

    assert "outbox 9 sent" in page
    assert "unhandled error" in page
    assert "ticket 5 opened" not in page
    assert admin_client.get("/admin/logs?since=yesterday").status_code == 400


def test_logs_page_is_newest_first_and_paginated(app, admin_client):
    now = utcnow()
    add_records(
        app,
        *[
            (now + timedelta(seconds=n), 20, "supportbot.x", f"line {n:03d}", {})
            for n in range(60)
        ],
    )

    first = admin_client.get("/admin/logs").get_data(as_text=True)
    older_link = first.split('href="/admin/logs?before=')[1].split("&")[0].split('"')[0]
    second = admin_client.get(f"/admin/logs?before={older_link}").get_data(as_text=True)

    assert first.index("line 059") < first.index("line 010")
    assert "line 009" not in first
    assert "line 009" in second
    assert "line 010" not in second


def test_log_record_detail_shows_the_traceback(app, admin_client, sample_records):
    with app.app_context():
        record_id = db.session.scalar(
            select(LogRecord.id).where(LogRecord.error_id == "e1")
        )

    page = admin_client.get(f"/admin/logs/{record_id}").get_data(as_text=True)

    assert "Traceback: KeyError" in page
    assert admin_client.get("/admin/logs/99999").status_code == 404


def test_error_id_of_a_500_is_found_on_the_logs_page(
    logged_app, make_staff, monkeypatch
):
    make_staff("Ada", role=StaffRole.ADMIN)
    client = logged_app.test_client()
    log_in(client, "ada@example.com", PASSWORD)

    def broken(*args, **kwargs):
        raise RuntimeError("kaput")

    monkeypatch.setattr("supportbot.console.queries.total_unread", broken)
    response = client.get("/console/unread", headers={"Accept": "application/json"})
    assert response.status_code == 500
    error_id = response.json["error_id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        page = client.get(f"/admin/logs?error={error_id}&level=ERROR").get_data(
            as_text=True
        )
        if "unhandled error" in page:
            break
        time.sleep(0.05)

    assert f"[error {error_id}]" in page
    detail_id = page.split('href="/admin/logs/')[1].split('"')[0]
    detail = client.get(f"/admin/logs/{detail_id}").get_data(as_text=True)
    assert "RuntimeError: kaput" in detail


def test_audit_page_shows_who_did_what(logged_app, make_staff, telegram):
    make_staff("Ada", role=StaffRole.ADMIN)
    client = logged_app.test_client()
    log_in(client, "ada@example.com", "not the password")
    log_in(client, "ada@example.com", PASSWORD)
    wait_for_records(logged_app, 3)

    page = client.get("/admin/audit").get_data(as_text=True)

    assert "failed sign-in for &#39;ada@example.com&#39;" in page
    assert "staff 1 signed in" in page
    row = page.split("staff 1 signed in")[0].rsplit("<tr", 1)[1]
    assert "Ada" in row


def test_admins_follow_new_records_live(logged_app, make_staff):
    make_staff("Ada", role=StaffRole.ADMIN)
    client = logged_app.test_client()
    log_in(client, "ada@example.com", PASSWORD)
    socket = staff_socket_for(logged_app, client)
    assert socket.emit("follow_logs", namespace="/staff", callback=True) == {"ok": True}

    logging.getLogger("supportbot.test").warning("something to watch")

    deadline = time.monotonic() + 5
    seen = []
    while time.monotonic() < deadline and not seen:
        seen = [
            record
            for event in socket.get_received("/staff")
            if event["name"] == "log_records"
            for record in event["args"][0]
            if record["message"] == "something to watch"
        ]
        time.sleep(0.05)
    assert seen and seen[0]["level_name"] == "WARNING"
    socket.disconnect("/staff")


def staff_socket_for(app, client):
    return socketio.test_client(
        app,
        namespace="/staff",
        flask_test_client=client,
        auth={"csrf_token": csrf_token_of(client)},
    )


def test_records_logged_close_together_are_stored_together(logged_app, monkeypatch):
    writer = logged_app.extensions["supportbot.logs"]
    batches = []
    original = writer.write

    def noted(batch):
        batches.append(len(batch))
        original(batch)

    monkeypatch.setattr(writer, "write", noted)
    log = logging.getLogger("supportbot.test")

    for number in range(5):
        log.info("line %s", number)
        time.sleep(0.01)
    wait_for_records(logged_app, 5)

    assert batches == [5]
