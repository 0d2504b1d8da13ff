"""Telegram Mini App ``initData``: checking its signature, and making signed data.

Telegram hands the Mini App a query string describing the user, signed with a
key derived from the bot token. Only that string, checked here, identifies a
customer; ``initDataUnsafe`` on the page is never sent or believed.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from ..customers import Profile

# Telegram's initData is well under a kilobyte; anything far larger is junk.
MAX_LENGTH = 16384
HASH_LENGTH = 64
# A client whose clock runs a little ahead is not refused for it.
CLOCK_SKEW = 300


class InitDataError(Exception):
    """The initData is missing, malformed, forged or too old; safe to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class InitData:
    """What a checked initData says: the user, and when Telegram signed it."""

    profile: Profile
    auth_date: int
    fields: Mapping[str, str]


def secret_key(bot_token: str) -> bytes:
    """Derive the key Telegram signs a bot's initData with."""
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def data_check_string(fields: Mapping[str, str]) -> str:
    """Join every field but ``hash``, sorted by key, as Telegram signs them."""
    return "\n".join(
        f"{key}={value}" for key, value in sorted(fields.items()) if key != "hash"
    )


def signature(fields: Mapping[str, str], bot_token: str) -> str:
    """Return the hex hash Telegram would attach to ``fields``."""
    message = data_check_string(fields).encode()
    return hmac.new(secret_key(bot_token), message, hashlib.sha256).hexdigest()


def sign(fields: Mapping[str, str], bot_token: str) -> str:
    """Make an initData string for ``fields`` signed as Telegram would sign it.

    For tests and local trials: it lets a page outside Telegram act as a user.
    """
    fields = {key: value for key, value in fields.items() if key != "hash"}
    return urlencode({**fields, "hash": signature(fields, bot_token)})


def sign_user(
    bot_token: str,
    user: Mapping,
    auth_date: int | None = None,
    **extra: str,
) -> str:
    """Make signed initData for ``user`` (a Telegram User object as a dict)."""
    fields = {
        "user": json.dumps(dict(user), separators=(",", ":"), ensure_ascii=False),
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
        **extra,
    }
    return sign(fields, bot_token)


def validate(
    init_data: str | None,
    bot_token: str,
    max_age: int,
    now: float | None = None,
) -> InitData:
    """Check ``init_data``'s signature and age, and return who it names.

    ``max_age`` is in seconds; 0 accepts any age. Raises :class:`InitDataError`.
    """
    if not bot_token:
        raise InitDataError("The bot is not configured, so nobody can sign in.")
    fields = _fields(init_data)

    received = fields.get("hash", "")
    if len(received) != HASH_LENGTH:
        raise InitDataError("The sign-in data carries no valid signature.")
    expected = signature(fields, bot_token)
    if not hmac.compare_digest(expected.encode(), received.encode()):
        raise InitDataError("The sign-in data's signature does not match.")

    auth_date = _auth_date(fields, max_age, time.time() if now is None else now)
    return InitData(profile=_profile(fields), auth_date=auth_date, fields=fields)


def _fields(init_data: str | None) -> dict[str, str]:
    if not init_data or not isinstance(init_data, str):
        raise InitDataError("Open this page from the bot in Telegram to sign in.")
    if len(init_data) > MAX_LENGTH:
        raise InitDataError("The sign-in data is too long.")

    try:
        pairs = parse_qsl(
            init_data, keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except (ValueError, UnicodeDecodeError):
        raise InitDataError("The sign-in data cannot be read.") from None

    fields = dict(pairs)
    # A repeated key would let the signed value and the used value differ.
    if len(fields) != len(pairs):
        raise InitDataError("The sign-in data repeats a field.")
    if "" in fields:
        raise InitDataError("The sign-in data cannot be read.")
    return fields


def _auth_date(fields: Mapping[str, str], max_age: int, now: float) -> int:
    raw = fields.get("auth_date", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise InitDataError("The sign-in data has no valid date.")

    auth_date = int(raw)
    if max_age > 0 and now - auth_date > max_age:
        raise InitDataError("The sign-in data has expired: close and reopen the app.")
    if max_age > 0 and auth_date - now > CLOCK_SKEW:
        raise InitDataError("The sign-in data is dated in the future.")
    return auth_date


def _profile(fields: Mapping[str, str]) -> Profile:
    try:
        user = json.loads(fields.get("user", ""))
    except ValueError:
        user = None
    if not isinstance(user, dict):
        raise InitDataError("The sign-in data names no user.")

    user_id = user.get("id")
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise InitDataError("The sign-in data names no user.")
    if not 0 < user_id < 2**53:
        raise InitDataError("The sign-in data names no user.")

    return Profile(
        id=user_id,
        first_name=_text(user.get("first_name"), 256) or "",
        last_name=_text(user.get("last_name"), 256),
        username=_text(user.get("username"), 64),
        language_code=_text(user.get("language_code"), 16),
    )


def _text(value, length: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:length]
