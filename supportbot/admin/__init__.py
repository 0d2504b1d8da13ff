"""Admin pages: staff, canned replies, logs, the audit trail and the dashboard."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the admin blueprint."""
    from . import monitoring, views  # noqa: F401  (monitoring adds its pages to bp)

    app.register_blueprint(views.bp)
