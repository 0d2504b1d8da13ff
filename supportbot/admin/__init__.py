"""Admin pages: staff accounts and canned replies."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the admin blueprint."""
    from . import views

    app.register_blueprint(views.bp)
