"""Operations: Prometheus metrics and the health checks platforms call."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Record request metrics and register the monitoring endpoints."""
    from . import metrics, views

    metrics.init_app(app)
    app.register_blueprint(views.bp)
