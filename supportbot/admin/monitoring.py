"""Admin pages about the system: logs, the audit trail, deliveries, the dashboard."""

from datetime import UTC, datetime, timedelta

from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select

from .. import outbox, reports
from ..extensions import db
from ..models import LogRecord, Staff, utcnow
from ..monitoring.system import system_figures, update_backlog
from ..routing import id_arg, parse_id
from ..telegram import inbox
from .views import bp

PAGE_SIZE = 50
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
AUDIT_LOGGER = "supportbot.audit"
# A message still unsent this long after it was queued is shown as stuck.
STUCK_AFTER = timedelta(minutes=5)


def _log_filters(args) -> tuple[dict, list]:
    """Read the logs page's filters; return them and the matching conditions."""
    filters = {
        "level": args.get("level", "INFO").upper(),
        "logger": args.get("logger", "").strip()[:128],
        "since": args.get("since", "").strip(),
        "until": args.get("until", "").strip(),
        "ticket": args.get("ticket", "").strip().lstrip("#"),
        "error": args.get("error", "").strip()[:32],
        "q": args.get("q", "").strip()[:200],
    }
    if filters["level"] not in LEVELS:
        filters["level"] = "INFO"

    conditions = [LogRecord.level >= LEVELS[filters["level"]]]
    if filters["logger"]:
        conditions.append(
            LogRecord.logger.startswith(filters["logger"], autoescape=True)
        )
    ticket_id = parse_id(filters["ticket"])
    if ticket_id is not None:
        conditions.append(LogRecord.ticket_id == ticket_id)
    if filters["error"]:
        conditions.append(LogRecord.error_id == filters["error"])
    if filters["q"]:
        conditions.append(LogRecord.message.icontains(filters["q"], autoescape=True))
    for name, compare in (("since", "__ge__"), ("until", "__le__")):
        moment = _moment(filters[name])
        if filters[name] and moment is None:
            abort(400, f"'{filters[name]}' is not a date and time (YYYY-MM-DDTHH:MM).")
        if moment is not None:
            conditions.append(getattr(LogRecord.created_at, compare)(moment))
    return filters, conditions


def _moment(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _page(conditions: list) -> tuple[list[LogRecord], int | None]:
    before = id_arg(request.args, "before")
    statement = select(LogRecord).where(*conditions)
    if before:
        statement = statement.where(LogRecord.id < before)
    records = list(
        db.session.scalars(statement.order_by(LogRecord.id.desc()).limit(PAGE_SIZE + 1))
    )
    older = records[PAGE_SIZE - 1].id if len(records) > PAGE_SIZE else None
    return records[:PAGE_SIZE], older


@bp.get("/logs")
def logs():
    """List log records, newest first, filtered and paginated."""
    filters, conditions = _log_filters(request.args)
    records, older = _page(conditions)
    return render_template(
        "admin/logs.html",
        records=records,
        older=older,
        filters=filters,
        levels=list(LEVELS),
    )


@bp.get("/logs/<int:record_id>")
def log_record(record_id: int):
    """Show one log record with its traceback."""
    record = db.session.get(LogRecord, record_id)
    if record is None:
        abort(404, f"There is no log record #{record_id}.")
    staff = db.session.get(Staff, record.staff_id) if record.staff_id else None
    return render_template("admin/log_record.html", record=record, staff=staff)


@bp.get("/audit")
def audit():
    """List what staff did: sign-ins, ticket actions, changes to staff and settings."""
    conditions = [LogRecord.logger == AUDIT_LOGGER]
    who = id_arg(request.args, "staff")
    text = request.args.get("q", "").strip()[:200]
    if who:
        conditions.append(LogRecord.staff_id == who)
    if text:
        conditions.append(LogRecord.message.icontains(text, autoescape=True))

    records, older = _page(conditions)
    people = db.session.scalars(select(Staff).order_by(Staff.name)).all()
    return render_template(
        "admin/audit.html",
        records=records,
        older=older,
        people=people,
        names={person.id: person.name for person in people},
        who=who,
        text=text,
    )


@bp.get("/deliveries")
def deliveries():
    """List bot messages that failed or should have left by now, and updates
    that were not handled."""
    problems = outbox.failed_and_stuck(STUCK_AFTER)
    return render_template(
        "admin/deliveries.html",
        failed=problems.failed,
        stuck=problems.stuck,
        stuck_minutes=int(STUCK_AFTER.total_seconds() // 60),
        backlog=update_backlog(),
        failed_updates=inbox.failed_updates(),
    )


@bp.post("/updates/<int:update_id>/handle-again")
def handle_update_again(update_id: int):
    """Handle a failed Telegram update again."""
    inbox.handle_again([update_id], by=current_user)
    db.session.commit()
    inbox.wake()

    flash(f"Update {update_id} is handled again.", "info")
    return redirect(url_for("admin.deliveries"))


@bp.get("/dashboard")
def dashboard():
    """Show support and system figures, drawn in the browser."""
    return render_template("admin/dashboard.html")


@bp.get("/dashboard/data")
def dashboard_data():
    """Return the dashboard's figures as JSON for ``days`` days up to today."""
    days = request.args.get("days", 30, type=int)
    if not 1 <= days <= 366:
        abort(400, "Choose between 1 and 366 days.")

    span = reports.Range.last_days(days, utcnow().date())
    return jsonify(
        support=reports.support_figures(span),
        system=system_figures(current_app._get_current_object()),
    )
