"""Reading Telegram updates: what may be trusted in them, in plain values."""

import logging

from telebot import types

from ..customers import Profile
from ..errors import SupportbotError

logger = logging.getLogger(__name__)

# What the bot asks Telegram for; anything else is acknowledged and ignored.
ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member", "callback_query"]

# Media a customer may send, and the fields of each worth keeping.
ATTACHMENT_FIELDS = {
    "photo": ("file_id", "file_unique_id", "file_size", "width", "height"),
    "document": ("file_id", "file_unique_id", "file_size", "file_name", "mime_type"),
    "audio": (
        "file_id",
        "file_unique_id",
        "file_size",
        "file_name",
        "mime_type",
        "duration",
        "title",
        "performer",
    ),
    "voice": ("file_id", "file_unique_id", "file_size", "mime_type", "duration"),
    "video": (
        "file_id",
        "file_unique_id",
        "file_size",
        "file_name",
        "mime_type",
        "duration",
        "width",
        "height",
    ),
    "video_note": ("file_id", "file_unique_id", "file_size", "duration", "length"),
    "animation": (
        "file_id",
        "file_unique_id",
        "file_size",
        "file_name",
        "mime_type",
        "duration",
    ),
    "sticker": (
        "file_id",
        "file_unique_id",
        "file_size",
        "emoji",
        "set_name",
        "is_animated",
        "is_video",
    ),
    "location": ("latitude", "longitude"),
    "contact": ("phone_number", "first_name", "last_name", "user_id"),
}
SCALARS = (str, int, float, bool)


class MalformedUpdate(SupportbotError):
    """The body is JSON, but not an update this bot can read."""


def parse_update(payload) -> tuple[int, str, types.Update]:
    """Check ``payload`` and return its update id, kind and parsed form."""
    if not isinstance(payload, dict):
        raise MalformedUpdate("An update must be a JSON object.")

    update_id = payload.get("update_id")
    if not _is_int(update_id) or update_id < 0:
        raise MalformedUpdate("An update needs a non-negative integer update_id.")

    kinds = [key for key in payload if key != "update_id"]
    kind = kinds[0] if len(kinds) == 1 else "unknown"
    if kind not in ALLOWED_UPDATES:
        return update_id, kind, None

    try:
        update = types.Update.de_json(payload)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        # The library builds objects field by field and says no more than this.
        raise MalformedUpdate(
            f"The {kind} in update {update_id} is incomplete."
        ) from error

    _check(update, kind)
    return update_id, kind, update


def chat_of(update: types.Update) -> int:
    """Return the chat whose other updates ``update`` must keep its place among."""
    if update.callback_query is not None:
        # Buttons are pressed in the presser's private chat with the bot.
        return update.callback_query.from_user.id
    message = update.message or update.edited_message or update.my_chat_member
    return message.chat.id


def profile_of(user: types.User) -> Profile:
    """Turn Telegram's user object into a customer profile."""
    return Profile(
        id=user.id,
        first_name=user.first_name[:256],
        last_name=(user.last_name or "")[:256] or None,
        username=(user.username or "")[:64] or None,
        language_code=(user.language_code or "")[:16] or None,
    )


def attachment_of(message: types.Message) -> dict | None:
    """Describe the media in ``message``, or return None for plain text."""
    fields = ATTACHMENT_FIELDS.get(message.content_type)
    if fields is None:
        return None

    media = getattr(message, message.content_type)
    if message.content_type == "photo":
        # Telegram sends each photo in several sizes; keep the largest.
        media = max(media, key=lambda size: size.width * size.height)

    attachment = {"type": message.content_type}
    for field in fields:
        value = getattr(media, field, None)
        if isinstance(value, SCALARS):
            attachment[field] = value
    return attachment


def _check(update: types.Update, kind: str) -> None:
    # The library copies values as they come; make sure of the types used here.
    obj = getattr(update, kind)
    _require(obj is not None, kind, kind)
    if kind == "callback_query":
        _require(isinstance(obj.id, str), kind, "id")
        _require(_is_user(obj.from_user), kind, "from")
        _require(obj.data is None or isinstance(obj.data, str), kind, "data")
        message = obj.message
        _require(
            message is None or (_is_int(message.message_id) and _is_chat(message.chat)),
            kind,
            "message",
        )
        return
    if kind == "my_chat_member":
        _require(_is_user(obj.from_user), kind, "from")
        _require(_is_chat(obj.chat), kind, "chat")
        for field in ("new_chat_member", "old_chat_member"):
            status = getattr(getattr(obj, field), "status", None)
            _require(isinstance(status, str), kind, field)
        _require(obj.date is None or _is_int(obj.date), kind, "date")
        return

    _require(_is_int(obj.message_id), kind, "message_id")
    _require(_is_chat(obj.chat), kind, "chat")
    _require(obj.from_user is None or _is_user(obj.from_user), kind, "from")
    for field in ("text", "caption"):
        value = getattr(obj, field)
        _require(value is None or isinstance(value, str), kind, field)
    if obj.content_type == "photo":
        _require(
            isinstance(obj.photo, list)
            and obj.photo
            and all(_is_int(p.width) and _is_int(p.height) for p in obj.photo),
            kind,
            "photo",
        )


def _require(condition, kind: str, field: str) -> None:
    if not condition:
        raise MalformedUpdate(f"The {kind} has a missing or malformed {field!r}.")


def _is_int(value) -> bool:
    # Telegram's ids fit in 64 bits, and so do the columns that keep them.
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and -(2**63) <= value < 2**63
    )


def _is_chat(chat) -> bool:
    return _is_int(getattr(chat, "id", None)) and isinstance(chat.type, str)


def _is_user(user) -> bool:
    return (
        _is_int(getattr(user, "id", None))
        and isinstance(user.first_name, str)
        and all(
            value is None or isinstance(value, str)
            for value in (user.last_name, user.username, user.language_code)
        )
    )
