"""Support figures for the admin dashboard: volume, backlog, speed, ratings.

Days are UTC days. Medians and 90th percentiles are computed over the
tickets in the range, the percentile with linear interpolation between the
two nearest values.
"""

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, func, or_, select

from .extensions import db
from .models import (
    Message,
    MessageKind,
    Staff,
    Ticket,
    TicketEvent,
)


@dataclass(frozen=True)
class Range:
    """A span of whole UTC days, ``first`` to ``last`` inclusive."""

    first: date
    last: date

    @classmethod
    def last_days(cls, days: int, today: date) -> "Range":
        """The ``days`` days that end with ``today``."""
        return cls(today - timedelta(days=days - 1), today)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time.min, UTC)

    def days(self) -> list[date]:
        count = (self.last - self.first).days + 1
        return [self.first + timedelta(days=n) for n in range(count)]


def summary(values: list[float]) -> dict:
    """Return the count, median and 90th percentile of ``values``."""
    if not values:
        return {"count": 0, "median": None, "p90": None}
    if len(values) == 1:
        return {"count": 1, "median": values[0], "p90": values[0]}
    p90 = statistics.quantiles(values, n=10, method="inclusive")[8]
    return {"count": len(values), "median": statistics.median(values), "p90": p90}


def support_figures(span: Range) -> dict:
    """Compute the dashboard's support figures for ``span``."""
    return {
        "days": [day.isoformat() for day in span.days()],
        **_volume(span),
        "first_response": summary(_first_response_seconds(span)),
        "resolution": summary(_resolution_seconds(span)),
        "agents": _agents(span),
        "ratings": _ratings(span),
    }


def _volume(span: Range) -> dict:
    # Every ticket alive at some point of the span, to count per day.
    rows = db.session.execute(
        select(Ticket.created_at, Ticket.closed_at).where(
            Ticket.created_at < span.end,
            or_(Ticket.closed_at.is_(None), Ticket.closed_at >= span.start),
        )
    ).all()
    opened, closed = Counter(), Counter()
    for created_at, closed_at in rows:
        opened[created_at.date()] += 1
        if closed_at is not None:
            closed[closed_at.date()] += 1

    backlog = []
    for day in span.days():
        end_of_day = datetime.combine(day + timedelta(days=1), time.min, UTC)
        backlog.append(
            sum(
                1
                for created_at, closed_at in rows
                if created_at < end_of_day
                and (closed_at is None or closed_at >= end_of_day)
            )
        )
    return {
        "opened": [opened[day] for day in span.days()],
        "closed": [closed[day] for day in span.days()],
        "backlog": backlog,
    }


def _first_response_seconds(span: Range) -> list[float]:
    rows = db.session.execute(
        select(Ticket.created_at, Ticket.first_response_at).where(
            Ticket.created_at >= span.start,
            Ticket.created_at < span.end,
            Ticket.first_response_at.is_not(None),
        )
    )
    return [(answered - created).total_seconds() for created, answered in rows]


def _resolution_seconds(span: Range) -> list[float]:
    rows = db.session.execute(
        select(Ticket.created_at, Ticket.closed_at).where(
            Ticket.closed_at >= span.start, Ticket.closed_at < span.end
        )
    )
    return [(closed - created).total_seconds() for created, closed in rows]


def _agents(span: Range) -> list[dict]:
    replies = dict(
        db.session.execute(
            select(Message.staff_id, func.count())
            .where(
                Message.kind == MessageKind.REPLY,
                Message.created_at >= span.start,
                Message.created_at < span.end,
            )
            .group_by(Message.staff_id)
        ).all()
    )
    closed = dict(
        db.session.execute(
            select(TicketEvent.staff_id, func.count())
            .where(
                TicketEvent.kind == "closed",
                TicketEvent.created_at >= span.start,
                TicketEvent.created_at < span.end,
            )
            .group_by(TicketEvent.staff_id)
        ).all()
    )

    # Who sent each ticket's first reply, and how long the customer waited.
    first_reply = (
        select(Message.ticket_id, func.min(Message.id).label("message_id"))
        .where(Message.kind == MessageKind.REPLY)
        .group_by(Message.ticket_id)
        .subquery()
    )
    waits = defaultdict(list)
    for staff_id, created, answered in db.session.execute(
        select(Message.staff_id, Ticket.created_at, Ticket.first_response_at)
        .join(first_reply, first_reply.c.message_id == Message.id)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .where(and_(Ticket.created_at >= span.start, Ticket.created_at < span.end))
    ):
        waits[staff_id].append((answered - created).total_seconds())

    people = db.session.scalars(select(Staff).order_by(Staff.name)).all()
    return [
        {
            "id": person.id,
            "name": person.name,
            "replies": replies.get(person.id, 0),
            "closed": closed.get(person.id, 0),
            "first_response": summary(waits.get(person.id, [])),
        }
        for person in people
        if person.id in replies or person.id in closed or person.id in waits
    ]


def _ratings(span: Range) -> dict:
    counts = dict(
        db.session.execute(
            select(Ticket.rating, func.count())
            .where(
                Ticket.rating.is_not(None),
                Ticket.closed_at >= span.start,
                Ticket.closed_at < span.end,
            )
            .group_by(Ticket.rating)
        ).all()
    )
    total = sum(counts.values())
    average = sum(score * n for score, n in counts.items()) / total if total else None
    return {
        "counts": [counts.get(score, 0) for score in range(1, 6)],
        "average": average,
    }
