"""Customers' files: fetched from Telegram on first view, then served from disk.

Files uploaded from the Mini App are on disk from the start (:mod:`.uploads`).
"""

import logging
import os
import re
import tempfile

from flask import abort, current_app, send_file

from . import uploads
from .models import Message
from .telegram import bot_api
from .telegram.api import TelegramError

logger = logging.getLogger(__name__)

# Types shown in the page; everything else downloads, so that a customer's
# HTML or SVG file never runs in the console's origin.
INLINE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
DEFAULT_TYPES = {
    "photo": "image/jpeg",
    "sticker": "image/webp",
    "voice": "audio/ogg",
    "video": "video/mp4",
    "video_note": "video/mp4",
    "animation": "video/mp4",
}
SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


def media_type(attachment: dict) -> str:
    """Return the attachment's media type, as stated or as its kind implies."""
    return (
        attachment.get("mime_type")
        or DEFAULT_TYPES.get(attachment.get("type"))
        or "application/octet-stream"
    )


def has_file(attachment: dict | None) -> bool:
    """Tell whether the attachment is a file, from Telegram or uploaded."""
    return bool(attachment and (attachment.get("file_id") or attachment.get("upload")))


def is_inline_image(attachment: dict | None) -> bool:
    """Tell whether the console may show the attachment as an image."""
    return has_file(attachment) and media_type(attachment) in INLINE_TYPES


def send_attachment(message: Message):
    """Respond with the message's file, downloading it from Telegram if needed."""
    attachment = message.attachment or {}
    if not has_file(attachment):
        abort(404, "This message has no file.")

    if attachment.get("upload"):
        path = uploads.path_of(attachment)
        if path is None or not os.path.exists(path):
            abort(404, "This file is no longer kept.")
    else:
        path = _cached_path(attachment)
        if not os.path.exists(path):
            _download(attachment, path)

    kind = media_type(attachment)
    inline = kind in INLINE_TYPES
    name = attachment.get("file_name") or f"{attachment['type']}-{message.id}"
    response = send_file(
        path,
        mimetype=kind if inline else "application/octet-stream",
        as_attachment=not inline,
        download_name=name,
        max_age=86400,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _cached_path(attachment: dict) -> str:
    key = attachment.get("file_unique_id") or attachment["file_id"]
    return os.path.join(
        current_app.config["ATTACHMENT_CACHE"], SAFE_NAME.sub("_", key)[:128]
    )


def _download(attachment: dict, path: str) -> None:
    api = bot_api()
    if api is None:
        abort(503, "The bot is off, so files cannot be fetched from Telegram.")

    try:
        info = api.call("getFile", {"file_id": attachment["file_id"]})
        content = api.download(info["file_path"])
    except TelegramError as error:
        logger.warning("file %s not fetched: %s", attachment["file_id"], error)
        abort(502, f"Telegram did not hand over the file: {error.reason}")

    # Written aside and renamed, so that a half-written file is never served.
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as partial:
        partial.write(content)
    os.replace(partial.name, path)
