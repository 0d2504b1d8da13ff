"""Live updates for the staff console over Socket.IO.

Services announce events (:mod:`supportbot.events`); this package passes them to
the browsers in the rooms that care: ``queue`` for every signed-in staff member,
``ticket:<id>`` for those with that ticket open. Browsers then fetch the
rendered row or message, so markup is made in one place, by the templates.
"""

import logging
from urllib.parse import urlsplit

from flask import Flask

from .. import events
from ..extensions import socketio
from .redis_queue import RedisQueue
from .staff import LOGS_ROOM, NAMESPACE, StaffNamespace, ticket_room

logger = logging.getLogger(__name__)

QUEUE_ROOM = "queue"


def init_app(app: Flask) -> None:
    """Attach Socket.IO to the app and forward domain events to the browsers."""
    public_url = app.config["PUBLIC_URL"]
    redis_url = app.config["REDIS_URL"]
    # Without Redis, events reach this process's connections only.
    queue = RedisQueue(redis_url, channel_for(redis_url)) if redis_url else None
    socketio.init_app(
        app,
        async_mode=app.config["SOCKETIO_ASYNC_MODE"],
        client_manager=queue,
        # None checks the Origin header against the request's own host; a
        # public address behind a proxy is named explicitly.
        cors_allowed_origins=[public_url] if public_url else None,
        logger=False,
        engineio_logger=False,
    )
    socketio.on_namespace(StaffNamespace(NAMESPACE))
    if queue is not None:
        events.publish_within(app, queue.together)

    events.ticket_changed.connect(_on_ticket_changed, weak=False)
    events.message_created.connect(_on_message_created, weak=False)
    events.ticket_event_created.connect(_on_ticket_event_created, weak=False)
    events.delivery_changed.connect(_on_delivery_changed, weak=False)

    writer = app.extensions.get("supportbot.logs")
    if writer is not None:
        writer.add_listener(_on_log_records)


def channel_for(redis_url: str | None) -> str:
    """Name the Redis channel that carries Socket.IO events between processes.

    Redis publishes to every database at once, so the name carries the
    database number: apps on different numbers never hear each other's tickets.
    """
    database = urlsplit(redis_url or "").path.strip("/") or "0"
    return f"supportbot-socketio-{database}"


def _on_ticket_changed(app, ticket_id: int, **details) -> None:
    # One message for both rooms: a console in both gets it once.
    socketio.emit(
        "ticket_changed",
        {"ticket_id": ticket_id, **details},
        to=[QUEUE_ROOM, ticket_room(ticket_id)],
        namespace=NAMESPACE,
    )


def _on_message_created(app, ticket_id: int, message_id: int, kind: str) -> None:
    payload = {"ticket_id": ticket_id, "message_id": message_id, "kind": kind}
    socketio.emit(
        "message_created", payload, to=ticket_room(ticket_id), namespace=NAMESPACE
    )
    if kind == "customer":
        # The queue page uses it for notifications and the unread count.
        socketio.emit("customer_message", payload, to=QUEUE_ROOM, namespace=NAMESPACE)


def _on_ticket_event_created(app, ticket_id: int, event_id: int) -> None:
    socketio.emit(
        "ticket_event_created",
        {"ticket_id": ticket_id, "event_id": event_id},
        to=ticket_room(ticket_id),
        namespace=NAMESPACE,
    )


def _on_delivery_changed(app, ticket_id: int, **details) -> None:
    socketio.emit(
        "delivery_changed",
        {"ticket_id": ticket_id, **details},
        to=ticket_room(ticket_id),
        namespace=NAMESPACE,
    )


def _on_log_records(rows: list[dict]) -> None:
    summaries = [
        {
            "id": row["id"],
            "created_at": row["created_at"].isoformat(),
            "level": row["level"],
            "level_name": logging.getLevelName(row["level"]),
            "logger": row["logger"],
            "message": row["message"][:2000],
        }
        for row in rows
    ]
    socketio.emit("log_records", summaries, to=LOGS_ROOM, namespace=NAMESPACE)
