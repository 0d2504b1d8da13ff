"""A fake Telegram Bot API server for the test suite and for chatting by hand.

In tests, start it, point the app's ``TELEGRAM_API_URL`` at ``base_url`` and play
the user's side of the conversation::

    with FakeTelegram() as telegram:
        ada = telegram.user(first_name="Ada")
        telegram.push(ada.text("/start"))
        [reply] = telegram.wait_for("sendMessage")

By hand, run ``python -m supportbot.fake_telegram --port 8081 --token T`` (add
``--webhook URL --secret S`` when the app takes webhooks) and type: every line
becomes a message from a fake user and everything the bot sends is printed.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import logging
import mimetypes
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from html.parser import HTMLParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

logger = logging.getLogger(__name__)

_API_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[^/]*)$")
_FILE_PATH = re.compile(r"^/file/bot(?P<token>[^/]+)/(?P<path>.+)$")
_BOT_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?=\s|$)")
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
_INTEGER = re.compile(r"^-?\d+$")

# Telegram sends these JSON-serialized inside form fields; any other field that
# merely looks like JSON (a message text such as "[1, 2]") must stay a string.
_JSON_FIELDS = frozenset(
    {
        "allowed_updates",
        "caption_entities",
        "commands",
        "entities",
        "explanation_entities",
        "link_preview_options",
        "media",
        "menu_button",
        "options",
        "reaction",
        "reply_markup",
        "reply_parameters",
        "results",
        "scope",
    }
)
# Update types Telegram only delivers when asked for by name in allowed_updates.
_OPT_IN_UPDATES = frozenset(
    {"chat_member", "message_reaction", "message_reaction_count"}
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "blockquote",
        "code",
        "del",
        "em",
        "i",
        "ins",
        "pre",
        "s",
        "span",
        "strike",
        "strong",
        "tg-emoji",
        "tg-spoiler",
        "u",
    }
)
_MESSAGE_LIMIT = 4096
_CAPTION_LIMIT = 1024
_CALLBACK_DATA_LIMIT = 64
_CALLBACK_ANSWER_LIMIT = 200
_DEFAULT_MAX_CONNECTIONS = 40
_WEBHOOK_TIMEOUT = 10.0
_PHOTO_SIZES = ((90, 67, 1_312), (320, 240, 14_880), (800, 600, 58_034))
_DEFAULT_DESCRIPTIONS = MappingProxyType(
    {
        400: "Bad Request: chat not found",
        401: "Unauthorized",
        403: "Forbidden: bot was blocked by the user",
        404: "Not Found",
        409: "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }
)
_BLOCKED_DESCRIPTIONS = MappingProxyType(
    {
        "private": "Forbidden: bot was blocked by the user",
        "group": "Forbidden: bot was kicked from the group chat",
        "supergroup": "Forbidden: bot was kicked from the supergroup chat",
        "channel": "Forbidden: bot is not a member of the channel chat",
    }
)


@dataclass(frozen=True)
class _MediaKind:
    folder: str
    extension: str
    size: int
    mime_type: str | None


_MEDIA_KINDS = MappingProxyType(
    {
        "photo": _MediaKind("photos", "jpg", 58_034, None),
        "document": _MediaKind("documents", "pdf", 24_576, None),
        "voice": _MediaKind("voice", "oga", 9_814, "audio/ogg"),
        "video": _MediaKind("videos", "mp4", 524_288, "video/mp4"),
        "sticker": _MediaKind("stickers", "webp", 23_404, None),
        "animation": _MediaKind("animations", "mp4", 120_320, "video/mp4"),
        "audio": _MediaKind("music", "mp3", 3_145_728, "audio/mpeg"),
    }
)
_MEDIA_METHODS = MappingProxyType(
    {f"send{kind.capitalize()}": kind for kind in _MEDIA_KINDS}
)


class ApiError(Exception):
    """Carry a Bot API error answer: its code, description and retry delay."""

    def __init__(
        self, error_code: int, description: str, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def as_payload(self) -> dict[str, Any]:
        """Return the JSON envelope Telegram answers with for this error."""
        payload: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.retry_after is not None:
            payload["parameters"] = {"retry_after": self.retry_after}
        return payload


@dataclass
class Call:
    """Record one Bot API request the way the fake received and answered it."""

    method: str
    params: dict[str, Any]
    token: str
    at: float
    chat_id: int | str | None = None
    # Filled in once answered; both stay None while delayed or when dropped.
    status: int | None = None
    response: dict[str, Any] | None = None


@dataclass(frozen=True)
class PushResult:
    """Report how the app's webhook answered one pushed update."""

    status: int
    json: Any | None
    text: str


@dataclass(frozen=True)
class FakeChat:
    """Describe a group chat the fake users can talk in."""

    id: int
    title: str
    type: str = "group"

    def as_dict(self) -> dict[str, Any]:
        """Return the Bot API Chat object."""
        return {"id": self.id, "title": self.title, "type": self.type}


@dataclass
class _FailureRule:
    method: str | None
    error_code: int
    description: str
    retry_after: int | None
    chat_id: int | str | None
    remaining: int | None

    def matches(self, method: str, chat_id: int | str | None) -> bool:
        if self.method is not None and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id


@dataclass
class _DropRule:
    method: str | None
    remaining: int | None


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    size: int
    content: bytes | None = None

    def data(self) -> bytes:
        if self.content is not None:
            return self.content
        return _filler(self.size)


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int = _DEFAULT_MAX_CONNECTIONS
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass(frozen=True)
class _Ok:
    result: Any
    description: str | None = None

    def as_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"ok": True, "result": self.result}
        if self.description is not None:
            payload["description"] = self.description
        return payload


@dataclass
class _Request:
    """Hold what the HTTP layer read, before it becomes a Call."""

    params: dict[str, Any]
    uploads: dict[str, bytes] = field(default_factory=dict)
    error: ApiError | None = None


class FakeTelegram:
    """Serve a fake Telegram Bot API over HTTP and record every call to it."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bot_username: str = "supportbot_test_bot",
        bot_name: str = "Support Bot",
    ) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.bot_username = bot_username
        self.bot_name = bot_name
        self._condition = threading.Condition()
        self._stopping = threading.Event()
        self._server: _FakeServer | None = None
        self._thread: threading.Thread | None = None
        # Direct opener so that proxy settings in the environment never reroute
        # pushes meant for the app on localhost.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._listeners: list[Callable[[Call], None]] = []
        self._serial = 0
        self._last_update_id = 10_000
        self._last_user_id = 1_000_000
        self._last_group_number = 0
        self._message_ids: dict[int, int] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._poll_generation = 0
        # Files outlive reset() so fixtures can register them once per session.
        self._files: dict[str, _StoredFile] = {}
        self._file_paths: dict[str, str] = {}
        self._handlers = self._build_handlers()
        self._clear_state()

    # Lifecycle

    def start(self) -> FakeTelegram:
        """Bind the socket and serve requests on a background thread."""
        if self._server is not None:
            return self

        self._stopping.clear()
        self._server = _FakeServer((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-telegram",
            daemon=True,
        )
        self._thread.start()
        logger.info("fake Telegram listening at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, wake pending long polls and close open connections."""
        server, thread = self._server, self._thread
        if server is None:
            return

        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Return the root URL to give the app as its Telegram API URL."""
        if self._server is None:
            raise RuntimeError("FakeTelegram is not started; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # Recorded calls

    @property
    def calls(self) -> list[Call]:
        """Return every API call received so far, oldest first."""
        with self._condition:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        """Return the calls made to one method (case-insensitive), oldest first."""
        wanted = method.lower()
        return [call for call in self.calls if call.method.lower() == wanted]

    def wait_for(
        self,
        method: str | None,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Block until `count` matching calls arrived; return all matching calls."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                matching = [
                    call for call in self._calls if _call_matches(call, method, where)
                ]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        _wait_failure(
                            method, count, timeout, where, matching, self._calls
                        )
                    )
                self._condition.wait(remaining)

    def sent_messages(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Return the Message objects the bot sent (latest edits), oldest first."""
        wanted = _coerce_chat_id(chat_id)
        with self._condition:
            return [
                copy.deepcopy(message)
                for message in self._messages.values()
                if self._is_from_bot(message)
                and (wanted is None or message["chat"]["id"] == wanted)
            ]

    def add_listener(self, callback: Callable[[Call], None]) -> None:
        """Call `callback(call)` from the server thread after each answered call."""
        with self._condition:
            self._listeners.append(callback)

    # Scripted misbehaviour

    def reset(self) -> None:
        """Forget calls, rules, blocks, webhook, queued updates and sent messages."""
        with self._condition:
            self._clear_state()
            self._poll_generation += 1
            self._condition.notify_all()

    def fail(
        self,
        method: str | None = None,
        *,
        error_code: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        chat_id: int | str | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next `times` matching calls with an error (None: until reset)."""
        if not 400 <= error_code <= 599:
            raise ValueError(f"error_code must be a 4xx or 5xx code, got {error_code}")
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 or None, got {times}")

        if error_code == 429 and retry_after is None:
            retry_after = 1
        rule = _FailureRule(
            method=method,
            error_code=error_code,
            description=description or _default_description(error_code, retry_after),
            retry_after=retry_after,
            chat_id=_coerce_chat_id(chat_id),
            remaining=times,
        )
        with self._condition:
            self._failures.append(rule)

    def clear_failures(self) -> None:
        """Remove every failure, delay and dropped-connection rule."""
        with self._condition:
            self._failures.clear()
            self._drops.clear()
            self._delays.clear()

    def delay(self, seconds: float, method: str | None = None) -> None:
        """Sleep `seconds` before answering calls to `method` (None: every call)."""
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")

        with self._condition:
            self._delays[method.lower() if method else None] = seconds

    def drop_connection(self, method: str | None = None, times: int | None = 1) -> None:
        """Close the socket without answering the next `times` matching calls."""
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 or None, got {times}")

        with self._condition:
            self._drops.append(_DropRule(method, times))

    def block(self, chat_id: int | str) -> None:
        """Make sends to the chat fail as if the user had blocked the bot."""
        with self._condition:
            self._blocked.add(_coerce_chat_id(chat_id))

    def unblock(self, chat_id: int | str) -> None:
        """Let sends to the chat succeed again."""
        with self._condition:
            self._blocked.discard(_coerce_chat_id(chat_id))

    def add_file(
        self, file_id: str, content: bytes, file_path: str | None = None
    ) -> None:
        """Make `file_id` known to getFile and downloadable with `content`."""
        with self._condition:
            serial = self._next_serial()
            stored = _StoredFile(
                file_id=file_id,
                file_unique_id=f"u{serial}",
                file_path=file_path or f"documents/file_{serial}",
                size=len(content),
                content=bytes(content),
            )
            self._remember_file(stored)

    # Updates

    def user(
        self,
        id: int | None = None,
        first_name: str = "Ada",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> FakeUser:
        """Create a fake user whose private chat with the bot is known."""
        with self._condition:
            if id is None:
                self._last_user_id += 1
                id = self._last_user_id
            user = FakeUser(self, id, first_name, last_name, username, language_code)
            self._chats[id] = user.chat
        return user

    def group(
        self, id: int | None = None, title: str = "Team", *, supergroup: bool = False
    ) -> FakeChat:
        """Create a group (or supergroup) chat the fake users can write in."""
        with self._condition:
            if id is None:
                self._last_group_number += 1
                base = 1_001_000_000_000 if supergroup else 500_000_000
                id = -(base + self._last_group_number)
            chat = FakeChat(id, title, "supergroup" if supergroup else "group")
            self._chats[id] = chat.as_dict()
        return chat

    def group_added(
        self, group: FakeChat | dict[str, Any], by: FakeUser
    ) -> dict[str, Any]:
        """Build the my_chat_member update Telegram sends when the bot joins a group."""
        return self._membership_update(
            _chat_dict(group), by.as_dict(), "left", "member"
        )

    def next_update_id(self) -> int:
        """Reserve the next update_id; they only ever grow, even across reset()."""
        with self._condition:
            self._last_update_id += 1
            return self._last_update_id

    def push(self, update: dict[str, Any]) -> PushResult | None:
        """Deliver an update to the webhook, or queue it for getUpdates (None)."""
        with self._condition:
            self._observe_update(update)
            if not self._is_wanted(update):
                logger.info("update %s not in allowed_updates", update.get("update_id"))
                return None
            webhook = self._webhook
            if webhook is None:
                self._queue.append(copy.deepcopy(update))
                self._condition.notify_all()
                return None
            url, secret = webhook.url, webhook.secret_token

        return self._post_to_webhook(url, secret, update)

    def set_webhook(self, url: str, secret_token: str | None = None) -> None:
        """Set (or with an empty url remove) the webhook as setWebhook would."""
        with self._condition:
            self._configure_webhook(
                url, secret_token, None, _DEFAULT_MAX_CONNECTIONS, drop_pending=False
            )

    # Internals: state

    def _clear_state(self) -> None:
        self._calls: list[Call] = []
        self._failures: list[_FailureRule] = []
        self._drops: list[_DropRule] = []
        self._delays: dict[str | None, float] = {}
        self._blocked: set[int | str | None] = set()
        self._webhook: _Webhook | None = None
        self._allowed_updates: list[str] | None = None
        self._queue: list[dict[str, Any]] = []
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._commands: dict[tuple[str, str], list[Any]] = {}
        self._menu_buttons: dict[int | str | None, Any] = {}

    def _next_serial(self) -> int:
        with self._condition:
            self._serial += 1
            return self._serial

    def _next_message_id(self, chat_id: int) -> int:
        with self._condition:
            message_id = self._message_ids.get(chat_id, 0) + 1
            self._message_ids[chat_id] = message_id
            return message_id

    def _bot_id(self) -> int:
        prefix = self.token.split(":", 1)[0]
        return int(prefix) if prefix.isdigit() else 123456

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self._bot_id(),
            "is_bot": True,
            "first_name": self.bot_name,
            "username": self.bot_username,
        }

    def _is_from_bot(self, message: dict[str, Any]) -> bool:
        sender = message.get("from") or {}
        return bool(sender.get("is_bot")) and sender.get("id") == self._bot_id()

    def _remember_file(self, stored: _StoredFile) -> None:
        previous = self._files.get(stored.file_id)
        if previous is not None:
            self._file_paths.pop(previous.file_path, None)
        self._files[stored.file_id] = stored
        self._file_paths[stored.file_path] = stored.file_id

    def _store_file(
        self,
        folder: str,
        extension: str,
        size: int,
        content: bytes | None = None,
        file_id: str | None = None,
    ) -> _StoredFile:
        if file_id is not None and file_id in self._files:
            return self._files[file_id]

        serial = self._next_serial()
        stored = _StoredFile(
            file_id=file_id or f"{folder}-{serial}",
            file_unique_id=f"u{serial}",
            file_path=f"{folder}/file_{serial}.{extension}",
            size=len(content) if content is not None else size,
            content=content,
        )
        self._remember_file(stored)
        return stored

    def _make_media(
        self,
        kind: str,
        *,
        file_id: str | None = None,
        content: bytes | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
        duration: int | None = None,
        emoji: str | None = None,
    ) -> Any:
        """Register the file(s) behind a media object and return its Bot API form."""
        if kind == "photo":
            return self._make_photo_sizes(file_id, content)

        spec = _MEDIA_KINDS[kind]
        extension = _extension_of(file_name) or spec.extension
        with self._condition:
            stored = self._store_file(
                spec.folder, extension, spec.size, content, file_id
            )
        media: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
        }

        default_name = stored.file_path.rsplit("/", 1)[-1]
        if kind == "document":
            name = file_name or default_name
            media["file_name"] = name
            media["mime_type"] = _pick_mime_type(mime_type, name)
        elif kind == "voice":
            media["duration"] = duration or 3
            media["mime_type"] = spec.mime_type
        elif kind in ("video", "animation"):
            width, height = (1280, 720) if kind == "video" else (480, 270)
            media.update(width=width, height=height, duration=duration or 5)
            media["file_name"] = file_name or default_name
            media["mime_type"] = _pick_mime_type(mime_type, media["file_name"], spec)
        elif kind == "audio":
            media["duration"] = duration or 184
            media["file_name"] = file_name or default_name
            media["mime_type"] = _pick_mime_type(mime_type, media["file_name"], spec)
        elif kind == "sticker":
            media.update(type="regular", width=512, height=512)
            media.update(is_animated=False, is_video=False)
            if emoji:
                media["emoji"] = emoji

        media["file_size"] = stored.size
        return media

    def _make_photo_sizes(
        self, file_id: str | None, content: bytes | None
    ) -> list[dict[str, Any]]:
        sizes = []
        with self._condition:
            for index, (width, height, size) in enumerate(_PHOTO_SIZES):
                is_largest = index == len(_PHOTO_SIZES) - 1
                stored = self._store_file(
                    "photos",
                    "jpg",
                    size,
                    content if is_largest else None,
                    file_id if is_largest else None,
                )
                sizes.append(
                    {
                        "file_id": stored.file_id,
                        "file_unique_id": stored.file_unique_id,
                        "file_size": stored.size,
                        "width": width,
                        "height": height,
                    }
                )
        return sizes

    def _membership_update(
        self,
        chat: dict[str, Any],
        actor: dict[str, Any],
        old_status: str,
        new_status: str,
    ) -> dict[str, Any]:
        bot = self._bot_user()
        return {
            "update_id": self.next_update_id(),
            "my_chat_member": {
                "chat": chat,
                "from": actor,
                "date": _now(),
                "old_chat_member": _chat_member(bot, old_status),
                "new_chat_member": _chat_member(bot, new_status),
            },
        }

    def _observe_update(self, update: dict[str, Any]) -> None:
        """Keep the fake's own state in line with what the update says happened."""
        for kind in ("message", "edited_message", "channel_post"):
            message = update.get(kind)
            if isinstance(message, dict) and "chat" in message:
                key = (message["chat"].get("id"), message.get("message_id"))
                self._messages[key] = copy.deepcopy(message)

        membership = update.get("my_chat_member")
        if not isinstance(membership, dict):
            return
        chat_id = (membership.get("chat") or {}).get("id")
        status = (membership.get("new_chat_member") or {}).get("status")
        if status in ("kicked", "left"):
            self._blocked.add(chat_id)
        elif status in ("member", "administrator", "creator"):
            self._blocked.discard(chat_id)

    def _is_wanted(self, update: dict[str, Any]) -> bool:
        kinds = [key for key in update if key != "update_id"]
        if not kinds:
            return True
        if self._allowed_updates:
            return kinds[0] in self._allowed_updates
        return kinds[0] not in _OPT_IN_UPDATES

    def _configure_webhook(
        self,
        url: str,
        secret_token: str | None,
        allowed_updates: list[str] | None,
        max_connections: int,
        *,
        drop_pending: bool,
    ) -> str:
        if secret_token is not None and not _SECRET_TOKEN.match(secret_token):
            raise ApiError(
                400, "Bad Request: secret token contains unallowed characters"
            )

        if drop_pending:
            self._queue.clear()
        if allowed_updates is not None:
            self._allowed_updates = allowed_updates

        previous = self._webhook
        self._webhook = _Webhook(url, secret_token, max_connections) if url else None
        # A long poll in progress has to notice the webhook and end with 409.
        self._condition.notify_all()

        if not url:
            return "Webhook was deleted" if previous else "Webhook is already deleted"
        if previous is not None and previous.url == url:
            return "Webhook is already set"
        return "Webhook was set"

    def _post_to_webhook(
        self, url: str, secret: str | None, update: dict[str, Any]
    ) -> PushResult:
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        request = urllib.request.Request(
            url, data=json.dumps(update).encode(), headers=headers, method="POST"
        )

        try:
            with self._opener.open(request, timeout=_WEBHOOK_TIMEOUT) as response:
                status = response.status
                text = response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            status = error.code
            text = error.read().decode("utf-8", "replace")
            error.close()
        except (OSError, http.client.HTTPException) as error:
            # Unreachable, or cut off before its answer was whole, as when the
            # server dies mid-response: Telegram delivers the update again.
            logger.info("webhook unreachable: %s", error)
            self._note_webhook_error(f"Connection failed: {error}")
            return PushResult(0, None, str(error))

        answer = _parse_json(text)
        if not 200 <= status < 300:
            logger.info("webhook answered %s", status)
            self._note_webhook_error(f"Wrong response from the webhook: {status}")
        elif isinstance(answer, dict) and isinstance(answer.get("method"), str):
            # Telegram runs a method returned in the webhook answer as a call.
            params = {key: value for key, value in answer.items() if key != "method"}
            request = _Request(_decode_fields(params))
            self._announce(self._serve(answer["method"], request, self.token))
        return PushResult(status, answer, text)

    def _note_webhook_error(self, message: str) -> None:
        with self._condition:
            if self._webhook is not None:
                self._webhook.last_error_date = _now()
                self._webhook.last_error_message = message

    # Internals: serving

    def _serve(self, method_name: str, request: _Request, token: str) -> Call:
        """Record, delay, maybe drop, and answer one call; return the Call."""
        method = self._canonical_method(method_name)
        with self._condition:
            call = Call(
                method=method,
                params=request.params,
                token=token,
                at=time.monotonic(),
                chat_id=_coerce_chat_id(request.params.get("chat_id")),
            )
            self._calls.append(call)
            self._condition.notify_all()
            dropped = _take_rule(self._drops, method)
            pause = self._delays.get(method.lower(), self._delays.get(None, 0.0))

        if dropped:
            logger.debug("dropping the connection of a %s call", method)
            return call
        if pause:
            self._stopping.wait(pause)

        try:
            outcome = self._dispatch(method, request, token)
        except ApiError as error:
            status, payload = error.error_code, error.as_payload()
        else:
            status, payload = 200, outcome.as_payload()
        with self._condition:
            call.status = status
            call.response = payload
            self._condition.notify_all()
        logger.debug("%s answered %s", method, status)
        return call

    def _dispatch(self, method: str, request: _Request, token: str) -> _Ok:
        if token != self.token:
            raise ApiError(401, "Unauthorized")
        if request.error is not None:
            raise request.error
        known = self._handlers.get(method.lower())
        if known is None:
            raise ApiError(404, "Not Found")
        handler = known[1]

        chat_id = _coerce_chat_id(request.params.get("chat_id"))
        with self._condition:
            rule = _take_rule(self._failures, method, chat_id)
            if rule is not None:
                raise ApiError(rule.error_code, rule.description, rule.retry_after)
            result = handler(request.params, request.uploads)
        return result if isinstance(result, _Ok) else _Ok(result)

    def _announce(self, call: Call) -> None:
        with self._condition:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(call)

    def _canonical_method(self, name: str) -> str:
        known = self._handlers.get(name.lower())
        return known[0] if known is not None else name

    def _download(self, token: str, file_path: str) -> tuple[int, bytes, str]:
        if token != self.token:
            return _json_answer(ApiError(401, "Unauthorized").as_payload())
        with self._condition:
            file_id = self._file_paths.get(file_path)
            stored = self._files.get(file_id) if file_id else None
        if stored is None:
            return _json_answer(ApiError(404, "Not Found").as_payload())

        return 200, stored.data(), "application/octet-stream"

    def _build_handlers(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        """Map lower-cased method names (Telegram ignores case) to handlers."""
        handlers: dict[str, Callable[..., Any]] = {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "sendChatAction": self._send_chat_action,
            "setMessageReaction": self._set_message_reaction,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": self._set_chat_menu_button,
            "getChatMenuButton": self._get_chat_menu_button,
            "getFile": self._get_file,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
        }
        for name, kind in _MEDIA_METHODS.items():
            handlers[name] = self._media_sender(kind)
        return {name.lower(): (name, handler) for name, handler in handlers.items()}

    # Internals: chats and messages

    def _chat_for(self, raw_chat_id: Any) -> dict[str, Any]:
        if raw_chat_id is None or raw_chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat_id = _coerce_chat_id(raw_chat_id)
        if not isinstance(chat_id, int) or isinstance(chat_id, bool) or chat_id == 0:
            raise ApiError(400, "Bad Request: chat not found")

        known = self._chats.get(chat_id)
        if known is not None:
            return dict(known)
        return _placeholder_chat(chat_id)

    def _target_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for(params.get("chat_id"))
        if chat["id"] in self._blocked:
            raise ApiError(403, _BLOCKED_DESCRIPTIONS.get(chat["type"], "Forbidden"))
        return chat

    def _new_bot_message(
        self, chat: dict[str, Any], content: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat["id"]),
            "from": self._bot_user(),
            "chat": chat,
            "date": _now(),
        }
        replied = self._replied_message(chat["id"], params)
        if replied is not None:
            message["reply_to_message"] = replied
        message.update(content)
        markup = _inline_markup(params)
        if markup is not None:
            message["reply_markup"] = markup

        self._messages[(chat["id"], message["message_id"])] = message
        return copy.deepcopy(message)

    def _replied_message(
        self, chat_id: int, params: dict[str, Any]
    ) -> dict[str, Any] | None:
        reply_parameters = params.get("reply_parameters")
        if isinstance(reply_parameters, dict):
            raw_id = reply_parameters.get("message_id")
        else:
            raw_id = params.get("reply_to_message_id")
        message_id = _coerce_chat_id(raw_id)
        replied = self._messages.get((chat_id, message_id))
        if replied is None:
            return None
        return {
            key: value for key, value in replied.items() if key != "reply_to_message"
        }

    def _editable_message(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """Find the bot message an edit targets; None for inline messages."""
        if params.get("inline_message_id"):
            return None
        chat = self._chat_for(params.get("chat_id"))
        message_id = _int_param(params, "message_id")
        if message_id is None:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        message = self._messages.get((chat["id"], message_id))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if not self._is_from_bot(message):
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    def _store_edit(
        self, original: dict[str, Any], changes: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        edited = {
            key: value for key, value in original.items() if key != "reply_markup"
        }
        edited.update(changes)
        markup = _inline_markup(params)
        if markup is not None:
            edited["reply_markup"] = markup
        if _same_content(original, edited):
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content "
                "and reply markup are exactly the same as a current content and reply "
                "markup of the message",
            )

        edited["edit_date"] = _now()
        self._messages[(original["chat"]["id"], original["message_id"])] = edited
        return copy.deepcopy(edited)

    def _media_sender(self, kind: str) -> Callable[..., Any]:
        def send(params: dict[str, Any], uploads: dict[str, bytes]) -> dict[str, Any]:
            chat = self._target_chat(params)
            media = self._media_from_request(kind, params, uploads)
            content: dict[str, Any] = {kind: media}
            if kind == "animation":
                # Telegram keeps a document copy of animations for older clients.
                content["document"] = {
                    key: value
                    for key, value in media.items()
                    if key not in ("width", "height", "duration")
                }
            caption = _formatted_text(params, "caption")
            if caption and kind != "sticker":
                if len(caption) > _CAPTION_LIMIT:
                    raise ApiError(400, "Bad Request: message caption is too long")
                content["caption"] = caption
            return self._new_bot_message(chat, content, params)

        return send

    def _media_from_request(
        self, kind: str, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> Any:
        field_name = kind
        source = params.get(kind)
        if isinstance(source, str) and source.startswith("attach://"):
            field_name = source.removeprefix("attach://")
            source = params.get(field_name)

        if isinstance(source, dict) and field_name in uploads:
            return self._make_media(
                kind,
                content=uploads[field_name],
                file_name=source.get("filename"),
                mime_type=source.get("content_type"),
            )
        if isinstance(source, str) and source.strip():
            if source.startswith(("http://", "https://")):
                return self._make_media(kind, file_name=source.rsplit("/", 1)[-1])
            return self._make_media(kind, file_id=source)
        raise ApiError(400, f"Bad Request: there is no {kind} in the request")

    # Bot API methods. Each runs with the lock held and takes (params, uploads).

    def _get_me(self, params: dict[str, Any], uploads: dict[str, bytes]) -> dict:
        """Answer getMe with the bot's User object."""
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _send_message(self, params: dict[str, Any], uploads: dict[str, bytes]) -> dict:
        """Answer sendMessage with the sent Message."""
        chat = self._target_chat(params)
        text = _formatted_text(params, "text")
        if not text or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > _MESSAGE_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")

        content: dict[str, Any] = {"text": text}
        if isinstance(params.get("entities"), list):
            content["entities"] = params["entities"]
        return self._new_bot_message(chat, content, params)

    def _send_chat_action(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> bool:
        """Answer sendChatAction with true for a known action."""
        self._target_chat(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    def _set_message_reaction(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> bool:
        """Answer setMessageReaction with true."""
        self._chat_for(params.get("chat_id"))
        if _int_param(params, "message_id") is None:
            raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        reaction = params.get("reaction")
        if reaction is not None and not isinstance(reaction, list):
            raise ApiError(400, "Bad Request: can't parse reaction types JSON object")
        return True

    def _edit_message_text(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> Any:
        """Answer editMessageText with the edited Message (true when inline)."""
        text = _formatted_text(params, "text")
        if not text or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > _MESSAGE_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        original = self._editable_message(params)
        if original is None:
            return True

        return self._store_edit(original, {"text": text}, params)

    def _edit_message_reply_markup(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> Any:
        """Answer editMessageReplyMarkup with the edited Message (true when inline)."""
        original = self._editable_message(params)
        if original is None:
            return True

        return self._store_edit(original, {}, params)

    def _delete_message(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> bool:
        """Answer deleteMessage with true and forget the message."""
        chat = self._chat_for(params.get("chat_id"))
        message_id = _int_param(params, "message_id")
        if message_id is None:
            raise ApiError(400, "Bad Request: message identifier is not specified")

        self._messages.pop((chat["id"], message_id), None)
        return True

    def _answer_callback_query(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> bool:
        """Answer answerCallbackQuery with true."""
        if not params.get("callback_query_id"):
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired "
                "or query ID is invalid",
            )
        if len(str(params.get("text") or "")) > _CALLBACK_ANSWER_LIMIT:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    def _set_my_commands(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> bool:
        """Answer setMyCommands with true after checking each command."""
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict):
                raise ApiError(400, "Bad Request: can't parse BotCommand JSON object")
            if not _COMMAND_NAME.match(str(command.get("command", "")).lstrip("/")):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description") or "")) <= 256:
                raise ApiError(400, "Bad Request: command description is empty")

        self._commands[_commands_key(params)] = commands
        return True

    def _get_my_commands(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> list:
        """Answer getMyCommands with the commands set for the scope."""
        return self._commands.get(_commands_key(params), [])

    def _delete_my_commands(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> bool:
        """Answer deleteMyCommands with true."""
        self._commands.pop(_commands_key(params), None)
        return True

    def _set_chat_menu_button(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> bool:
        """Answer setChatMenuButton with true."""
        button = params.get("menu_button", {"type": "default"})
        if not isinstance(button, dict) or "type" not in button:
            raise ApiError(400, "Bad Request: can't parse menu button JSON object")

        self._menu_buttons[_coerce_chat_id(params.get("chat_id"))] = button
        return True

    def _get_chat_menu_button(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> dict:
        """Answer getChatMenuButton with the button set for the chat."""
        chat_id = _coerce_chat_id(params.get("chat_id"))
        default = self._menu_buttons.get(None, {"type": "commands"})
        return self._menu_buttons.get(chat_id, default)

    def _get_file(self, params: dict[str, Any], uploads: dict[str, bytes]) -> dict:
        """Answer getFile with the File object of a known file_id."""
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")

        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }

    def _set_webhook(self, params: dict[str, Any], uploads: dict[str, bytes]) -> _Ok:
        """Answer setWebhook with true and remember url, secret and update types."""
        secret = params.get("secret_token")
        allowed_updates = None
        if "allowed_updates" in params:
            allowed_updates = _update_types(params["allowed_updates"])
        description = self._configure_webhook(
            str(params.get("url") or ""),
            None if secret in (None, "") else str(secret),
            allowed_updates,
            _int_param(params, "max_connections") or _DEFAULT_MAX_CONNECTIONS,
            drop_pending=_truthy(params.get("drop_pending_updates")),
        )
        return _Ok(True, description)

    def _delete_webhook(self, params: dict[str, Any], uploads: dict[str, bytes]) -> _Ok:
        """Answer deleteWebhook with true."""
        description = self._configure_webhook(
            "",
            None,
            None,
            _DEFAULT_MAX_CONNECTIONS,
            drop_pending=_truthy(params.get("drop_pending_updates")),
        )
        return _Ok(True, description)

    def _get_webhook_info(
        self, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> dict:
        """Answer getWebhookInfo with the current webhook settings."""
        info: dict[str, Any] = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        webhook = self._webhook
        if webhook is None:
            return info

        info["url"] = webhook.url
        info["max_connections"] = webhook.max_connections
        info["ip_address"] = "127.0.0.1"
        if self._allowed_updates:
            info["allowed_updates"] = list(self._allowed_updates)
        if webhook.last_error_date is not None:
            info["last_error_date"] = webhook.last_error_date
            info["last_error_message"] = webhook.last_error_message
        return info

    def _get_updates(self, params: dict[str, Any], uploads: dict[str, bytes]) -> list:
        """Answer getUpdates, long-polling up to `timeout` seconds for new updates."""
        if self._webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int_param(params, "offset")
        limit = min(max(_int_param(params, "limit") or 100, 1), 100)
        timeout = max(_float_param(params, "timeout"), 0.0)
        if "allowed_updates" in params:
            self._allowed_updates = _update_types(params["allowed_updates"])

        if offset is not None and offset < 0:
            self._queue = self._queue[offset:]
        elif offset is not None:
            self._queue = [u for u in self._queue if u["update_id"] >= offset]

        # A newer getUpdates or a setWebhook ends this poll, as on Telegram.
        self._poll_generation += 1
        generation = self._poll_generation
        deadline = time.monotonic() + timeout
        while True:
            if self._webhook is not None:
                raise ApiError(409, "Conflict: terminated by setWebhook request")
            if generation != self._poll_generation:
                raise ApiError(409, _DEFAULT_DESCRIPTIONS[409])
            if self._queue or self._stopping.is_set():
                return copy.deepcopy(self._queue[:limit])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._condition.wait(remaining)


class FakeUser:
    """Build the updates one Telegram user would cause by talking to the bot."""

    def __init__(
        self,
        telegram: FakeTelegram,
        id: int,
        first_name: str = "Ada",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> None:
        self.telegram = telegram
        self.id = id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.last_message: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"FakeUser(id={self.id}, first_name={self.first_name!r})"

    def as_dict(self) -> dict[str, Any]:
        """Return the Bot API User object."""
        user: dict[str, Any] = {
            "id": self.id,
            "is_bot": False,
            "first_name": self.first_name,
        }
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    @property
    def chat(self) -> dict[str, Any]:
        """Return the private Chat object between this user and the bot."""
        chat: dict[str, Any] = {
            "id": self.id,
            "first_name": self.first_name,
            "type": "private",
        }
        if self.last_name:
            chat["last_name"] = self.last_name
        if self.username:
            chat["username"] = self.username
        return chat

    def text(self, text: str) -> dict[str, Any]:
        """Build a text message update, marking a leading /command as bot_command."""
        return self._message_update(self.chat, _text_content(text))

    def say(self, text: str) -> PushResult | None:
        """Push a text message from this user."""
        return self.telegram.push(self.text(text))

    def text_in(self, group: FakeChat | dict[str, Any], text: str) -> dict[str, Any]:
        """Build a text message update this user sends in a group."""
        return self._message_update(_chat_dict(group), _text_content(text))

    def photo(self, caption: str | None = None) -> dict[str, Any]:
        """Build a photo message update with three sizes, smallest first."""
        content = {"photo": self.telegram._make_media("photo")}
        return self._message_update(self.chat, _with_caption(content, caption))

    def document(
        self,
        file_name: str = "report.pdf",
        mime_type: str = "application/pdf",
        caption: str | None = None,
    ) -> dict[str, Any]:
        """Build a document message update."""
        document = self.telegram._make_media(
            "document", file_name=file_name, mime_type=mime_type
        )
        return self._message_update(
            self.chat, _with_caption({"document": document}, caption)
        )

    def voice(self, duration: int = 3) -> dict[str, Any]:
        """Build a voice message update."""
        voice = self.telegram._make_media("voice", duration=duration)
        return self._message_update(self.chat, {"voice": voice})

    def video(self, duration: int = 5, caption: str | None = None) -> dict[str, Any]:
        """Build a video message update."""
        video = self.telegram._make_media(
            "video", duration=duration, file_name="video.mp4"
        )
        return self._message_update(self.chat, _with_caption({"video": video}, caption))

    def sticker(self, emoji: str = "👍") -> dict[str, Any]:
        """Build a sticker message update."""
        sticker = self.telegram._make_media("sticker", emoji=emoji)
        return self._message_update(self.chat, {"sticker": sticker})

    def location(self, latitude: float, longitude: float) -> dict[str, Any]:
        """Build a location message update."""
        location = {"latitude": latitude, "longitude": longitude}
        return self._message_update(self.chat, {"location": location})

    def contact(
        self,
        phone_number: str,
        first_name: str,
        last_name: str | None = None,
        user_id: int | None = None,
    ) -> dict[str, Any]:
        """Build a shared-contact message update."""
        contact: dict[str, Any] = {
            "phone_number": phone_number,
            "first_name": first_name,
        }
        if last_name:
            contact["last_name"] = last_name
        if user_id is not None:
            contact["user_id"] = user_id
        return self._message_update(self.chat, {"contact": contact})

    def edit(
        self, message_update_or_message_id: dict[str, Any] | int, new_text: str
    ) -> dict[str, Any]:
        """Build an edited_message update replacing the text of an earlier message."""
        original = _original_message(message_update_or_message_id)
        now = _now()
        message = {
            "message_id": original["message_id"],
            "from": self.as_dict(),
            "chat": original.get("chat", self.chat),
            "date": original.get("date", now),
            "edit_date": now,
            **_text_content(new_text),
        }
        self.last_message = message
        return {"update_id": self.telegram.next_update_id(), "edited_message": message}

    def callback(
        self, data: str, message: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Build a callback_query update for pressing a button with `data`."""
        if message is None:
            sent = self.telegram.sent_messages(self.id)
            message = sent[-1] if sent else self._placeholder_bot_message()
        return {
            "update_id": self.telegram.next_update_id(),
            "callback_query": {
                "id": str(self.telegram._next_serial() * 7919 + self.id),
                "from": self.as_dict(),
                "message": message,
                "chat_instance": str(abs(hash((self.id, "chat"))) % 10**18),
                "data": data,
            },
        }

    def group_added(self, group: FakeChat | dict[str, Any]) -> dict[str, Any]:
        """Build the my_chat_member update for this user adding the bot to a group."""
        return self.telegram.group_added(group, by=self)

    def blocks_bot(self) -> dict[str, Any]:
        """Build the my_chat_member update sent when this user blocks the bot."""
        return self.telegram._membership_update(
            self.chat, self.as_dict(), "member", "kicked"
        )

    def unblocks_bot(self) -> dict[str, Any]:
        """Build the my_chat_member update sent when this user unblocks the bot."""
        return self.telegram._membership_update(
            self.chat, self.as_dict(), "kicked", "member"
        )

    def _message_update(
        self, chat: dict[str, Any], content: dict[str, Any]
    ) -> dict[str, Any]:
        message = {
            "message_id": self.telegram._next_message_id(chat["id"]),
            "from": self.as_dict(),
            "chat": chat,
            "date": _now(),
            **content,
        }
        self.last_message = message
        return {"update_id": self.telegram.next_update_id(), "message": message}

    def _placeholder_bot_message(self) -> dict[str, Any]:
        return {
            "message_id": self.telegram._next_message_id(self.id),
            "from": self.telegram._bot_user(),
            "chat": self.chat,
            "date": _now(),
            "text": "…",
        }


class _FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeTelegram) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall on
        # machines without DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def forget(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _RequestHandler(BaseHTTPRequestHandler):
    server: _FakeServer
    protocol_version = "HTTP/1.1"
    server_version = "nginx/1.18.0"
    sys_version = ""
    # Headers and body go out in separate writes; with Nagle on, each keep-alive
    # answer would wait for the client's delayed ACK.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.forget(self.connection)

    def log_message(self, *args: Any) -> None:
        # The request line carries the bot token, so the stock access log is off.
        return

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except ValueError:
            self._send(*_json_answer(ApiError(400, "Bad Request").as_payload()))
            return

        file_match = _FILE_PATH.match(url.path)
        if file_match:
            token, file_path = unquote(file_match["token"]), unquote(file_match["path"])
            self._send(*fake._download(token, file_path))
            return
        api_match = _API_PATH.match(url.path)
        if not api_match:
            self._send(*_json_answer(ApiError(404, "Not Found").as_payload()))
            return

        request = _parse_request(url.query, self.headers.get("Content-Type", ""), body)
        call = fake._serve(
            unquote(api_match["method"]), request, unquote(api_match["token"])
        )
        if call.response is None:
            self.close_connection = True
            return
        self._send(*_json_answer(call.response, call.status or 200))
        fake._announce(call)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked_body(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline(65_537).split(b";")[0].strip(), 16)
            if size == 0:
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65_537)
        while self.rfile.readline(65_537) not in (b"\r\n", b"\n", b""):
            continue
        return b"".join(chunks)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client went away (or stop() closed the socket) mid-answer.
            self.close_connection = True


# Request parsing


def _parse_request(query: str, content_type: str, body: bytes) -> _Request:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    uploads: dict[str, bytes] = {}
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        if body and media_type == "application/json":
            decoded = json.loads(body)
            if not isinstance(decoded, dict):
                raise ApiError(400, "Bad Request: can't parse JSON object")
            params.update(decoded)
        elif body and media_type == "application/x-www-form-urlencoded":
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        elif body and media_type == "multipart/form-data":
            fields, uploads = _parse_multipart(content_type, body)
            params.update(fields)
    except ApiError as error:
        return _Request(params, uploads, error)
    except ValueError:
        return _Request(
            params, uploads, ApiError(400, "Bad Request: can't parse request")
        )

    return _Request(_decode_fields(params), uploads)


def _parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, Any], dict[str, bytes]]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode(
        "latin-1"
    )
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ApiError(400, "Bad Request: can't parse multipart/form-data")

    fields: dict[str, Any] = {}
    uploads: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = payload.decode(part.get_content_charset() or "utf-8")
            continue
        has_type = part.get("Content-Type") is not None
        fields[name] = {
            "filename": _undo_surrogates(filename),
            "size": len(payload),
            "content_type": part.get_content_type()
            if has_type
            else "application/octet-stream",
        }
        uploads[name] = payload
    return fields, uploads


def _undo_surrogates(text: str) -> str:
    """Recover UTF-8 header values the email parser kept as raw bytes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _decode_fields(params: dict[str, Any]) -> dict[str, Any]:
    return {name: _decode_field(name, value) for name, value in params.items()}


def _decode_field(name: str, value: Any) -> Any:
    if name not in _JSON_FIELDS or not isinstance(value, str):
        return value
    if not value.lstrip().startswith(("{", "[")):
        return value
    decoded = _parse_json(value)
    return value if decoded is None else decoded


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _json_answer(payload: dict[str, Any], status: int | None = None) -> tuple:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    code = status if status is not None else payload.get("error_code", 200)
    return code, body, "application/json"


# Parameter helpers


def _coerce_chat_id(value: Any) -> Any:
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    return value


def _int_param(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ApiError(400, f'Bad Request: parameter "{name}" must be an integer')
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    raise ApiError(400, f'Bad Request: parameter "{name}" must be an integer')


def _float_param(params: dict[str, Any], name: str) -> float:
    value = params.get(name)
    if value is None or value == "":
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ApiError(
            400, f'Bad Request: parameter "{name}" must be a number'
        ) from None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _update_types(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "Bad Request: can't parse allowed updates")
    return list(value) or None


def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
    scope = params.get("scope") or {"type": "default"}
    return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")


def _inline_markup(params: dict[str, Any]) -> dict[str, Any] | None:
    """Validate reply_markup and return it when Telegram would echo it back."""
    markup = params.get("reply_markup")
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict):
        raise ApiError(
            400, "Bad Request: can't parse reply keyboard markup JSON object"
        )
    keyboard = markup.get("inline_keyboard")
    if keyboard is None:
        return None
    if not isinstance(keyboard, list) or not all(isinstance(r, list) for r in keyboard):
        raise ApiError(400, "Bad Request: can't parse inline keyboard markup")

    for button in (button for row in keyboard for button in row):
        if not isinstance(button, dict) or not button.get("text"):
            raise ApiError(400, "Bad Request: can't parse inline keyboard button")
        if set(button) == {"text"}:
            raise ApiError(
                400,
                "Bad Request: can't parse inline keyboard button: "
                "Text buttons are unallowed in the inline keyboard",
            )
        data = button.get("callback_data")
        if (
            data is not None
            and not 1 <= len(str(data).encode()) <= _CALLBACK_DATA_LIMIT
        ):
            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return markup


def _same_content(before: dict[str, Any], after: dict[str, Any]) -> bool:
    ignored = ("edit_date",)
    return {k: v for k, v in before.items() if k not in ignored} == {
        k: v for k, v in after.items() if k not in ignored
    }


def _formatted_text(params: dict[str, Any], name: str) -> str | None:
    """Return the text as users would see it, rejecting malformed HTML."""
    raw = params.get(name)
    if raw is None:
        return None
    text = str(raw)
    if str(params.get("parse_mode") or "").lower() == "html":
        return _strip_telegram_html(text)
    return text


class _TelegramHtml(HTMLParser):
    """Strip the HTML subset Telegram accepts, noting the first thing it rejects."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.pieces: list[str] = []
        self.open_tags: list[str] = []
        self.problem: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.problem is not None:
            return
        if tag not in _HTML_TAGS:
            self.problem = (
                f'Unsupported start tag "{tag}" at byte offset {self._offset()}'
            )
            return
        self.open_tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.problem is not None:
            return
        if not self.open_tags or self.open_tags[-1] != tag:
            self.problem = f"Unexpected end tag at byte offset {self._offset()}"
            return
        self.open_tags.pop()

    def handle_data(self, data: str) -> None:
        self.pieces.append(data)

    def _offset(self) -> int:
        line, column = self.getpos()
        lines = self.source.split("\n")
        before = "\n".join(lines[: line - 1] + [lines[line - 1][:column]])
        return len(before.encode("utf-8"))


def _strip_telegram_html(text: str) -> str:
    parser = _TelegramHtml(text)
    parser.feed(text)
    parser.close()
    if parser.problem is None and parser.open_tags:
        tag = parser.open_tags[-1]
        parser.problem = f'Can\'t find end tag corresponding to start tag "{tag}"'
    if parser.problem is not None:
        raise ApiError(400, f"Bad Request: can't parse entities: {parser.problem}")

    return "".join(parser.pieces)


# Update building helpers


def _now() -> int:
    return int(time.time())


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _text_content(text: str) -> dict[str, Any]:
    content: dict[str, Any] = {"text": text}
    command = _BOT_COMMAND.match(text)
    if command:
        content["entities"] = [
            {
                "offset": 0,
                "length": _utf16_length(command.group()),
                "type": "bot_command",
            }
        ]
    return content


def _with_caption(content: dict[str, Any], caption: str | None) -> dict[str, Any]:
    if caption:
        content["caption"] = caption
    return content


def _chat_dict(chat: FakeChat | dict[str, Any]) -> dict[str, Any]:
    return chat.as_dict() if isinstance(chat, FakeChat) else dict(chat)


def _chat_member(user: dict[str, Any], status: str) -> dict[str, Any]:
    member: dict[str, Any] = {"user": user, "status": status}
    if status == "kicked":
        member["until_date"] = 0
    return member


def _original_message(reference: dict[str, Any] | int) -> dict[str, Any]:
    if isinstance(reference, int):
        return {"message_id": reference}
    for kind in ("message", "edited_message"):
        if isinstance(reference.get(kind), dict):
            return reference[kind]
    return reference


def _placeholder_chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "first_name": "User", "type": "private"}
    if chat_id <= -1_000_000_000_000:
        return {"id": chat_id, "title": "Group", "type": "supergroup"}
    return {"id": chat_id, "title": "Group", "type": "group"}


def _extension_of(file_name: str | None) -> str | None:
    if not file_name or "." not in file_name:
        return None
    return file_name.rsplit(".", 1)[-1].lower() or None


def _pick_mime_type(
    given: str | None, file_name: str, spec: _MediaKind | None = None
) -> str:
    if given and given != "application/octet-stream":
        return given
    guessed = mimetypes.guess_type(file_name)[0]
    if guessed:
        return guessed
    if spec is not None and spec.mime_type:
        return spec.mime_type
    return given or "application/octet-stream"


def _filler(size: int) -> bytes:
    block = bytes(range(256))
    return (block * (size // len(block) + 1))[:size]


def _default_description(error_code: int, retry_after: int | None) -> str:
    if error_code == 429:
        return f"Too Many Requests: retry after {retry_after}"
    known = _DEFAULT_DESCRIPTIONS.get(error_code)
    if known is not None:
        return known
    try:
        return HTTPStatus(error_code).phrase
    except ValueError:
        return "Error"


def _take_rule(rules: list, method: str, chat_id: Any = None) -> Any:
    """Use up one matching rule; return it, or None when none applies."""
    for rule in rules:
        if isinstance(rule, _FailureRule):
            matches = rule.matches(method, chat_id)
        else:
            matches = rule.method is None or rule.method.lower() == method.lower()
        if not matches:
            continue
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                rules.remove(rule)
        return rule
    return None


def _call_matches(
    call: Call, method: str | None, where: Callable[[Call], bool] | None
) -> bool:
    if method is not None and call.method.lower() != method.lower():
        return False
    return where is None or where(call)


def _describe_call(call: Call) -> str:
    params = json.dumps(call.params, ensure_ascii=False, default=str)
    if len(params) > 160:
        params = params[:157] + "..."
    outcome = "no answer yet" if call.status is None else f"-> {call.status}"
    return f"{call.method} {params} {outcome}"


def _wait_failure(
    method: str | None,
    count: int,
    timeout: float,
    where: Callable[[Call], bool] | None,
    matching: list[Call],
    recorded: list[Call],
) -> str:
    wanted = f"{count} call(s) to {method or 'any method'}"
    if where is not None:
        wanted += f" matching {getattr(where, '__name__', 'the predicate')}"
    lines = [f"expected {wanted} within {timeout}s, saw {len(matching)}."]
    lines.append("Recorded calls:" if recorded else "No calls were recorded.")
    lines.extend(
        f"  {number}. {_describe_call(call)}"
        for number, call in enumerate(recorded, start=1)
    )
    return "\n".join(lines)


# Terminal chat


_HELP = """\
Type a line to send it as a text message. Commands:
  :photo [caption]    send a photo
  :doc                send a PDF document
  :location           send a location
  :edit <text>        edit your last message
  :press <button>     press an inline button (its text or callback data)
  :block / :unblock   block or unblock the bot
  :user <id> <name>   continue as another user
  :help               show this help
  :quit               stop"""


class _TerminalChat:
    """Play one fake user from a terminal and print what the bot sends."""

    def __init__(self, telegram: FakeTelegram, output: TextIO) -> None:
        self.telegram = telegram
        self.output = output
        self.user = telegram.user()
        self._print_lock = threading.Lock()

    def run(self, lines: Iterable[str]) -> None:
        """Handle lines until :quit or the end of input."""
        for line in lines:
            if not self.handle(line.rstrip("\r\n")):
                return

    def handle(self, line: str) -> bool:
        """Act on one typed line; return False when the user asked to quit."""
        if not line.strip():
            return True
        if not line.startswith(":"):
            self._deliver(self.user.text(line))
            return True

        command, _, argument = line[1:].strip().partition(" ")
        argument = argument.strip()
        if command == "quit":
            return False
        if command == "help":
            self._print(_HELP)
        elif command == "photo":
            self._deliver(self.user.photo(caption=argument or None))
        elif command == "doc":
            self._deliver(self.user.document(caption=argument or None))
        elif command == "location":
            self._deliver(self.user.location(52.5200, 13.4050))
        elif command == "edit":
            self._edit(argument)
        elif command == "press":
            self._press(argument)
        elif command == "block":
            self._deliver(self.user.blocks_bot())
        elif command == "unblock":
            self._deliver(self.user.unblocks_bot())
        elif command == "user":
            self._switch_user(argument)
        else:
            self._print(f"(unknown command :{command}; :help lists them)")
        return True

    def show(self, call: Call) -> None:
        """Print a call the bot made if the user would notice it."""
        if call.status is None:
            return
        if call.status != 200:
            description = (call.response or {}).get("description")
            self._print(f"(bot call {call.method} failed: {description})")
            return
        text = _visible_text(call)
        if text is None:
            return

        speaker = (
            "bot" if call.chat_id in (None, self.user.id) else f"bot → {call.chat_id}"
        )
        lines = [f"{speaker}: {text}"]
        for row in _button_rows(call.params.get("reply_markup")):
            lines.append("     " + " ".join(f"[{label}]" for label in row))
        self._print("\n".join(lines))

    def _deliver(self, update: dict[str, Any]) -> None:
        result = self.telegram.push(update)
        if result is None or 200 <= result.status < 300:
            return
        if result.status == 0:
            self._print(f"(webhook unreachable: {result.text})")
        else:
            self._print(f"(webhook answered {result.status}: {result.text[:200]})")

    def _edit(self, text: str) -> None:
        if self.user.last_message is None or not text:
            self._print("(usage: :edit <text>, after sending a message)")
            return
        self._deliver(self.user.edit(self.user.last_message, text))

    def _press(self, label: str) -> None:
        for message in reversed(self.telegram.sent_messages(self.user.id)):
            keyboard = (message.get("reply_markup") or {}).get("inline_keyboard") or []
            for button in (button for row in keyboard for button in row):
                if label in (button.get("text"), button.get("callback_data")):
                    data = button.get("callback_data")
                    self._deliver(self.user.callback(data, message))
                    return
        self._print(f"(no inline button {label!r} in the bot's messages)")

    def _switch_user(self, argument: str) -> None:
        raw_id, _, name = argument.partition(" ")
        if not _INTEGER.match(raw_id):
            self._print("(usage: :user <id> <name>)")
            return
        self.user = self.telegram.user(id=int(raw_id), first_name=name.strip() or "Ada")
        self._print(f"(now chatting as {self.user.first_name}, id {self.user.id})")

    def _print(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.output, flush=True)


def _visible_text(call: Call) -> str | None:
    params = call.params
    if call.method == "sendMessage":
        return str(params.get("text", ""))
    if call.method in _MEDIA_METHODS:
        caption = params.get("caption")
        kind = _MEDIA_METHODS[call.method]
        return f"[{kind}] {caption}" if caption else f"[{kind}]"
    if call.method == "editMessageText":
        return f"(edited) {params.get('text', '')}"
    if call.method == "answerCallbackQuery" and params.get("text"):
        return f"(notice) {params['text']}"
    return None


def _button_rows(markup: Any) -> list[list[str]]:
    if not isinstance(markup, dict):
        return []
    keyboard = markup.get("inline_keyboard") or markup.get("keyboard") or []
    rows = []
    for row in keyboard:
        if not isinstance(row, list):
            continue
        labels = [b.get("text", "") if isinstance(b, dict) else str(b) for b in row]
        rows.append(labels)
    return rows


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m supportbot.fake_telegram",
        description="Run a fake Telegram Bot API and chat with the bot from here.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123456:TEST-TOKEN")
    parser.add_argument("--webhook", help="push updates to this URL")
    parser.add_argument("--secret", help="secret token sent with webhook pushes")
    arguments = parser.parse_args(argv)
    if arguments.secret and not arguments.webhook:
        parser.error("--secret only makes sense with --webhook")
    return arguments


def main(argv: list[str] | None = None) -> None:
    """Run the fake server and a terminal chat with the bot."""
    arguments = _parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    telegram = FakeTelegram(
        token=arguments.token, host=arguments.host, port=arguments.port
    )

    with telegram:
        if arguments.webhook:
            telegram.set_webhook(arguments.webhook, arguments.secret)
        chat = _TerminalChat(telegram, sys.stdout)
        telegram.add_listener(chat.show)
        print(f"Fake Telegram Bot API at {telegram.base_url}")
        print(f"Set TELEGRAM_API_URL={telegram.base_url} in the bot's environment.")
        if arguments.webhook:
            print(f"Updates are pushed to {arguments.webhook}.")
        else:
            print("Updates wait for the bot's getUpdates calls (long polling).")
        print("Type a message, or :help for commands.", flush=True)
        try:
            chat.run(sys.stdin)
        except KeyboardInterrupt:
            print()


if __name__ == "__main__":
    main()
