"""A small Bot API client whose errors never carry the bot token."""

import json
import logging
import threading

import requests

logger = logging.getLogger(__name__)


class TelegramError(Exception):
    """A Bot API call that did not succeed."""

    def __init__(self, method: str, reason: str, retryable: bool = True):
        super().__init__(f"{method}: {reason}")
        self.method = method
        self.reason = reason
        # Whether the same call may succeed when tried again later.
        self.retryable = retryable


class TelegramAPIError(TelegramError):
    """Telegram answered ``ok: false`` with an error code and a description."""

    def __init__(self, method, error_code, description, retry_after=None):
        retryable = error_code == 429 or error_code >= 500
        super().__init__(method, f"{error_code} {description}", retryable)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after


class TelegramNetworkError(TelegramError):
    """The call failed before Telegram answered: timed out, refused, reset."""


class BotAPI:
    """Call Bot API methods for one bot at a configurable base URL.

    Safe to share between threads: each thread keeps its own connections.
    """

    def __init__(self, token: str, base_url: str, timeout: float = 10):
        self._token = token
        self.base_url = base_url
        self.timeout = timeout
        self._local = threading.local()

    @property
    def _http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, method: str, params: dict | None = None, timeout=None, files=None):
        """Call ``method`` with ``params`` and return its ``result``.

        With ``files`` (field name to ``(file name, file object)``) the call is
        a multipart upload, as Telegram takes new files.
        """
        url = f"{self.base_url}/bot{self._token}/{method}"
        if files:
            request = {"data": _form_fields(params or {}), "files": files}
        else:
            request = {"json": params or {}}
        try:
            response = self._http.post(url, timeout=timeout or self.timeout, **request)
        except requests.ConnectTimeout:
            raise TelegramNetworkError(method, "timed out connecting") from None
        except requests.Timeout:
            # Telegram may have sent the message and only the answer was lost.
            raise TelegramNetworkError(
                method, "timed out waiting for the answer"
            ) from None
        except requests.RequestException as error:
            # The exception's text holds the URL, and with it the token.
            reason = type(error).__name__
            raise TelegramNetworkError(method, reason) from None

        try:
            body = response.json()
        except ValueError:
            raise TelegramAPIError(
                method, response.status_code, "answer was not JSON"
            ) from None

        if not isinstance(body, dict) or not body.get("ok"):
            body = body if isinstance(body, dict) else {}
            parameters = body.get("parameters") or {}
            raise TelegramAPIError(
                method,
                int(body.get("error_code") or response.status_code),
                str(body.get("description") or response.reason),
                parameters.get("retry_after") or _retry_after_header(response),
            )

        return body.get("result")

    def download(self, file_path: str, timeout=None) -> bytes:
        """Fetch a file's bytes by the ``file_path`` that ``getFile`` gave."""
        url = f"{self.base_url}/file/bot{self._token}/{file_path}"
        try:
            response = self._http.get(url, timeout=timeout or self.timeout)
        except requests.Timeout:
            raise TelegramNetworkError("download", "timed out") from None
        except requests.RequestException as error:
            raise TelegramNetworkError("download", type(error).__name__) from None

        if response.status_code != 200:
            raise TelegramAPIError("download", response.status_code, response.reason)
        return response.content


def _form_fields(params: dict) -> dict:
    # In a multipart call, objects such as reply_markup travel as JSON text.
    return {
        name: value if isinstance(value, str) else json.dumps(value)
        for name, value in params.items()
        if value is not None
    }


def _retry_after_header(response: requests.Response) -> int | None:
    # A proxy in front of the Bot API may answer 429 in HTTP terms only.
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None
