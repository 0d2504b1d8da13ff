"""The ``/staff`` Socket.IO namespace: authentication, rooms, presence, typing."""

import functools
import logging
import threading
import time

from flask import current_app
from flask_login import current_user
from flask_socketio import (
    ConnectionRefusedError,
    Namespace,
    emit,
    join_room,
    leave_room,
    rooms,
)
from flask_wtf.csrf import ValidationError, validate_csrf

from .. import events
from ..extensions import db, socketio
from ..models import Ticket
from ..monitoring.metrics import SOCKET_CONNECTIONS
from ..telegram import bot_api
from ..telegram.api import TelegramError

logger = logging.getLogger(__name__)

NAMESPACE = "/staff"
LOGS_ROOM = "logs"
# Telegram shows "typing..." for about five seconds after each chat action.
TYPING_INTERVAL = 4.0


def ticket_room(ticket_id: int) -> str:
    """Name the room of staff who have ``ticket_id`` open."""
    return f"ticket:{ticket_id}"


def signed_in(handler):
    """Ignore events from a connection whose staff session has ended."""

    @functools.wraps(handler)
    def wrapped(self, *args):
        if not current_user.is_authenticated:
            return {"ok": False, "error": "Sign in again."}
        return handler(self, *args)

    return wrapped


class StaffNamespace(Namespace):
    """Live console connections of signed-in staff."""

    def __init__(self, namespace: str):
        super().__init__(namespace)
        # When each ticket last showed the customer "typing...".
        self._typing_shown: dict[int, float] = {}
        self._typing_lock = threading.Lock()

    def on_connect(self, auth=None):
        """Accept signed-in staff whose page holds a valid CSRF token."""
        if not current_user.is_authenticated:
            raise ConnectionRefusedError("Sign in to the console first.")
        token = auth.get("csrf_token") if isinstance(auth, dict) else None
        try:
            validate_csrf(token)
        except ValidationError:
            logger.warning(
                "socket refused for staff %s: bad CSRF token", current_user.id
            )
            raise ConnectionRefusedError(
                "The page is out of date; reload it."
            ) from None

        join_room("queue")
        SOCKET_CONNECTIONS.labels(NAMESPACE).inc()

    def on_disconnect(self, reason=None):
        """Tell the rooms this connection was in that its viewer left."""
        SOCKET_CONNECTIONS.labels(NAMESPACE).dec()
        if not current_user.is_authenticated:
            return
        for room in rooms():
            if room.startswith("ticket:"):
                self._announce_presence(int(room.split(":", 1)[1]), "left")

    @signed_in
    def on_follow_logs(self, data=None):
        """Send an admin new log records as they are stored."""
        if not current_user.is_admin:
            return {"ok": False, "error": "The logs are for admins."}

        join_room(LOGS_ROOM)
        return {"ok": True}

    @signed_in
    def on_join_ticket(self, data):
        """Follow a ticket's live updates and tell its other viewers."""
        ticket_id = _ticket_id(data)
        if ticket_id is None or db.session.get(Ticket, ticket_id) is None:
            return {"ok": False, "error": "There is no such ticket."}

        join_room(ticket_room(ticket_id))
        self._announce_presence(ticket_id, "joined")
        return {"ok": True}

    @signed_in
    def on_leave_ticket(self, data):
        """Stop following a ticket."""
        ticket_id = _ticket_id(data)
        if ticket_id is None:
            return {"ok": False, "error": "There is no such ticket."}

        leave_room(ticket_room(ticket_id))
        self._announce_presence(ticket_id, "left")
        return {"ok": True}

    @signed_in
    def on_viewing(self, data):
        """Repeat that this staff member still has the ticket open."""
        ticket_id = _ticket_id(data)
        if ticket_id is None or ticket_room(ticket_id) not in rooms():
            return {"ok": False, "error": "Join the ticket first."}

        self._announce_presence(ticket_id, "viewing")
        return {"ok": True}

    @signed_in
    def on_typing(self, data):
        """Show colleagues, and the customer, that a reply is being written."""
        ticket_id = _ticket_id(data)
        if ticket_id is None or ticket_room(ticket_id) not in rooms():
            return {"ok": False, "error": "Join the ticket first."}

        emit(
            "typing",
            {"ticket_id": ticket_id, "staff": _me()},
            to=ticket_room(ticket_id),
            include_self=False,
        )
        if not (isinstance(data, dict) and data.get("note")):
            events.staff_typing.send(
                current_app._get_current_object(), ticket_id=ticket_id
            )
            self._show_customer_typing(ticket_id)
        return {"ok": True}

    def _announce_presence(self, ticket_id: int, state: str) -> None:
        emit(
            "presence",
            {"ticket_id": ticket_id, "staff": _me(), "state": state},
            to=ticket_room(ticket_id),
            include_self=False,
        )

    def _show_customer_typing(self, ticket_id: int) -> None:
        now = time.monotonic()
        with self._typing_lock:
            if now - self._typing_shown.get(ticket_id, 0) < TYPING_INTERVAL:
                return
            self._typing_shown[ticket_id] = now

        ticket = db.session.get(Ticket, ticket_id)
        api = bot_api()
        if ticket is None or ticket.is_closed or api is None:
            return
        socketio.start_background_task(_send_chat_action, api, ticket.customer_id)


def _send_chat_action(api, chat_id: int) -> None:
    try:
        api.call("sendChatAction", {"chat_id": chat_id, "action": "typing"})
    except TelegramError as error:
        # Only a courtesy: the reply itself goes through the outbox.
        logger.info("typing not shown to chat %s: %s", chat_id, error)


def _ticket_id(data) -> int | None:
    value = data.get("ticket_id") if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31:
        return value
    return None


def _me() -> dict:
    return {"id": current_user.id, "name": current_user.name}
