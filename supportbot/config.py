"""Settings read from the environment, with defaults that run on one machine."""

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def database_url(url: str | None, instance_path: str) -> str:
    """Return the SQLAlchemy URL for ``url``, defaulting to SQLite in the instance."""
    if not url:
        return "sqlite:///" + os.path.join(instance_path, "supportbot.sqlite")

    # Hosting platforms hand out postgres:// URLs, and SQLAlchemy maps a bare
    # postgresql:// to psycopg 3; the project is built on psycopg2.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url.removeprefix(prefix)

    return url


DEFAULT_POOL_SIZE = 20


def engine_options(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> dict:
    """Return engine options suited to the database behind ``url``."""
    if url.startswith("sqlite"):
        # Writers queue for the lock rather than failing at once.
        return {"connect_args": {"timeout": 30}}
    # A gevent worker serves many requests at once, and connections beyond
    # the pool are opened for one request and closed after it.
    return {"pool_pre_ping": True, "pool_size": pool_size}


def development_secret_key(instance_path: str) -> str:
    """Return the key kept in the instance folder, creating it on first use."""
    path = Path(instance_path, "secret_key")
    if path.exists():
        return path.read_text().strip()

    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


class Config:
    """Settings for one process, read from environment variables.

    Everything has a default that runs on one machine, except what production
    must not guess: a missing ``SECRET_KEY``, or a bot token without a webhook
    secret, stops the app with a message naming the variable to set.
    """

    def __init__(self, instance_path: str, environ: Mapping[str, str] = os.environ):
        self._environ = environ
        env = self._str("SUPPORTBOT_ENV", "development")
        if env not in ("development", "production"):
            raise ConfigError("SUPPORTBOT_ENV must be 'development' or 'production'.")
        production = env == "production"

        self.SUPPORTBOT_ENV = env
        self.SECRET_KEY = self._str("SECRET_KEY")
        if not self.SECRET_KEY:
            if production:
                raise ConfigError(
                    "SECRET_KEY is not set. Set it to a long random string, such as"
                    " the output of: python -c 'import secrets;"
                    " print(secrets.token_urlsafe(48))'"
                )
            self.SECRET_KEY = development_secret_key(instance_path)

        self.SQLALCHEMY_DATABASE_URI = database_url(
            self._str("DATABASE_URL"), instance_path
        )
        self.DATABASE_POOL_SIZE = self._int("DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE)
        if self.DATABASE_POOL_SIZE < 1:
            raise ConfigError("DATABASE_POOL_SIZE must be at least 1.")
        self.SQLALCHEMY_ENGINE_OPTIONS = engine_options(
            self.SQLALCHEMY_DATABASE_URI, self.DATABASE_POOL_SIZE
        )
        self.TELEGRAM_BOT_TOKEN = self._str("TELEGRAM_BOT_TOKEN")
        self.TELEGRAM_WEBHOOK_SECRET = self._str("TELEGRAM_WEBHOOK_SECRET")
        if production and self.TELEGRAM_BOT_TOKEN and not self.TELEGRAM_WEBHOOK_SECRET:
            raise ConfigError(
                "TELEGRAM_WEBHOOK_SECRET is not set. Telegram sends it with every"
                " update so that nobody else can post to the webhook: set it to"
                " 1-256 characters from A-Z, a-z, 0-9, _ and -."
            )
        self.TELEGRAM_API_URL = (
            self._str("TELEGRAM_API_URL").rstrip("/") or DEFAULT_TELEGRAM_API_URL
        )
        self.TELEGRAM_TIMEOUT = self._int("TELEGRAM_TIMEOUT", 10)
        self.TELEGRAM_MAX_UPDATE_BYTES = self._int("TELEGRAM_MAX_UPDATE_BYTES", 262144)
        # Threads of each process that handle the updates the webhook stores.
        self.TELEGRAM_HANDLERS = self._int("TELEGRAM_HANDLERS", 2)
        if self.TELEGRAM_HANDLERS < 0:
            raise ConfigError("TELEGRAM_HANDLERS must be 0 (off) or more.")
        self.PUBLIC_URL = self._str("PUBLIC_URL").rstrip("/")
        self.REDIS_URL = self._str("REDIS_URL")
        self.OUTBOX_WORKER = self._str(
            "OUTBOX_WORKER", "off" if production else "thread"
        )
        if self.OUTBOX_WORKER not in ("thread", "off"):
            raise ConfigError("OUTBOX_WORKER must be 'thread' or 'off'.")
        self.OUTBOX_RETRY_DEADLINE = self._int("OUTBOX_RETRY_DEADLINE", 86400)
        self.OUTBOX_BACKOFF_MAX = self._int("OUTBOX_BACKOFF_MAX", 300)
        # Rates are "messages/seconds"; the outbox checks them when the app starts.
        self.OUTBOX_RATE = self._str("OUTBOX_RATE", "25/1")
        self.OUTBOX_RATE_PRIVATE = self._str("OUTBOX_RATE_PRIVATE", "3/3")
        self.OUTBOX_RATE_GROUP = self._str("OUTBOX_RATE_GROUP", "1/3")
        self.OUTBOX_LEASE = self._int("OUTBOX_LEASE", 60)
        self.OUTBOX_SENDERS = self._int("OUTBOX_SENDERS", 8)
        self.LOG_LEVEL = self._str("LOG_LEVEL", "INFO").upper()
        self.LOG_FORMAT = self._str("LOG_FORMAT", "text")
        if self.LOG_FORMAT not in ("text", "json"):
            raise ConfigError("LOG_FORMAT must be 'text' or 'json'.")
        self.LOG_TO_DATABASE = self._str("LOG_TO_DATABASE", "on") != "off"
        self.LOG_QUEUE_SIZE = self._int("LOG_QUEUE_SIZE", 10000)
        self.LOG_RETENTION_DAYS = self._int("LOG_RETENTION_DAYS", 14)
        self.METRICS_TOKEN = self._str("METRICS_TOKEN")
        self.SOCKETIO_ASYNC_MODE = self._str("SOCKETIO_ASYNC_MODE", "threading")
        if self.SOCKETIO_ASYNC_MODE not in ("threading", "gevent"):
            raise ConfigError("SOCKETIO_ASYNC_MODE must be 'threading' or 'gevent'.")
        self.RATELIMIT_STORAGE_URI = self.REDIS_URL or "memory://"
        # While Redis is unreachable, Flask-Limiter keeps the sign-in limits in
        # this process's memory instead of failing every sign-in.
        self.RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
        if self.REDIS_URL:
            # A Redis that stops answering delays a sign-in by seconds at most.
            self.RATELIMIT_STORAGE_OPTIONS = {
                "socket_timeout": 2,
                "socket_connect_timeout": 2,
            }
        self.LOGIN_RATE_LIMIT_PER_IP = self._str("LOGIN_RATE_LIMIT_PER_IP", "20/minute")
        self.LOGIN_RATE_LIMIT_PER_ACCOUNT = self._str(
            "LOGIN_RATE_LIMIT_PER_ACCOUNT", "5/minute"
        )
        self.TRUSTED_PROXIES = self._int("TRUSTED_PROXIES", 0)
        if self.TRUSTED_PROXIES < 0:
            raise ConfigError("TRUSTED_PROXIES must be 0 or more.")
        self.FIRST_RESPONSE_TARGET_MINUTES = self._int(
            "FIRST_RESPONSE_TARGET_MINUTES", 60
        )
        self.QUEUE_PAGE_SIZE = self._int("QUEUE_PAGE_SIZE", 50)
        self.ATTACHMENT_CACHE = os.path.join(instance_path, "files")
        self.UPLOAD_FOLDER = os.path.join(instance_path, "uploads")
        self.MINIAPP_INITDATA_MAX_AGE = self._int("MINIAPP_INITDATA_MAX_AGE", 86400)
        if self.MINIAPP_INITDATA_MAX_AGE < 0:
            raise ConfigError(
                "MINIAPP_INITDATA_MAX_AGE must be 0 (no limit) or a number of seconds."
            )
        self.MINIAPP_UPLOAD_MAX_BYTES = self._int(
            "MINIAPP_UPLOAD_MAX_BYTES", 50 * 1024 * 1024
        )
        if self.MINIAPP_UPLOAD_MAX_BYTES < 1:
            raise ConfigError("MINIAPP_UPLOAD_MAX_BYTES must be a positive size.")
        self.MAX_CONTENT_LENGTH = self._int("MAX_CONTENT_LENGTH", 16 * 1024 * 1024)
        self.SESSION_COOKIE_SECURE = production
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SECURE = production
        self.REMEMBER_COOKIE_SAMESITE = "Lax"

    def _str(self, name: str, default: str = "") -> str:
        return self._environ.get(name, "").strip() or default

    def _int(self, name: str, default: int) -> int:
        raw = self._str(name)
        if not raw:
            return default

        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
