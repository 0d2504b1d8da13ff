"""The webhook Telegram posts updates to."""

import hmac

from flask import Blueprint, abort, current_app, jsonify, request

from ..extensions import limiter
from . import inbox

bp = Blueprint("telegram", __name__, url_prefix="/telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@bp.post("/webhook")
def webhook():
    """Store one update from Telegram and acknowledge it; it is handled after."""
    _check_secret()

    request.max_content_length = current_app.config["TELEGRAM_MAX_UPDATE_BYTES"]
    if not request.is_json:
        abort(415, "Updates must be sent as application/json.")

    payload = request.get_json(silent=True)
    if payload is None:
        abort(400, "The body is not valid JSON.")

    new = inbox.store(payload)
    return jsonify(ok=True, duplicate=not new)


@limiter.request_filter
def _unlimited() -> bool:
    # Only Telegram holds the secret and it paces its own deliveries, so no
    # limit applies here; skipping the check spares every update its cost.
    return request.blueprint == bp.name


def _check_secret() -> None:
    expected = current_app.config["TELEGRAM_WEBHOOK_SECRET"]
    if not expected:
        abort(403, "The webhook is off until TELEGRAM_WEBHOOK_SECRET is set.")

    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        abort(403, "Wrong or missing secret token.")
