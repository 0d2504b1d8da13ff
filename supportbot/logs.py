"""Logging: one line a record on standard output, and a copy in the database.

Requests never wait on the database for a log line: records go into a bounded
queue that a background thread writes in batches, at most a fifth of a second
after they were logged. When the queue is full the record is dropped and
counted, and the request goes on.
"""

import json
import logging
import queue
import sys
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta

import click
from flask import Flask, current_app, has_request_context, request
from flask.cli import AppGroup
from sqlalchemy import delete, insert
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db
from .models import LogRecord, utcnow

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
BATCH_SIZE = 200
# How long the writer waits for more records to store with the first.
LINGER = 0.2
# Attributes that code may pass in ``extra=`` to be stored with the record.
STORED_EXTRAS = ("ticket_id", "staff_id", "error_id")

logger = logging.getLogger(__name__)

logs_cli = AppGroup("logs", help="Look after the log records kept in the database.")


class JSONFormatter(logging.Formatter):
    """Format a record as one line of JSON, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in STORED_EXTRAS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class DatabaseHandler(logging.Handler):
    """Queue records for the database writer; drop them when the queue is full."""

    def __init__(self, writer: "DatabaseWriter", level=logging.INFO):
        super().__init__(level)
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        # The writer's own complaints would feed back into the queue.
        if record.name == __name__:
            return
        try:
            row = self._row(record)
        except (TypeError, ValueError):
            self.handleError(record)
            return
        self.writer.put(row)

    def filter(self, record: logging.LogRecord) -> bool:
        # The app's own records from INFO up; other libraries' from WARNING.
        if (
            not record.name.startswith("supportbot")
            and record.levelno < logging.WARNING
        ):
            return False
        return super().filter(record)

    def _row(self, record: logging.LogRecord) -> dict:
        row = {
            "created_at": datetime.fromtimestamp(record.created, UTC),
            "level": record.levelno,
            "logger": record.name[:128],
            "message": record.getMessage()[:10000],
            "traceback": None,
            "request_path": None,
        }
        for name in STORED_EXTRAS:
            row[name] = getattr(record, name, None)
        if record.exc_info:
            row["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        if has_request_context():
            row["request_path"] = f"{request.method} {request.path}"[:512]
        return row


class DatabaseWriter:
    """Write queued log records to the database from a thread of its own."""

    def __init__(self, app: Flask, capacity: int):
        self.app = app
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.dropped = 0
        self.written = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listeners = []

    def put(self, row: dict) -> None:
        """Queue a row without ever blocking; count it when there is no room."""
        self.start()
        try:
            self.queue.put_nowait(row)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def add_listener(self, callback) -> None:
        """Call ``callback(rows)`` after each batch is stored, as for a live tail."""
        self._listeners.append(callback)

    def start(self) -> None:
        """Start the writing thread unless it runs."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self.run, name="log-writer", daemon=True
                )
                self._thread.start()

    def run(self) -> None:
        """Write batches for as long as the process lives."""
        while True:
            self.write(self.next_batch())

    def next_batch(self) -> list[dict]:
        """Wait for a record, then gather what follows it for ``LINGER`` seconds.

        A busy process logs a line or two for each request: written one at
        a time, they would cost the database a transaction each.
        """
        batch = [self.queue.get()]
        deadline = time.monotonic() + LINGER
        while len(batch) < BATCH_SIZE:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self.queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def write(self, batch: list[dict]) -> None:
        """Insert one batch; a failed batch is counted as dropped, not retried."""
        with self.app.app_context():
            try:
                with db.engine.begin() as connection:
                    rows = connection.execute(
                        insert(LogRecord).returning(LogRecord.id), batch
                    ).all()
            except SQLAlchemyError as error:
                with self._lock:
                    self.dropped += len(batch)
                print(f"log records not stored: {error}", file=sys.stderr)
                return

            for row, (record_id,) in zip(batch, rows, strict=True):
                row["id"] = record_id
            with self._lock:
                self.written += len(batch)
            for listener in self._listeners:
                listener(batch)


def prune(days: int) -> int:
    """Delete log records older than ``days`` days; return how many."""
    cutoff = utcnow() - timedelta(days=days)
    deleted = db.session.execute(delete(LogRecord).where(LogRecord.created_at < cutoff))
    db.session.commit()
    return deleted.rowcount


def writer() -> DatabaseWriter | None:
    """Return the current app's database log writer, if it has one."""
    return current_app.extensions.get("supportbot.logs")


def init_app(app: Flask) -> None:
    """Set up stdout logging once per process, and the app's database copy."""
    root = logging.getLogger()
    stdout = next((h for h in root.handlers if getattr(h, "supportbot", False)), None)
    if stdout is None:
        stdout = logging.StreamHandler(sys.stdout)
        stdout.supportbot = True
        root.addHandler(stdout)
    if app.config["LOG_FORMAT"] == "json":
        stdout.setFormatter(JSONFormatter())
    else:
        stdout.setFormatter(logging.Formatter(FORMAT))

    logging.getLogger("supportbot").setLevel(app.config["LOG_LEVEL"])
    # Migrations say which revisions they apply.
    logging.getLogger("alembic").setLevel(logging.INFO)
    # The HTTP client logs full URLs, and Bot API URLs carry the bot token.
    logging.getLogger("urllib3").setLevel(logging.WARNING)

    # One database handler per process: the newest app's replaces the others.
    for handler in [h for h in root.handlers if isinstance(h, DatabaseHandler)]:
        root.removeHandler(handler)
    if app.config["LOG_TO_DATABASE"]:
        database_writer = DatabaseWriter(app, app.config["LOG_QUEUE_SIZE"])
        app.extensions["supportbot.logs"] = database_writer
        root.addHandler(DatabaseHandler(database_writer))

    app.cli.add_command(logs_cli)


@logs_cli.command("prune")
@click.option("--days", type=int, help="Days to keep; LOG_RETENTION_DAYS by default.")
def prune_command(days: int | None) -> None:
    """Delete log records older than LOG_RETENTION_DAYS."""
    days = days if days is not None else current_app.config["LOG_RETENTION_DAYS"]
    click.echo(f"Deleted {prune(days)} log records older than {days} days.")
