"""How this process, its database, the outbox and Telegram's updates are doing."""

import time
from dataclasses import dataclass
from datetime import datetime

import psutil
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import OutboxMessage, OutboxStatus, TelegramUpdate, utcnow


def system_figures(app: Flask) -> dict:
    """Measure CPU, memory, uptime, the database and the outbox right now."""
    # One Process object per app: its CPU figure is the use since the last call.
    process = app.extensions.setdefault("supportbot.process", psutil.Process())
    return {
        "cpu_percent": process.cpu_percent(interval=None),
        "memory_rss_bytes": process.memory_info().rss,
        "system_memory_percent": psutil.virtual_memory().percent,
        "uptime_seconds": round(time.time() - process.create_time()),
        "database": _database(),
        "outbox": _outbox(),
        "log_records_dropped": _dropped_logs(app),
    }


def database_check() -> dict:
    """Run one trivial query and say whether it worked and how long it took."""
    started = time.perf_counter()
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        db.session.rollback()
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _database() -> dict:
    check = database_check()
    if not check["ok"]:
        return check

    pool = db.engine.pool
    return {
        **check,
        "pool_size": getattr(pool, "size", lambda: None)(),
        "pool_checked_out": getattr(pool, "checkedout", lambda: None)(),
    }


def _outbox() -> dict:
    waiting, oldest = db.session.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.SENDING])
        )
    ).one()
    failed = db.session.scalar(
        select(func.count()).where(OutboxMessage.status == OutboxStatus.FAILED)
    )
    return {
        "waiting": waiting,
        "oldest_age_seconds": (utcnow() - oldest).total_seconds() if oldest else 0,
        "failed": failed,
    }


@dataclass(frozen=True)
class UpdateBacklog:
    """Stored Telegram updates not handled yet, and those whose handling failed."""

    waiting: int
    oldest_waiting: datetime | None
    failed: int


def update_backlog() -> UpdateBacklog:
    """Count the updates still waiting to be handled and those that failed."""
    waiting, oldest = db.session.execute(
        select(func.count(), func.min(TelegramUpdate.received_at)).where(
            TelegramUpdate.handled_at.is_(None)
        )
    ).one()
    failed = db.session.scalar(
        select(func.count()).where(TelegramUpdate.error.is_not(None))
    )
    return UpdateBacklog(waiting, oldest, failed)


def _dropped_logs(app: Flask) -> int:
    writer = app.extensions.get("supportbot.logs")
    return writer.dropped if writer is not None else 0
