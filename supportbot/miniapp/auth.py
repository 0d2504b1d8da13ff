"""Who is calling: the customer named by the initData of a request or socket."""

import logging

from flask import abort, current_app, g, request

from .. import customers
from ..extensions import db
from ..models import Customer
from . import initdata

logger = logging.getLogger(__name__)

# The scheme Telegram's Mini Apps documentation uses: "Authorization: tma <data>".
SCHEME = "tma"


def authenticate(raw: str | None) -> initdata.InitData:
    """Check initData against this app's bot token and age limit."""
    return initdata.validate(
        raw,
        current_app.config["TELEGRAM_BOT_TOKEN"],
        current_app.config["MINIAPP_INITDATA_MAX_AGE"],
    )


def identity() -> initdata.InitData:
    """Return the checked initData of the current request, or answer 401."""
    if "miniapp_identity" in g:
        return g.miniapp_identity

    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != SCHEME:
        abort(401, "Open this page from the bot in Telegram to sign in.")
    try:
        checked = authenticate(credentials.strip())
    except initdata.InitDataError as error:
        abort(401, error.message)

    g.miniapp_identity = checked
    return checked


def current_customer() -> Customer | None:
    """Return the calling customer as stored, or None if they never wrote."""
    return db.session.get(Customer, identity().profile.id)


def recorded_customer() -> Customer:
    """Return the calling customer, stored or refreshed from their profile."""
    return customers.record_customer(identity().profile)
