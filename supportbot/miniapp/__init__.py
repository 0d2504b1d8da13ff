"""The Telegram Mini App: the customer's own client inside Telegram.

Pages under ``/app`` are shells rendered by the server; their script talks to
the JSON API under ``/app/api/``, authenticated by Telegram's signed initData,
and listens on the ``/customer`` Socket.IO namespace for replies.
"""

from flask import Flask

from ..extensions import csrf


def init_app(app: Flask) -> None:
    """Register the Mini App's pages, API and live updates."""
    from . import live, views

    # The API authenticates each call by its Authorization header, never by a
    # cookie, so there is no cross-site request to forge.
    csrf.exempt(views.bp)
    app.register_blueprint(views.bp)
    live.init_app(app)
