"""The staff console: the queue, ticket pages and canned replies."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the console's blueprint and template helpers."""
    from . import views
    from .filters import register

    app.register_blueprint(views.bp)
    register(app)
