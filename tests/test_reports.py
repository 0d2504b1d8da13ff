"""Support figures, checked on tickets made with known times."""

from datetime import UTC, date, datetime, timedelta

import pytest

from supportbot import reports
from supportbot.extensions import db
from supportbot.models import (
    Customer,
    Message,
    MessageKind,
    Staff,
    Ticket,
    TicketEvent,
    TicketStatus,
)

DAY = date(2026, 11, 2)


def at(day_offset: int, seconds: float = 0) -> datetime:
    start = datetime(DAY.year, DAY.month, DAY.day, 9, tzinfo=UTC)
    return start + timedelta(days=day_offset, seconds=seconds)


@pytest.fixture
def constructed(app):
    """Tickets whose response and resolution times are known in advance."""
    with app.app_context():
        alice = Staff(email="a@example.com", name="Alice", password_hash="x")
        bob = Staff(email="b@example.com", name="Bob", password_hash="x")
        customer = Customer(id=1, first_name="C")
        db.session.add_all([alice, bob, customer])
        db.session.flush()

        # Day 0: four tickets answered after 60, 120, 180 and 600 seconds.
        for answered_after, agent in (
            (60, alice),
            (120, alice),
            (180, bob),
            (600, bob),
        ):
            ticket = Ticket(
                customer=customer,
                created_at=at(0),
                first_response_at=at(0, answered_after),
                status=TicketStatus.OPEN,
            )
            db.session.add(ticket)
            db.session.flush()
            db.session.add(
                Message(
                    ticket=ticket,
                    kind=MessageKind.REPLY,
                    staff=agent,
                    text="hi",
                    created_at=at(0, answered_after),
                )
            )

        # Day 1: two tickets closed after one and three hours, rated 5 and 3.
        for hours, rating in ((1, 5), (3, 3)):
            ticket = Ticket(
                customer=customer,
                created_at=at(1),
                closed_at=at(1, hours * 3600),
                status=TicketStatus.CLOSED,
                rating=rating,
            )
            db.session.add(ticket)
            db.session.flush()
            db.session.add(
                TicketEvent(
                    ticket=ticket, staff=alice, kind="closed", created_at=at(1, 3600)
                )
            )
        db.session.commit()
    return app


def test_summary_uses_median_and_interpolated_90th_percentile():
    assert reports.summary([60, 120, 180, 600]) == {
        "count": 4,
        "median": 150,
        "p90": pytest.approx(474),
    }
    assert reports.summary([]) == {"count": 0, "median": None, "p90": None}
    assert reports.summary([7]) == {"count": 1, "median": 7, "p90": 7}


def test_volume_backlog_and_times(constructed):
    span = reports.Range(DAY, DAY + timedelta(days=2))

    with constructed.app_context():
        figures = reports.support_figures(span)

    assert figures["days"] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert figures["opened"] == [4, 2, 0]
    assert figures["closed"] == [0, 2, 0]
    assert figures["backlog"] == [4, 4, 4]
    assert figures["first_response"]["median"] == 150
    assert figures["first_response"]["p90"] == pytest.approx(474)
    assert figures["resolution"] == {
        "count": 2,
        "median": 7200,
        "p90": pytest.approx(3600 + 0.9 * 7200),
    }
    assert figures["ratings"] == {"counts": [0, 0, 1, 0, 1], "average": 4}


def test_per_agent_counts_and_response_times(constructed):
    span = reports.Range(DAY, DAY + timedelta(days=2))

    with constructed.app_context():
        agents = {a["name"]: a for a in reports.support_figures(span)["agents"]}

    assert agents["Alice"]["replies"] == 2
    assert agents["Alice"]["closed"] == 2
    assert agents["Alice"]["first_response"]["median"] == 90
    assert agents["Bob"]["replies"] == 2
    assert agents["Bob"]["closed"] == 0
    assert agents["Bob"]["first_response"]["median"] == 390


def test_a_range_before_everything_is_empty(constructed):
    span = reports.Range(DAY - timedelta(days=10), DAY - timedelta(days=5))

    with constructed.app_context():
        figures = reports.support_figures(span)

    assert figures["opened"] == [0] * 6
    assert figures["first_response"]["count"] == 0
    assert figures["agents"] == []


def test_dashboard_data_endpoint(admin_client, constructed):
    response = admin_client.get("/admin/dashboard/data?days=7")

    assert response.status_code == 200
    assert len(response.json["support"]["days"]) == 7
    assert response.json["system"]["database"]["ok"] is True
    assert admin_client.get("/admin/dashboard/data?days=0").status_code == 400
    assert admin_client.get("/admin/dashboard/data?days=abc").status_code == 200
