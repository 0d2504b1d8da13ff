"""The staff console: the queue, ticket pages and canned replies."""

from flask import Flask, redirect, url_for


def init_app(app: Flask) -> None:
    """Register the console's blueprint and template helpers."""
    from . import views
    from .filters import register

    app.register_blueprint(views.bp)
    app.add_url_rule("/", "index", index)
    register(app)


def index():
    """Send visitors of the bare address to the queue."""
    return redirect(url_for("console.queue"))
