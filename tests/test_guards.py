"""Every console route and socket event refuses anonymous users; admin pages
refuse agents."""

import pytest

from supportbot.extensions import db
from supportbot.models import Staff

from helpers import csrf_token_of

CONSOLE_PAGES = [
    ("GET", "/console/"),
    ("GET", "/console/unread"),
    ("GET", "/console/tickets/1"),
    ("GET", "/console/tickets/1/row"),
    ("GET", "/console/tickets/1/summary"),
    ("GET", "/console/tickets/1/timeline"),
    ("GET", "/console/messages/1"),
    ("GET", "/console/events/1"),
    ("GET", "/console/files/1"),
    ("POST", "/console/tickets/1/read"),
    ("POST", "/console/tickets/1/messages"),
    ("POST", "/console/tickets/1/assign"),
    ("POST", "/console/tickets/1/status"),
    ("POST", "/console/tickets/1/priority"),
    ("POST", "/console/deliveries/1/resend"),
    ("GET", "/account/password"),
    ("POST", "/account/password"),
    ("POST", "/logout"),
]
ADMIN_PAGES = [
    ("GET", "/admin/staff"),
    ("POST", "/admin/staff"),
    ("POST", "/admin/staff/1"),
    ("GET", "/admin/canned"),
    ("POST", "/admin/canned"),
    ("POST", "/admin/canned/1/delete"),
    ("GET", "/admin/categories"),
    ("POST", "/admin/categories"),
    ("POST", "/admin/categories/1/move"),
    ("POST", "/admin/categories/1/delete"),
    ("GET", "/admin/logs"),
    ("GET", "/admin/logs/1"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/deliveries"),
    ("POST", "/admin/updates/1/handle-again"),
    ("GET", "/admin/dashboard"),
    ("GET", "/admin/dashboard/data"),
]


def test_every_console_and_admin_route_is_listed(app):
    listed = {path.split("/1")[0] for _, path in CONSOLE_PAGES + ADMIN_PAGES}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/console", "/admin", "/account")):
            prefix = rule.rule.split("/<")[0]
            assert prefix in listed, f"{rule.rule} has no guard test"


@pytest.mark.parametrize(("method", "path"), CONSOLE_PAGES + ADMIN_PAGES)
def test_anonymous_users_are_sent_to_sign_in(client, method, path):
    # With a valid CSRF token, so that only the sign-in requirement can refuse.
    token = csrf_token_of(client, "/login")

    response = client.open(path, method=method, data={"csrf_token": token})

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize(("method", "path"), ADMIN_PAGES)
def test_agents_are_refused_admin_pages(agent_client, method, path):
    token = csrf_token_of(agent_client)

    response = agent_client.open(path, method=method, data={"csrf_token": token})

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/staff"),
        ("GET", "/admin/canned"),
        ("GET", "/admin/logs"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/dashboard"),
        ("GET", "/admin/dashboard/data"),
    ],
)
def test_admins_reach_admin_pages(admin_client, method, path):
    assert admin_client.open(path, method=method).status_code == 200


def test_anonymous_socket_is_refused(app, client, staff_socket):
    socket = staff_socket(client, token="anything")

    assert not socket.is_connected("/staff")


def test_agents_cannot_follow_the_logs(agent_client, staff_socket):
    socket = staff_socket(agent_client)

    answer = socket.emit("follow_logs", namespace="/staff", callback=True)

    assert answer == {"ok": False, "error": "The logs are for admins."}


def test_socket_without_csrf_token_is_refused(agent_client, staff_socket):
    socket = staff_socket(agent_client, token="")

    assert not socket.is_connected("/staff")


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ("join_ticket", {"ticket_id": 1}),
        ("leave_ticket", {"ticket_id": 1}),
        ("viewing", {"ticket_id": 1}),
        ("typing", {"ticket_id": 1}),
    ],
)
def test_socket_events_refuse_a_session_that_ended(
    app, agent_client, staff_socket, event, data
):
    socket = staff_socket(agent_client)
    assert socket.is_connected("/staff")
    with app.app_context():
        db.session.get(Staff, 1).is_active = False
        db.session.commit()

    answer = socket.emit(event, data, namespace="/staff", callback=True)

    assert answer == {"ok": False, "error": "Sign in again."}


@pytest.mark.parametrize(
    "path",
    [
        "/console/tickets/99999999999999999999999",
        "/console/tickets/2147483648/row",
        "/console/messages/99999999999999999999",
        "/console/files/99999999999999999999",
        "/admin/logs/99999999999999999999",
        "/console/?page=99999999999999999999",
        "/console/?q=%2399999999999999999999",
        "/admin/logs?before=99999999999999999999&ticket=99999999999999999999",
        "/admin/audit?staff=99999999999999999999&before=-5",
    ],
)
def test_ids_beyond_the_database_are_never_a_server_error(admin_client, path):
    response = admin_client.get(path)

    assert response.status_code in (200, 404)


def test_assigning_to_an_impossible_id_is_refused(admin_client, send_update, telegram):
    send_update(telegram.user().text("hello"))
    token = csrf_token_of(admin_client)

    response = admin_client.post(
        "/console/tickets/1/assign",
        data={"assignee": "99999999999999999999", "csrf_token": token},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 400
