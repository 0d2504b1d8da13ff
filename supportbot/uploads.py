"""Files customers upload from the Mini App, kept on this server.

Telegram lets a bot download files of at most 20 MB; files uploaded here skip
that limit, up to ``MINIAPP_UPLOAD_MAX_BYTES`` each.
"""

import logging
import os
import re
import secrets
import tempfile
from contextlib import ExitStack, contextmanager

from flask import current_app
from werkzeug.datastructures import FileStorage

from .errors import SupportbotError, TooLarge

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
NAME_LENGTH = 200
UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")
# Images are recognised by their first bytes, never by what the browser claims.
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
KEY = re.compile(r"^[0-9a-f]{32}$")


def limit_text(max_bytes: int) -> str:
    """Say the upload limit in the unit people read it in."""
    megabytes = max_bytes / (1024 * 1024)
    if megabytes >= 1:
        return f"{megabytes:g} MB"
    return f"{max_bytes // 1024 or 1} KB"


def store(upload: FileStorage) -> dict:
    """Save an uploaded file and return the attachment that describes it.

    Raises :class:`TooLarge` for a file over the limit and leaves nothing behind.
    """
    max_bytes = current_app.config["MINIAPP_UPLOAD_MAX_BYTES"]
    name = _clean_name(upload.filename)
    if not name:
        raise SupportbotError("A file without a name cannot be attached.")

    folder = current_app.config["UPLOAD_FOLDER"]
    os.makedirs(folder, exist_ok=True)
    key = secrets.token_hex(16)
    size = 0
    head = b""
    # Written aside and renamed, so that a half-written file is never served.
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as partial:
        try:
            while chunk := upload.stream.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(
                        f"“{name}” is larger than {limit_text(max_bytes)}, the"
                        " largest file you can attach."
                    )
                if len(head) < 16:
                    head += chunk[:16]
                partial.write(chunk)
        except BaseException:
            partial.close()
            os.unlink(partial.name)
            raise
    os.replace(partial.name, os.path.join(folder, key))

    kind = _image_type(head)
    logger.info("upload %s stored: %s bytes", key, size)
    return {
        "type": "photo" if kind else "document",
        "upload": key,
        "file_name": name,
        "mime_type": kind or "application/octet-stream",
        "file_size": size,
    }


def path_of(attachment: dict) -> str | None:
    """Return where an uploaded attachment's file is kept, or None."""
    key = attachment.get("upload")
    if not isinstance(key, str) or not KEY.match(key):
        return None
    return os.path.join(current_app.config["UPLOAD_FOLDER"], key)


class Missing(Exception):
    """A file that a queued message refers to is no longer on disk."""


@contextmanager
def opened(payload: dict):
    """Open the files a queued Bot API call refers to, for a multipart upload.

    Yields the call's other parameters and the files, by field name; a payload
    without files yields itself and None.
    """
    params, uploads = {}, {}
    for name, value in payload.items():
        if isinstance(value, dict) and "upload" in value:
            uploads[name] = value
        else:
            params[name] = value
    if not uploads:
        yield payload, None
        return

    with ExitStack() as stack:
        files = {}
        for name, value in uploads.items():
            path = path_of(value)
            if path is None or not os.path.exists(path):
                raise Missing(f"The file {value.get('file_name')!r} is no longer kept.")
            files[name] = (
                value.get("file_name") or name,
                stack.enter_context(open(path, "rb")),
            )
        yield params, files


def _clean_name(filename: str | None) -> str:
    name = UNSAFE_NAME.sub("_", os.path.basename((filename or "").strip()))
    return name.strip(". ")[-NAME_LENGTH:]


def _image_type(head: bytes) -> str | None:
    for signature, kind in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
