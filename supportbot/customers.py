"""Customers: the Telegram users who write to the bot."""

import functools
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select

from . import search
from .extensions import db
from .models import Customer, insert_or_ignore, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """What Telegram tells about a user with each update."""

    id: int
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


def record_customer(profile: Profile) -> Customer:
    """Create or refresh the customer behind ``profile`` and lock their row.

    The row lock serializes concurrent updates from one customer, so that two
    first messages arriving together still open a single ticket.
    """
    customer = db.session.scalar(_locked(), {"id": profile.id})
    known = customer is not None
    if not known:
        insert_or_ignore(Customer, id=profile.id, first_name=profile.first_name)
        customer = db.session.scalar(_locked(), {"id": profile.id})

    fresh = {
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "username": profile.username,
    }
    if profile.language_code:
        fresh["language_code"] = profile.language_code
    # Only what changed is set, so that an unchanged customer costs no flush.
    changed = {
        name for name, value in fresh.items() if getattr(customer, name) != value
    }
    for name in changed:
        setattr(customer, name, fresh[name])
    if known and changed.intersection(search.NAME_FIELDS):
        search.index_names(customer)
    return customer


@functools.cache
def _locked():
    # Built once, as every update asks it: composing the statement costs more
    # than running it.
    return select(Customer).where(Customer.id == bindparam("id")).with_for_update()


def set_blocked(customer: Customer, blocked: bool, at: datetime | None = None) -> None:
    """Record that the customer blocked the bot, or can be reached again."""
    if blocked and customer.blocked_at is None:
        customer.blocked_at = at or utcnow()
        logger.info("customer %s blocked the bot", customer.id)
    elif not blocked and customer.blocked_at is not None:
        customer.blocked_at = None
        logger.info("customer %s can be reached again", customer.id)
