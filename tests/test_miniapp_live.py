"""The Mini App's live updates on the ``/customer`` Socket.IO namespace."""

import pytest
from sqlalchemy import select

from supportbot.extensions import db, socketio
from supportbot.miniapp.initdata import sign_user
from supportbot.models import Ticket

from helpers import csrf_token_of

NAMESPACE = "/customer"


@pytest.fixture
def customer_socket(app):
    """Connect Mini App sockets that authenticate with signed initData."""
    sockets = []

    def connect(user=None, init_data=None):
        if init_data is None:
            init_data = sign_user(app.config["TELEGRAM_BOT_TOKEN"], user.as_dict())
        socket = socketio.test_client(
            app, namespace=NAMESPACE, auth={"init_data": init_data}
        )
        sockets.append(socket)
        return socket

    yield connect

    for socket in sockets:
        if socket.is_connected(NAMESPACE):
            socket.disconnect(NAMESPACE)


def received(socket) -> list[tuple[str, dict]]:
    return [(e["name"], e["args"][0]) for e in socket.get_received(NAMESPACE)]


def ticket_of(app, user) -> int:
    with app.app_context():
        return db.session.scalars(
            select(Ticket.id).where(Ticket.customer_id == user.id)
        ).one()


def staff_post(client, ticket_id, text, note=False):
    data = {"text": text, "csrf_token": csrf_token_of(client)}
    if note:
        data["note"] = "1"
    return client.post(f"/console/tickets/{ticket_id}/messages", data=data)


@pytest.mark.parametrize(
    "init_data",
    ["", "garbage", "user=%7B%22id%22%3A1%7D&auth_date=1&hash=" + "0" * 64],
)
def test_sockets_without_valid_initdata_are_refused(app, customer_socket, init_data):
    socket = customer_socket(init_data=init_data)

    assert not socket.is_connected(NAMESPACE)


def test_socket_signed_for_another_bot_is_refused(customer_socket, telegram):
    forged = sign_user("999:OTHER-BOT-TOKEN", telegram.user().as_dict())

    assert not customer_socket(init_data=forged).is_connected(NAMESPACE)


def test_replies_reach_their_customer_and_nobody_else(
    app, customer_socket, telegram, send_update, agent_client
):
    alice, bob = telegram.user(first_name="Alice"), telegram.user(first_name="Bob")
    send_update(bob.text("Bob needs help"))
    bobs = ticket_of(app, bob)
    alice_socket, bob_socket = customer_socket(alice), customer_socket(bob)
    assert alice_socket.is_connected(NAMESPACE)

    staff_post(agent_client, bobs, "Hello Bob")

    bob_events = received(bob_socket)
    assert ("message_created", {"ticket_id": bobs, "message_id": 2}) in bob_events
    assert ("ticket_changed", {"ticket_id": bobs}) in bob_events
    assert received(alice_socket) == []


def test_internal_notes_are_never_announced_to_the_customer(
    app, customer_socket, telegram, send_update, agent_client
):
    user = telegram.user()
    send_update(user.text("Help"))
    socket = customer_socket(user)

    staff_post(agent_client, ticket_of(app, user), "Angry customer", note=True)

    assert [name for name, _ in received(socket)] == []


def test_staff_typing_shows_in_the_customers_chat(
    app, customer_socket, telegram, send_update, agent_client, staff_socket
):
    user, other = telegram.user(), telegram.user()
    send_update(user.text("Help"))
    ticket_id = ticket_of(app, user)
    socket, other_socket = customer_socket(user), customer_socket(other)
    staff = staff_socket(agent_client)
    staff.emit("join_ticket", {"ticket_id": ticket_id}, namespace="/staff")

    staff.emit("typing", {"ticket_id": ticket_id}, namespace="/staff")
    staff.emit("typing", {"ticket_id": ticket_id, "note": True}, namespace="/staff")

    assert received(socket) == [("typing", {"ticket_id": ticket_id})]
    assert received(other_socket) == []


def test_messages_from_telegram_reach_the_open_mini_app(
    app, customer_socket, telegram, send_update
):
    user = telegram.user()
    send_update(user.text("First"))
    socket = customer_socket(user)

    send_update(user.text("Written in the chat"))

    names = [name for name, _ in received(socket)]
    assert "message_created" in names


def test_the_socket_offers_no_way_to_act_on_a_ticket(
    app, customer_socket, telegram, send_update
):
    alice, bob = telegram.user(first_name="Alice"), telegram.user(first_name="Bob")
    send_update(bob.text("Bob's matter"))
    bobs = ticket_of(app, bob)
    alice_socket, bob_socket = customer_socket(alice), customer_socket(bob)

    for event in ("send_message", "join_ticket", "seen", "typing"):
        answer = alice_socket.emit(
            event,
            {"ticket_id": bobs, "text": "from Alice", "message_id": 1},
            namespace=NAMESPACE,
            callback=True,
        )
        assert not answer

    with app.app_context():
        assert db.session.get(Ticket, bobs).customer_seen_message_id is None
        assert [m.text for m in db.session.get(Ticket, bobs).messages] == [
            "Bob's matter"
        ]
    assert received(bob_socket) == []
