"""Canned replies: prepared answers that admins keep for the whole team."""

import logging

from sqlalchemy import select

from .errors import Conflict, NotFound
from .extensions import db
from .models import CannedReply, Staff

audit = logging.getLogger("supportbot.audit")


def all_replies() -> list[CannedReply]:
    """Return every canned reply, by title."""
    return list(db.session.scalars(select(CannedReply).order_by(CannedReply.title)))


def add(title: str, body: str, by: Staff) -> CannedReply:
    """Add a canned reply; titles are unique."""
    title = title.strip()
    if db.session.scalar(select(CannedReply).where(CannedReply.title == title)):
        raise Conflict("There is already a canned reply with this title.")

    reply = CannedReply(title=title, body=body.strip())
    db.session.add(reply)
    db.session.flush()

    audit.info(
        "staff %s added canned reply %s %r",
        by.id,
        reply.id,
        title,
        extra={"staff_id": by.id},
    )
    return reply


def delete(reply_id: int, by: Staff) -> CannedReply:
    """Delete a canned reply."""
    reply = db.session.get(CannedReply, reply_id)
    if reply is None:
        raise NotFound(f"There is no canned reply #{reply_id}.")

    db.session.delete(reply)
    audit.info(
        "staff %s deleted canned reply %s %r",
        by.id,
        reply.id,
        reply.title,
        extra={"staff_id": by.id},
    )
    return reply
