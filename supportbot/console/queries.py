"""What the console shows: the queue page and a ticket's timeline."""

from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.orm import joinedload, selectinload

from .. import search
from ..extensions import db
from ..models import (
    Message,
    OutboxMessage,
    Staff,
    Ticket,
    TicketEvent,
    TicketRead,
    TicketStatus,
)

SCOPES = ("all", "mine", "unassigned")
# Matches a search counts beyond those on earlier pages. Counting every
# ticket that holds a common word would cost more than finding a page of them.
SEARCH_COUNT = 1000


@dataclass(frozen=True)
class QueueFilter:
    """The queue's filters, as they come from the page's query string."""

    status: TicketStatus = TicketStatus.OPEN
    scope: str = "all"
    search: str = ""

    @classmethod
    def from_args(cls, args) -> "QueueFilter":
        """Read the filters from request arguments, ignoring unknown values."""
        try:
            status = TicketStatus(args.get("status", "open"))
        except ValueError:
            status = TicketStatus.OPEN
        scope = args.get("scope", "all")
        return cls(
            status=status,
            scope=scope if scope in SCOPES else "all",
            search=args.get("q", "").strip()[:200],
        )


@dataclass
class QueuePage:
    rows: list  # (ticket, unread) pairs
    total: int
    page: int
    per_page: int
    # Whether more tickets match than were counted: a search counts the
    # matches up to SEARCH_COUNT past the page's first row, not all of them.
    more: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def unread_count(staff: Staff):
    """A per-ticket expression: customer messages ``staff`` has not read yet.

    It needs :func:`with_reads` joined into the query.
    """
    return Ticket.customer_message_count - func.coalesce(TicketRead.read_count, 0)


def with_reads(statement, staff: Staff):
    """Join what ``staff`` has read of each ticket, for :func:`unread_count`."""
    return statement.outerjoin(
        TicketRead,
        and_(TicketRead.ticket_id == Ticket.id, TicketRead.staff_id == staff.id),
    )


def _conditions(queue_filter: QueueFilter, staff: Staff) -> list:
    conditions = [Ticket.status == queue_filter.status]
    if queue_filter.scope == "mine":
        conditions.append(Ticket.assignee_id == staff.id)
    elif queue_filter.scope == "unassigned":
        conditions.append(Ticket.assignee_id.is_(None))
    if queue_filter.search:
        conditions.append(search.condition(queue_filter.search))
    return conditions


def _order(status: TicketStatus) -> list:
    if status is TicketStatus.CLOSED:
        return [Ticket.closed_at.desc(), Ticket.id.desc()]
    # Longest waiting first; tickets waiting on nobody after them.
    return [Ticket.waiting_since.asc().nulls_last(), Ticket.updated_at.desc()]


def queue_page(
    queue_filter: QueueFilter, staff: Staff, page: int, per_page: int
) -> QueuePage:
    """Return one page of the queue: two queries, whatever the page size."""
    conditions = _conditions(queue_filter, staff)
    order = _order(queue_filter.status)
    offset = (page - 1) * per_page
    matching = select(Ticket.id).where(*conditions)
    counted = matching
    if queue_filter.search:
        counted = matching.limit(offset + SEARCH_COUNT + 1)
    total = db.session.scalar(select(func.count()).select_from(counted.subquery()))
    more = bool(queue_filter.search) and total > offset + SEARCH_COUNT

    # The page's tickets are picked before anything is joined to them, so that
    # a later page skips its predecessors' ids rather than their joined rows.
    on_page = matching.order_by(*order).limit(per_page).offset(offset)
    statement = (
        with_reads(select(Ticket, unread_count(staff).label("unread")), staff)
        .where(Ticket.id.in_(on_page.scalar_subquery()))
        .options(joinedload(Ticket.customer), joinedload(Ticket.assignee))
        .order_by(*order)
    )
    rows = [tuple(row) for row in db.session.execute(statement)]
    return QueuePage(
        rows=rows,
        total=offset + SEARCH_COUNT if more else total,
        page=page,
        per_page=per_page,
        more=more,
    )


def queue_row(ticket_id: int, queue_filter: QueueFilter, staff: Staff):
    """Return (ticket, unread) if the ticket belongs in the filtered queue."""
    statement = (
        with_reads(select(Ticket, unread_count(staff).label("unread")), staff)
        .where(Ticket.id == ticket_id, *_conditions(queue_filter, staff))
        .options(joinedload(Ticket.customer), joinedload(Ticket.assignee))
    )
    row = db.session.execute(statement).first()
    return tuple(row) if row else None


def total_unread(staff: Staff) -> int:
    """Count unread customer messages over the tickets still open."""
    statement = select(func.coalesce(func.sum(unread_count(staff)), 0))
    total = db.session.scalar(
        with_reads(statement.select_from(Ticket), staff).where(
            Ticket.status != TicketStatus.CLOSED
        )
    )
    # PostgreSQL sums counts as numeric.
    return int(total)


def ticket_for_view(ticket_id: int) -> Ticket | None:
    """Load a ticket with the customer and assignee its page shows."""
    return db.session.scalar(
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .options(joinedload(Ticket.customer), joinedload(Ticket.assignee))
    )


@dataclass
class Timeline:
    """The latest messages and events of a ticket, in the order they happened."""

    items: list  # ("message", Message) and ("event", TicketEvent) pairs
    earlier: int  # how many older ones are left out

    @property
    def messages(self) -> list[Message]:
        """The messages among the items, oldest first."""
        return [item for kind, item in self.items if kind == "message"]


def timeline(ticket: Ticket, limit: int | None = None) -> Timeline:
    """Merge the ticket's messages and events; only the latest ``limit`` of them.

    A long conversation renders its recent part: each kind is read newest
    first, one row past ``limit`` to tell whether any are left out, so the
    work does not grow with the conversation's length.
    """
    fetch = None if limit is None else limit + 1
    messages = (
        select(Message)
        .where(Message.ticket_id == ticket.id)
        .options(selectinload(Message.revisions), joinedload(Message.staff))
        .order_by(Message.id.desc())
        .limit(fetch)
    )
    events = (
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket.id)
        .options(joinedload(TicketEvent.staff))
        .order_by(TicketEvent.id.desc())
        .limit(fetch)
    )
    items = [("message", m) for m in reversed(db.session.scalars(messages).all())]
    items += [("event", e) for e in reversed(db.session.scalars(events).all())]
    items.sort(key=lambda item: item[1].created_at)
    if limit is None or len(items) <= limit:
        return Timeline(items=items, earlier=0)

    shown = items[-limit:]
    total = db.session.scalar(
        select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id)
    ) + db.session.scalar(
        select(func.count())
        .select_from(TicketEvent)
        .where(TicketEvent.ticket_id == ticket.id)
    )
    return Timeline(items=shown, earlier=total - len(shown))


def deliveries(message_ids: list[int]) -> dict[int, OutboxMessage]:
    """Return the latest outbox row of each of the given replies."""
    if not message_ids:
        return {}

    rows = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.message_id.in_(message_ids))
        .order_by(OutboxMessage.id)
    )
    return {row.message_id: row for row in rows}
