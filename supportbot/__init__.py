"""supportbot: a Telegram-first help desk."""

import os

from flask import Flask

from . import (
    admin,
    auth,
    console,
    errors,
    events,
    live,
    logs,
    miniapp,
    monitoring,
    outbox,
    routing,
    search,
    security,
    telegram,
)
from .config import Config
from .extensions import csrf, db, limiter, migrate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(config: dict | None = None) -> Flask:
    """Create the application, configured from the environment and ``config``."""
    app = Flask(
        __name__,
        instance_path=os.path.join(ROOT, "instance"),
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_object(Config(app.instance_path))
    if config:
        app.config.update(config)
    routing.init_app(app)

    logs.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    events.init_app(app)
    search.init_app(app)

    telegram.init_app(app)
    outbox.init_app(app)
    auth.init_app(app)
    console.init_app(app)
    admin.init_app(app)
    live.init_app(app)
    miniapp.init_app(app)
    monitoring.init_app(app)
    return app
