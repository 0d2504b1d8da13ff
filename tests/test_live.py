"""Live console events over Socket.IO, with clients that share the session."""

import json
import threading
import time

import redis
import requests
import socketio as socketio_package
from flask_socketio import SocketIO
from sqlalchemy import select
from werkzeug.serving import make_server

from supportbot import events
from supportbot.extensions import db, socketio
from supportbot.live import channel_for
from supportbot.models import Ticket
from supportbot.telegram import inbox

from helpers import PASSWORD, csrf_token_in, csrf_token_of, log_in

SECRET = {"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"}


def events_named(socket, name):
    return [e["args"][0] for e in socket.get_received("/staff") if e["name"] == name]


def received(socket):
    return socket.get_received("/staff")


def test_new_customer_message_reaches_the_queue(
    agent_client, staff_socket, send_update, telegram
):
    socket = staff_socket(agent_client)
    received(socket)

    send_update(telegram.user().text("hello, anyone?"))

    events = received(socket)
    names = [e["name"] for e in events]
    # Every open queue fetches the row on each event: one of each is enough.
    assert names.count("ticket_changed") == 1
    assert names.count("customer_message") == 1


def test_ticket_room_gets_messages_events_and_state(
    app, agent_client, staff_socket, send_update, telegram
):
    user = telegram.user()
    send_update(user.text("first"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    socket = staff_socket(agent_client)
    assert socket.emit(
        "join_ticket", {"ticket_id": ticket_id}, namespace="/staff", callback=True
    ) == {"ok": True}
    received(socket)

    send_update(user.text("second"))
    on_message = received(socket)
    token = csrf_token_of(agent_client)
    agent_client.post(
        f"/console/tickets/{ticket_id}/assign",
        data={"assignee": "me", "csrf_token": token},
    )
    on_assign = received(socket)

    created = [e["args"][0] for e in on_message if e["name"] == "message_created"]
    assert created and created[0]["ticket_id"] == ticket_id
    assert created[0]["kind"] == "customer"
    # In the queue room and the ticket's: the change arrives once all the same.
    changed = [e["args"][0] for e in on_message if e["name"] == "ticket_changed"]
    assert changed == [{"ticket_id": ticket_id}]
    assert any(e["name"] == "ticket_event_created" for e in on_assign)


def test_rolled_back_changes_announce_nothing(
    app, agent_client, staff_socket, send_update, telegram, monkeypatch
):
    socket = staff_socket(agent_client)
    received(socket)

    def broken(*args, **kwargs):
        raise RuntimeError("after the message was added")

    monkeypatch.setattr("supportbot.telegram.conversation._say", broken)
    response = send_update(telegram.user().text("lost"))

    # The update is stored and answered; its handling failed and was rolled back.
    assert response.status_code == 200
    assert received(socket) == []


def test_join_unknown_or_malformed_ticket_is_refused(agent_client, staff_socket):
    socket = staff_socket(agent_client)

    for data in (
        {"ticket_id": 987654},
        {"ticket_id": "1"},
        {"ticket_id": True},
        "x",
        None,
    ):
        answer = socket.emit("join_ticket", data, namespace="/staff", callback=True)
        assert answer["ok"] is False


def test_presence_and_typing_reach_colleagues_not_oneself(
    app, make_staff, staff_socket, send_update, telegram
):
    user = telegram.user()
    send_update(user.text("help"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    make_staff("Alice")
    make_staff("Bob")
    alice_client, bob_client = app.test_client(), app.test_client()
    log_in(alice_client, "alice@example.com")
    log_in(bob_client, "bob@example.com")
    alice, bob = staff_socket(alice_client), staff_socket(bob_client)

    alice.emit("join_ticket", {"ticket_id": ticket_id}, namespace="/staff")
    received(alice)
    bob.emit("join_ticket", {"ticket_id": ticket_id}, namespace="/staff")
    bob.emit("typing", {"ticket_id": ticket_id}, namespace="/staff")

    seen = received(alice)
    presence = [e["args"][0] for e in seen if e["name"] == "presence"]
    assert presence == [
        {"ticket_id": ticket_id, "staff": {"id": 2, "name": "Bob"}, "state": "joined"}
    ]
    assert [e["name"] for e in seen].count("typing") == 1
    assert events_named(bob, "typing") == []
    assert events_named(bob, "presence") == []


def test_typing_is_relayed_and_shown_to_the_customer_throttled(
    app, make_staff, staff_socket, send_update, telegram
):
    user = telegram.user()
    send_update(user.text("help"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    make_staff("Alice")
    make_staff("Bob")
    alice_client, bob_client = app.test_client(), app.test_client()
    log_in(alice_client, "alice@example.com")
    log_in(bob_client, "bob@example.com")
    alice, bob = staff_socket(alice_client), staff_socket(bob_client)
    alice.emit("join_ticket", {"ticket_id": ticket_id}, namespace="/staff")
    bob.emit("join_ticket", {"ticket_id": ticket_id}, namespace="/staff")
    received(alice)

    for _ in range(3):
        bob.emit("typing", {"ticket_id": ticket_id}, namespace="/staff")

    typing = events_named(alice, "typing")
    assert len(typing) == 3
    assert typing[0]["staff"]["name"] == "Bob"
    [action] = telegram.wait_for("sendChatAction")
    assert action.chat_id == user.id
    assert action.params["action"] == "typing"


def test_typing_a_note_does_not_show_the_customer(
    app, agent_client, staff_socket, send_update, telegram
):
    send_update(telegram.user().text("help"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    socket = staff_socket(agent_client)
    socket.emit("join_ticket", {"ticket_id": ticket_id}, namespace="/staff")

    answer = socket.emit(
        "typing",
        {"ticket_id": ticket_id, "note": True},
        namespace="/staff",
        callback=True,
    )

    assert answer == {"ok": True}
    assert telegram.calls_to("sendChatAction") == []


def test_typing_outside_a_joined_ticket_is_refused(agent_client, staff_socket):
    socket = staff_socket(agent_client)

    answer = socket.emit("typing", {"ticket_id": 1}, namespace="/staff", callback=True)

    assert answer["ok"] is False


def test_delivery_state_reaches_the_ticket_room(
    app, agent_client, staff_socket, send_update, telegram, deliver
):
    send_update(telegram.user().text("help"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    socket = staff_socket(agent_client)
    socket.emit("join_ticket", {"ticket_id": ticket_id}, namespace="/staff")
    token = csrf_token_of(agent_client)
    reply = agent_client.post(
        f"/console/tickets/{ticket_id}/messages",
        data={"text": "on it", "csrf_token": token},
        headers={"Accept": "application/json"},
    ).json
    received(socket)

    deliver()

    states = events_named(socket, "delivery_changed")
    assert {state["message_id"] for state in states} == {reply["message_id"]}
    assert [state["status"] for state in states] == ["sending", "sent"]


def test_events_from_another_process_arrive_through_redis_and_no_others(
    make_app, app, make_staff
):
    redis_url = "redis://127.0.0.1:6379/15"
    server = make_server("127.0.0.1", 0, None, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    server.app = make_app(REDIS_URL=redis_url, PUBLIC_URL=base_url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    make_staff("Alice")
    browser = requests.Session()
    token = csrf_token_in(browser.get(f"{base_url}/login").text)
    browser.post(
        f"{base_url}/login",
        data={"email": "alice@example.com", "password": PASSWORD, "csrf_token": token},
    )
    token = csrf_token_in(browser.get(f"{base_url}/console/").text)
    arrived = threading.Event()
    received = []

    def on_ticket_changed(data):
        received.append(data)
        arrived.set()

    client = socketio_package.Client(http_session=browser)
    client.on("ticket_changed", on_ticket_changed, namespace="/staff")
    client.connect(
        base_url,
        namespaces=["/staff"],
        transports=["polling"],
        auth={"csrf_token": token},
        headers={"Origin": base_url},
        wait_timeout=5,
    )

    try:
        # Another deployment on the same Redis server, in another database.
        SocketIO(
            message_queue="redis://127.0.0.1:6379/14",
            channel=channel_for("redis://127.0.0.1:6379/14"),
        ).emit("ticket_changed", {"ticket_id": 66}, to="queue", namespace="/staff")
        # What a worker process does: emit through the queue, with no server.
        SocketIO(message_queue=redis_url, channel=channel_for(redis_url)).emit(
            "ticket_changed", {"ticket_id": 77}, to="queue", namespace="/staff"
        )
        assert arrived.wait(5)
        time.sleep(0.5)
        assert [event["ticket_id"] for event in received] == [77]
    finally:
        client.disconnect()
        server.shutdown()


def subscribe(redis_url):
    """Listen to the channel that carries the app's Socket.IO events."""
    listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(channel_for(redis_url))
    # The subscription's confirmation, which the listener then skips.
    listener.get_message(timeout=1)
    return listener


def published(listener, wait=0.5):
    """Return the events published since the last call, oldest first."""
    found = []
    while (message := listener.get_message(timeout=wait)) is not None:
        found.append(json.loads(message["data"]))
    return found


def test_events_emitted_together_reach_redis_at_the_end_in_order(
    app, make_app, redis_url
):
    live_app = make_app(REDIS_URL=redis_url)
    listener = subscribe(redis_url)
    try:
        with live_app.app_context():
            with socketio.server.manager.together():
                for number in range(3):
                    socketio.emit(
                        "ticket_changed",
                        {"ticket_id": number},
                        to="queue",
                        namespace="/staff",
                    )
                during = published(listener)
            after = published(listener)
    finally:
        listener.close()

    assert during == []
    assert [event["data"] for event in after] == [[{"ticket_id": n}] for n in range(3)]


def test_a_commits_events_are_published_together(app, make_app, redis_url, telegram):
    live_app = make_app(REDIS_URL=redis_url)
    listener = subscribe(redis_url)
    seen_while_announcing = []

    def check_nothing_was_published_yet(sender, **payload):
        seen_while_announcing.extend(published(listener, wait=0.1))

    live_app.test_client().post(
        "/telegram/webhook", json=telegram.user().text("hello"), headers=SECRET
    )
    try:
        # Connected after the live console's listeners: called once they emitted.
        with events.message_created.connected_to(check_nothing_was_published_yet):
            with live_app.app_context():
                assert inbox.handle_waiting() == 1
                db.session.remove()
        names = [event["event"] for event in published(listener)]
    finally:
        listener.close()

    assert seen_while_announcing == []
    assert names.count("customer_message") == 1
    assert names.count("ticket_changed") >= 1


def test_events_that_redis_refuses_are_logged_not_raised(app, make_app, caplog):
    live_app = make_app(REDIS_URL="redis://127.0.0.1:9/0")

    with live_app.app_context():
        with socketio.server.manager.together():
            socketio.emit("ticket_changed", {"ticket_id": 1}, namespace="/staff")

    assert "1 live events not published to Redis" in caplog.text
