"""The ``/customer`` Socket.IO namespace: live replies for the Mini App.

Each connection authenticates with the initData it sends in ``auth`` and joins
its customer's room. Domain events reach that room as ids only; the page then
fetches what changed through the API, which decides what the customer may see.
"""

import logging

from flask import Flask
from flask_socketio import ConnectionRefusedError, Namespace, join_room
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .. import events
from ..extensions import db, socketio
from ..models import MessageKind, Ticket
from .auth import authenticate
from .initdata import InitDataError

logger = logging.getLogger(__name__)

NAMESPACE = "/customer"
# Session info: the customer of each ticket the transaction wrote.
TICKET_CUSTOMERS = "supportbot.miniapp.ticket_customers"


def customer_room(customer_id: int) -> str:
    """Name the room of one customer's open Mini App pages."""
    return f"customer:{customer_id}"


class CustomerNamespace(Namespace):
    """Live connections of Mini App pages, one room per customer."""

    def on_connect(self, auth=None):
        """Accept a page whose initData checks out, into its customer's room."""
        raw = auth.get("init_data") if isinstance(auth, dict) else None
        try:
            checked = authenticate(raw)
        except InitDataError as error:
            logger.warning("customer socket refused: %s", error.message)
            raise ConnectionRefusedError(error.message) from None

        join_room(customer_room(checked.profile.id))


def init_app(app: Flask) -> None:
    """Register the namespace and pass domain events to customers' rooms."""
    socketio.on_namespace(CustomerNamespace(NAMESPACE))

    events.message_created.connect(_on_message_created, weak=False)
    events.ticket_changed.connect(_on_ticket_changed, weak=False)
    events.staff_typing.connect(_on_staff_typing, weak=False)
    if not event.contains(Session, "after_flush", _note_ticket_customers):
        event.listen(Session, "after_flush", _note_ticket_customers)
        event.listen(Session, "after_soft_rollback", _forget_ticket_customers)


def _note_ticket_customers(session: Session, flush_context) -> None:
    # Events are published while the committing session still holds its
    # connection; a lookup then needs a second one, which waits out the pool's
    # timeout once every connection is held by a request publishing events.
    # A ticket never changes customer, so what its row says now stays true.
    for row in (*session.new, *session.dirty):
        if isinstance(row, Ticket):
            customer_id = inspect(row).dict.get("customer_id")
            if customer_id is not None:
                session.info.setdefault(TICKET_CUSTOMERS, {})[row.id] = customer_id


def _forget_ticket_customers(session: Session, transaction) -> None:
    session.info.pop(TICKET_CUSTOMERS, None)


def _on_message_created(app, ticket_id: int, message_id: int, kind: str) -> None:
    if kind == MessageKind.NOTE.value:
        return
    _emit("message_created", ticket_id, message_id=message_id)


def _on_ticket_changed(app, ticket_id: int, **details) -> None:
    _emit("ticket_changed", ticket_id)


def _on_staff_typing(app, ticket_id: int) -> None:
    _emit("typing", ticket_id)


def _emit(event: str, ticket_id: int, **payload) -> None:
    customer_id = _customer_of(ticket_id)
    if customer_id is None:
        return
    socketio.emit(
        event,
        {"ticket_id": ticket_id, **payload},
        to=customer_room(customer_id),
        namespace=NAMESPACE,
    )


def _customer_of(ticket_id: int) -> int | None:
    noted = db.session.info.get(TICKET_CUSTOMERS, {}).get(ticket_id)
    if noted is not None:
        return noted

    # Events are published after the commit, when the session may not run SQL;
    # a connection of its own may, and sees what was just committed.
    try:
        with db.engine.connect() as connection:
            return connection.scalar(
                select(Ticket.customer_id).where(Ticket.id == ticket_id)
            )
    except SQLAlchemyError:
        # The change itself is stored; only its live notice is lost.
        logger.exception("live update for ticket %s not sent", ticket_id)
        return None
