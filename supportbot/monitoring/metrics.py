"""Prometheus metrics, labelled by endpoint rather than path.

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` (the
gunicorn config does) so that ``/metrics`` adds up every worker's counts.
Figures that live in the database, such as the outbox's depth, are read when
``/metrics`` is scraped, so every process reports the same truth.
"""

import functools
import os
import time

from flask import Flask, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from .. import events
from ..extensions import db
from ..models import OutboxMessage, OutboxStatus, utcnow
from .system import update_backlog

HTTP_REQUESTS = Counter(
    "supportbot_http_requests_total",
    "HTTP requests answered, by endpoint, method and status.",
    ["endpoint", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "supportbot_http_request_duration_seconds",
    "Time to answer HTTP requests, by endpoint.",
    ["endpoint"],
)
WEBHOOK_UPDATES = Counter(
    "supportbot_webhook_updates_total",
    "Telegram updates received, by kind and outcome (new or duplicate).",
    ["kind", "outcome"],
)
UPDATES_HANDLED = Counter(
    "supportbot_updates_handled_total",
    "Stored Telegram updates handled, by outcome (handled or failed).",
    ["outcome"],
)
TICKETS_OPENED = Counter("supportbot_tickets_opened_total", "Tickets opened.")
TICKETS_CLOSED = Counter("supportbot_tickets_closed_total", "Tickets closed.")
SOCKET_CONNECTIONS = Gauge(
    "supportbot_socketio_connections",
    "Socket.IO connections open now.",
    ["namespace"],
    multiprocess_mode="livesum",
)


class DatabaseCollector:
    """Report figures kept in the database, read at scrape time."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        with self.app.app_context():
            depth, oldest = db.session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.status.in_(
                        [OutboxStatus.QUEUED, OutboxStatus.SENDING]
                    )
                )
            ).one()
            failed = db.session.scalar(
                select(func.count()).where(OutboxMessage.status == OutboxStatus.FAILED)
            )
            updates = update_backlog()
            db.session.remove()

        yield GaugeMetricFamily(
            "supportbot_outbox_depth", "Bot messages waiting to be sent.", depth
        )
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "supportbot_outbox_oldest_age_seconds",
            "Age of the oldest message waiting to be sent.",
            age,
        )
        yield GaugeMetricFamily(
            "supportbot_outbox_failed", "Bot messages that failed for good.", failed
        )
        yield GaugeMetricFamily(
            "supportbot_updates_waiting",
            "Telegram updates stored and not handled yet.",
            updates.waiting,
        )
        oldest = updates.oldest_waiting
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "supportbot_updates_oldest_age_seconds",
            "Age of the oldest Telegram update not handled yet.",
            age,
        )
        yield GaugeMetricFamily(
            "supportbot_updates_failed",
            "Telegram updates whose handling failed, waiting to be handled again.",
            updates.failed,
        )

        writer = self.app.extensions.get("supportbot.logs")
        if writer is not None:
            yield GaugeMetricFamily(
                "supportbot_log_records_dropped",
                "Log records dropped because the database writer fell behind.",
                writer.dropped,
            )


def exposition(app: Flask) -> tuple[bytes, str]:
    """Render every metric in the Prometheus text format."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    stored = CollectorRegistry()
    stored.register(DatabaseCollector(app))

    return generate_latest(counted) + generate_latest(stored), CONTENT_TYPE_LATEST


def init_app(app: Flask) -> None:
    """Time every request and count domain events."""

    @app.before_request
    def start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def record_request(response):
        endpoint = request.url_rule.endpoint if request.url_rule else "unmatched"
        started = g.pop("request_started", None)
        latency, requests = _request_metrics(
            endpoint, request.method, response.status_code
        )
        if started is not None:
            latency.observe(time.perf_counter() - started)
        requests.inc()
        return response

    events.ticket_opened.connect(_count_opened, weak=False)
    events.ticket_closed.connect(_count_closed, weak=False)


@functools.lru_cache(maxsize=1024)
def _request_metrics(endpoint: str, method: str, status: int):
    # Finding a labelled series costs more than counting in it, and every
    # request counts in two.
    return HTTP_LATENCY.labels(endpoint), HTTP_REQUESTS.labels(endpoint, method, status)


def _count_opened(app, **payload) -> None:
    TICKETS_OPENED.inc()


def _count_closed(app, **payload) -> None:
    TICKETS_CLOSED.inc()
