"""Telling listeners, such as the staff console, that a delivery moved on."""

import logging

from blinker import Namespace
from flask import Flask

from .. import events

logger = logging.getLogger(__name__)

outbox_signals = Namespace()

# Sent after commit, for every change of an outbox row, with its id, chat_id,
# message_id, ticket_id, status, error, telegram_message_id, part and parts.
delivery_changed = outbox_signals.signal("delivery-changed")


def announce(app: Flask, state: dict) -> None:
    """Tell listeners about one row's change; a failing listener stops no delivery."""
    try:
        delivery_changed.send(app, **state)
        # The console's ticket rooms follow where each reply got to.
        if state["ticket_id"] is not None:
            events.delivery_changed.send(
                app,
                ticket_id=state["ticket_id"],
                message_id=state["message_id"],
                status=state["status"].value,
                error=state["error"],
            )
    except Exception:
        logger.exception("delivery-changed listener failed for outbox %s", state["id"])


def state_of(row, ticket_id: int | None) -> dict:
    """Return what ``delivery_changed`` tells about an outbox row."""
    return {
        "id": row.id,
        "chat_id": row.chat_id,
        "message_id": row.message_id,
        "ticket_id": ticket_id,
        "status": row.status,
        "error": row.error,
        "telegram_message_id": row.telegram_message_id,
        "part": row.part,
        "parts": row.parts,
    }
