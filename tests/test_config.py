"""Configuration from environment variables."""

import gc
import logging
import os
import runpy
from pathlib import Path
from unittest import mock

import pytest

from supportbot import create_app
from supportbot.config import Config, ConfigError, database_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg2://u:p@db:5432/app"),
        ("postgresql://u@db/app", "postgresql+psycopg2://u@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+psycopg2://u@db/app"),
        ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
    ],
)
def test_database_url_is_normalized(given, expected):
    assert database_url(given, "/instance") == expected


def test_database_defaults_to_sqlite_in_instance(tmp_path):
    config = Config(str(tmp_path), {})

    assert config.SQLALCHEMY_DATABASE_URI == f"sqlite:///{tmp_path}/supportbot.sqlite"


def test_development_secret_key_is_generated_once_and_kept(tmp_path):
    first = Config(str(tmp_path), {}).SECRET_KEY
    second = Config(str(tmp_path), {}).SECRET_KEY

    assert len(first) >= 32
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_refuses_to_start_without_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        Config(str(tmp_path), {"SUPPORTBOT_ENV": "production"})


def test_production_with_a_bot_needs_the_webhook_secret(tmp_path):
    environ = {
        "SUPPORTBOT_ENV": "production",
        "SECRET_KEY": "k" * 40,
        "TELEGRAM_BOT_TOKEN": "1:x",
    }

    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        Config(str(tmp_path), environ)


def test_production_settings(tmp_path):
    config = Config(
        str(tmp_path),
        {"SUPPORTBOT_ENV": "production", "SECRET_KEY": "k" * 40},
    )

    assert config.SESSION_COOKIE_SECURE is True
    assert config.OUTBOX_WORKER == "off"
    assert not (tmp_path / "secret_key").exists()


def test_malformed_number_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="TELEGRAM_TIMEOUT"):
        Config(str(tmp_path), {"TELEGRAM_TIMEOUT": "soon"})


def test_api_url_is_configurable(tmp_path):
    config = Config(str(tmp_path), {"TELEGRAM_API_URL": "http://127.0.0.1:8081/"})

    assert config.TELEGRAM_API_URL == "http://127.0.0.1:8081"


def test_app_without_token_runs_and_says_the_bot_is_off(database_uri, caplog):
    caplog.set_level(logging.WARNING)

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": database_uri, "TELEGRAM_BOT_TOKEN": ""}
    )

    assert app.extensions["supportbot.telegram"] is None
    off = [r for r in caplog.records if "the bot is off" in r.getMessage()]
    assert len(off) == 1


def test_postgresql_connections_are_pooled_as_configured(tmp_path):
    environ = {"DATABASE_URL": "postgresql://u@db/app"}

    default = Config(str(tmp_path), environ).SQLALCHEMY_ENGINE_OPTIONS
    sized = Config(str(tmp_path), {**environ, "DATABASE_POOL_SIZE": "50"})

    assert default == {"pool_pre_ping": True, "pool_size": 20}
    assert sized.SQLALCHEMY_ENGINE_OPTIONS["pool_size"] == 50
    with pytest.raises(ConfigError, match="DATABASE_POOL_SIZE"):
        Config(str(tmp_path), {**environ, "DATABASE_POOL_SIZE": "0"})


def test_gunicorn_workers_keep_the_loaded_app_out_of_full_collections():
    root = Path(__file__).resolve().parent.parent
    # The settings file fills in environment variables of its own.
    with mock.patch.dict(os.environ):
        settings = runpy.run_path(str(root / "gunicorn.conf.py"))
    assert gc.get_freeze_count() == 0

    settings["post_worker_init"](None)
    try:
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
