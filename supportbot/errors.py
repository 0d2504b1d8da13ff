"""Domain exceptions and the one place that turns errors into responses."""

import logging
import secrets

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
)

from .extensions import db

logger = logging.getLogger(__name__)

# Paths whose clients are programs: they get JSON errors, everyone else a page.
JSON_PREFIXES = ("/telegram/", "/app/api/")


class SupportbotError(Exception):
    """A request the help desk refuses; the message is safe to show the user."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(SupportbotError):
    status_code = 404


class Conflict(SupportbotError):
    status_code = 409


class TooLarge(SupportbotError):
    status_code = 413


def wants_json() -> bool:
    """Tell whether the current request should get a JSON error body."""
    if request.path.startswith(JSON_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, title: str, message: str, error_id: str = ""):
    """Render an error as JSON or HTML, depending on who asked."""
    if wants_json():
        body = {"ok": False, "error": message}
        if error_id:
            body["error_id"] = error_id
        return jsonify(body), status

    page = render_template(
        "errors/error.html",
        status=status,
        title=title,
        message=message,
        error_id=error_id,
    )
    return page, status


def _log_refusal(status: int, reason: str) -> None:
    # Unknown addresses are everyday noise; other refusals say someone erred.
    level = logging.INFO if status in (404, 405) else logging.WARNING
    logger.log(
        level,
        "%s %s refused with %s: %s",
        request.method,
        request.path,
        status,
        reason,
    )


def _too_large(limit: int) -> str:
    # Imported here: uploads raises this module's errors.
    from .uploads import limit_text

    return f"That is more than {limit_text(limit)}, the most that can be sent at once."


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(SupportbotError)
    def handle_domain_error(error: SupportbotError):
        _log_refusal(error.status_code, error.message)
        return error_response(error.status_code, "Not possible", error.message)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        if isinstance(error, InternalServerError):
            return handle_unexpected(error.original_exception or error)
        description = error.description
        if isinstance(error, RequestEntityTooLarge) and request.max_content_length:
            description = _too_large(request.max_content_length)
        _log_refusal(error.code, description)
        return error_response(error.code, error.name, description)

    @app.errorhandler(OperationalError)
    def handle_database_unavailable(error: OperationalError):
        # 503 with Retry-After: Telegram redelivers the update later.
        db.session.rollback()
        error_id = secrets.token_hex(6)
        logger.error(
            "database unavailable [error %s] %s %s: %s",
            error_id,
            request.method,
            request.path,
            error.orig,
            extra={"error_id": error_id},
        )
        response = error_response(
            503,
            "Service unavailable",
            "The database is unavailable; please try again shortly.",
            error_id,
        )
        response[0].headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        db.session.rollback()
        error_id = secrets.token_hex(6)
        logger.error(
            "unhandled error [error %s] %s %s",
            error_id,
            request.method,
            request.path,
            exc_info=error,
            extra={"error_id": error_id},
        )
        return error_response(
            500,
            "Something went wrong",
            "Something went wrong on our side. Quote the error id if you report it.",
            error_id,
        )
