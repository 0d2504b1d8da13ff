"""Template helpers for showing times, waits and people."""

from datetime import datetime

from flask import Flask, current_app

from ..files import is_inline_image
from ..models import utcnow


def since(moment: datetime | None) -> str:
    """Say how long ago ``moment`` was, briefly: 5m, 3h, 2d."""
    if moment is None:
        return ""

    seconds = max(0, int((utcnow() - moment).total_seconds()))
    if seconds < 60:
        return "now"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def ago(moment: datetime | None) -> str:
    """Say when ``moment`` was, in words: just now, 5m ago, 2d ago."""
    if moment is None:
        return ""
    elapsed = since(moment)
    return "just now" if elapsed == "now" else f"{elapsed} ago"


def wait_class(moment: datetime | None) -> str:
    """Colour a customer's wait against the first-response target."""
    if moment is None:
        return "wait-none"

    target = current_app.config["FIRST_RESPONSE_TARGET_MINUTES"] * 60
    waited = (utcnow() - moment).total_seconds()
    if waited >= target:
        return "wait-over"
    if waited >= target * 0.75:
        return "wait-near"
    return "wait-ok"


def iso(moment: datetime | None) -> str:
    """Format a time for a ``<time datetime>`` attribute."""
    return moment.isoformat() if moment else ""


def register(app: Flask) -> None:
    """Make the helpers available in templates."""
    app.add_template_filter(since)
    app.add_template_filter(ago)
    app.add_template_filter(wait_class)
    app.add_template_filter(iso)
    app.add_template_test(is_inline_image, "inline_image")
