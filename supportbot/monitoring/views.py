"""``/healthz``, ``/readyz`` and ``/metrics``."""

import hmac

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, Response, abort, current_app, jsonify, request
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db, migrate
from .metrics import exposition
from .system import database_check

bp = Blueprint("monitoring", __name__)


@bp.get("/healthz")
def healthz():
    """Say that the process is up; it checks nothing else."""
    return jsonify(ok=True)


@bp.get("/readyz")
def readyz():
    """Check the database, its migrations and Redis; 503 until all answer."""
    checks = {"database": database_check(), "migrations": _check_migrations()}
    if current_app.config["REDIS_URL"]:
        checks["redis"] = _check_redis()

    ready = all(check["ok"] for check in checks.values())
    return jsonify(ok=ready, checks=checks), 200 if ready else 503


@bp.get("/metrics")
def metrics():
    """Serve Prometheus metrics to a scraper with the token, or to an admin."""
    token = current_app.config["METRICS_TOKEN"]
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    by_token = bool(token) and hmac.compare_digest(given.encode(), token.encode())
    by_admin = current_user.is_authenticated and current_user.is_admin
    if not (by_token or by_admin):
        abort(401, "Send the METRICS_TOKEN as a bearer token, or sign in as admin.")

    body, content_type = exposition(current_app._get_current_object())
    return Response(body, content_type=content_type)


def _check_migrations() -> dict:
    script = ScriptDirectory.from_config(migrate.get_config())
    expected = set(script.get_heads())
    try:
        with db.engine.connect() as connection:
            applied = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as error:
        return {"ok": False, "error": type(error).__name__}

    return {
        "ok": applied == expected,
        "applied": sorted(applied),
        "expected": sorted(expected),
    }


def _check_redis() -> dict:
    import redis

    try:
        redis.Redis.from_url(
            current_app.config["REDIS_URL"], socket_timeout=1, socket_connect_timeout=1
        ).ping()
    except redis.RedisError as error:
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True}
