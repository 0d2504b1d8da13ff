"""The Mini App over HTTP: its pages, its JSON API, and the bot's side of it."""

import io
import os
import re
import time

import pytest
from sqlalchemy import select

from supportbot import categories
from supportbot.config import Config, ConfigError
from supportbot.extensions import db
from supportbot.miniapp.initdata import sign_user
from supportbot.models import Message, OutboxMessage, Staff, Ticket

from helpers import csrf_token_of

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def tma(app):
    """Make Authorization headers carrying initData signed for a fake user."""

    def headers(user, auth_date=None):
        token = app.config["TELEGRAM_BOT_TOKEN"]
        return {"Authorization": "tma " + sign_user(token, user.as_dict(), auth_date)}

    return headers


@pytest.fixture
def with_categories(app):
    """Give the form two categories to choose from."""
    with app.app_context():
        admin = Staff(email="a@example.com", name="A", password_hash="x")
        categories.add("Billing", by=admin)
        categories.add("Delivery", by=admin)
        db.session.commit()


def open_request(client, headers, **fields):
    data = {"subject": "Parcel lost", "description": "It never came.", **fields}
    return client.post(
        "/app/api/tickets",
        data=data,
        headers=headers,
        content_type="multipart/form-data",
    )


def only_ticket(app) -> Ticket:
    with app.app_context():
        ticket = db.session.scalars(select(Ticket)).one()
        db.session.expunge(ticket)
        return ticket


@pytest.mark.parametrize("path", ["/app", "/app/new", "/app/tickets/1"])
def test_pages_can_be_framed_by_telegram_web_and_load_only_its_script(client, path):
    response = client.get(path)

    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors https://web.telegram.org" in policy
    assert "X-Frame-Options" not in response.headers
    page = response.get_data(as_text=True)
    outside = [s for s in re.findall(r'<script src="([^"]+)"', page) if "//" in s]
    assert outside == ["https://telegram.org/js/telegram-web-app.js"]
    assert "script-src 'self' https://telegram.org/js/telegram-web-app.js;" in policy


def test_pages_tell_a_plain_browser_to_open_them_from_the_bot(client):
    page = client.get("/app/new").get_data(as_text=True)

    assert "Open this in Telegram" in page
    assert "/start" in page


def test_console_pages_still_refuse_frames(client):
    response = client.get("/login")

    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer abc",
        "tma",
        "tma user=%7B%22id%22%3A1%7D&auth_date=1&hash=" + "0" * 64,
        "tma not even a query string",
    ],
)
def test_api_refuses_missing_or_forged_initdata_with_401_json(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    for method, path in [
        ("GET", "/app/api/tickets"),
        ("POST", "/app/api/tickets"),
        ("GET", "/app/api/tickets/1"),
        ("GET", "/app/api/tickets/1/messages"),
        ("POST", "/app/api/tickets/1/messages"),
        ("POST", "/app/api/tickets/1/seen"),
    ]:
        response = client.open(path, method=method, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json["ok"] is False
        assert response.json["error"]


def test_expired_initdata_is_refused_and_the_age_is_configurable(
    app, client, telegram, tma
):
    user = telegram.user()
    old = tma(user, auth_date=int(time.time()) - 2 * 86400)

    response = client.get("/app/api/tickets", headers=old)
    assert response.status_code == 401
    assert "expired" in response.json["error"]

    app.config["MINIAPP_INITDATA_MAX_AGE"] = 0
    assert client.get("/app/api/tickets", headers=old).status_code == 200


def test_opening_a_request_confirms_it_in_the_chat(
    app, client, telegram, tma, deliver, with_categories
):
    user = telegram.user(first_name="Carol")

    response = client.post(
        "/app/api/tickets",
        data={
            "category": "Delivery",
            "subject": "Parcel lost",
            "description": "Order 1234 never came.",
            "files": [(io.BytesIO(PNG), "label.png"), (io.BytesIO(b"%PDF"), "a.pdf")],
        },
        headers=tma(user),
        content_type="multipart/form-data",
    )

    assert response.status_code == 201
    ticket = response.json["ticket"]
    assert ticket["subject"] == "Parcel lost"
    assert ticket["category"] == "Delivery"
    assert ticket["status_label"] == "Open"
    assert ticket["url"] == f"/app/tickets/{ticket['id']}"
    with app.app_context():
        messages = db.session.scalars(select(Message).order_by(Message.id)).all()
        assert [m.text for m in messages] == ["Order 1234 never came.", "", ""]
        assert [m.attachment["file_name"] for m in messages[1:]] == [
            "label.png",
            "a.pdf",
        ]
        assert messages[1].attachment["mime_type"] == "image/png"
        assert messages[2].attachment["mime_type"] == "application/octet-stream"

    deliver()
    [confirmation] = telegram.calls_to("sendMessage")
    assert confirmation.chat_id == user.id
    assert f"#{ticket['id']} is open: Parcel lost" in confirmation.params["text"]
    [[button]] = confirmation.params["reply_markup"]["inline_keyboard"]
    assert button["web_app"]["url"].endswith(f"/app/tickets/{ticket['id']}")


def test_a_request_from_the_app_reaches_the_staff_console(
    app, client, telegram, tma, agent_client
):
    open_request(client, tma(telegram.user()), subject="Refund for order 77")

    queue = agent_client.get("/console/").get_data(as_text=True)
    assert "Refund for order 77" in queue


def test_form_errors_name_each_field(app, client, telegram, tma, with_categories):
    user = telegram.user()

    response = client.post(
        "/app/api/tickets",
        data={"category": "Nonsense", "subject": " ", "description": ""},
        headers=tma(user),
    )

    assert response.status_code == 400
    assert set(response.json["fields"]) == {"category", "subject", "description"}
    assert response.json["fields"]["category"] == "Choose a category."
    too_long = open_request(client, tma(user), category="Billing", subject="x" * 201)
    assert too_long.status_code == 400
    assert "200 characters" in too_long.json["fields"]["subject"]
    with app.app_context():
        assert db.session.scalars(select(Ticket)).all() == []


def test_without_categories_the_form_asks_for_none(client, telegram, tma):
    assert "Choose a category" not in client.get("/app/new").get_data(as_text=True)

    assert open_request(client, tma(telegram.user())).status_code == 201


def test_a_json_body_works_too(client, telegram, tma):
    response = client.post(
        "/app/api/tickets",
        json={"subject": "By JSON", "description": "No files here."},
        headers=tma(telegram.user()),
    )

    assert response.status_code == 201
    bad = client.post(
        "/app/api/tickets", json=["not", "a form"], headers=tma(telegram.user())
    )
    assert bad.status_code == 400


def test_a_file_over_the_limit_is_refused_and_nothing_is_kept(
    app, client, telegram, tma
):
    app.config["MINIAPP_UPLOAD_MAX_BYTES"] = 1024
    user = telegram.user()

    response = open_request(
        client,
        tma(user),
        files=[
            (io.BytesIO(b"a" * 100), "small.txt"),
            (io.BytesIO(b"b" * 2048), "big.bin"),
        ],
    )

    assert response.status_code == 413
    assert "“big.bin” is larger than 1 KB" in response.json["error"]
    with app.app_context():
        assert db.session.scalars(select(Ticket)).all() == []
    assert os.listdir(app.config["UPLOAD_FOLDER"]) == []


def test_a_body_over_the_limit_is_refused_before_it_is_read(app, client, telegram, tma):
    app.config["MINIAPP_UPLOAD_MAX_BYTES"] = 100

    response = open_request(
        client, tma(telegram.user()), files=[(io.BytesIO(b"x" * 2_000_000), "a.bin")]
    )

    assert response.status_code == 413
    assert "at most 5 files of up to 1 KB each" in response.json["error"]


def test_too_many_files_are_refused(client, telegram, tma):
    files = [(io.BytesIO(b"x"), f"{n}.txt") for n in range(6)]

    response = open_request(client, tma(telegram.user()), files=files)

    assert response.status_code == 400
    assert response.json["fields"]["files"] == "Attach at most 5 files."


def test_my_requests_list_status_and_last_message(
    app, client, telegram, tma, send_update
):
    user = telegram.user()
    send_update(user.text("Printer on fire"))
    open_request(client, tma(user), subject="Second", description="Newer one")

    response = client.get("/app/api/tickets", headers=tma(user))

    assert response.status_code == 200
    listed = [
        (t["subject"], t["status"], t["last_message"]) for t in response.json["tickets"]
    ]
    assert listed == [
        ("Second", "open", "Newer one"),
        ("Printer on fire", "open", "Printer on fire"),
    ]
    stranger = telegram.user()
    assert client.get("/app/api/tickets", headers=tma(stranger)).json["tickets"] == []


def test_chat_and_app_messages_are_one_conversation(
    app, client, telegram, tma, send_update, agent_client
):
    user = telegram.user()
    send_update(user.text("Where is my parcel?"))
    ticket = only_ticket(app)
    token = csrf_token_of(agent_client)
    agent_client.post(
        f"/console/tickets/{ticket.id}/messages",
        data={"text": "Looking into it", "csrf_token": token},
    )
    agent_client.post(
        f"/console/tickets/{ticket.id}/messages",
        data={"text": "Customer sounds upset", "note": "1", "csrf_token": token},
    )

    posted = client.post(
        f"/app/api/tickets/{ticket.id}/messages",
        data={"text": "Thanks!", "files": [(io.BytesIO(PNG), "proof.png")]},
        headers=tma(user),
        content_type="multipart/form-data",
    )
    send_update(user.text("Any news?"))

    assert posted.status_code == 201
    assert [m["text"] for m in posted.json["messages"]] == ["Thanks!", ""]
    history = client.get(f"/app/api/tickets/{ticket.id}/messages", headers=tma(user))
    shown = [(m["from"], m["author"], m["text"]) for m in history.json["messages"]]
    assert shown == [
        ("customer", "You", "Where is my parcel?"),
        ("staff", "Alice", "Looking into it"),
        ("customer", "You", "Thanks!"),
        ("customer", "You", ""),
        ("customer", "You", "Any news?"),
    ]
    assert history.json["ticket"]["status"] == "open"
    last_id = history.json["messages"][2]["id"]
    after = client.get(
        f"/app/api/tickets/{ticket.id}/messages?after={last_id}", headers=tma(user)
    )
    assert [m["text"] for m in after.json["messages"]] == ["", "Any news?"]


def test_files_in_the_chat_open_by_their_signed_link_only(
    app, client, telegram, tma, agent_client
):
    user = telegram.user()
    open_request(
        client,
        tma(user),
        files=[(io.BytesIO(PNG), "label.png"), (io.BytesIO(b"<html>"), "page.html")],
    )
    ticket = only_ticket(app)
    history = client.get(f"/app/api/tickets/{ticket.id}/messages", headers=tma(user))
    image, document = [m["attachment"] for m in history.json["messages"][1:]]
    image_message_id = history.json["messages"][1]["id"]

    assert image["image"] is True
    shown = client.get(image["url"])
    assert shown.status_code == 200
    assert shown.mimetype == "image/png"
    assert shown.data == PNG
    downloaded = client.get(document["url"])
    assert downloaded.mimetype == "application/octet-stream"
    assert "attachment" in downloaded.headers["Content-Disposition"]
    assert client.get(image["url"] + "x").status_code == 404
    assert client.get("/app/files/garbage").status_code == 404
    # Staff see the uploaded files in the console as well.
    console_message = agent_client.get(f"/console/messages/{image_message_id}")
    assert f'<img src="/console/files/{image_message_id}"' in (
        console_message.get_data(as_text=True)
    )
    assert agent_client.get(f"/console/files/{image_message_id}").data == PNG


def test_a_customer_cannot_reach_another_customers_ticket(
    app, client, telegram, tma, send_update
):
    alice, bob = telegram.user(first_name="Alice"), telegram.user(first_name="Bob")
    send_update(bob.text("Bob's private matter"))
    bobs = only_ticket(app)

    for method, path, kwargs in [
        ("GET", f"/app/api/tickets/{bobs.id}", {}),
        ("GET", f"/app/api/tickets/{bobs.id}/messages", {}),
        ("POST", f"/app/api/tickets/{bobs.id}/messages", {"data": {"text": "hi"}}),
        ("POST", f"/app/api/tickets/{bobs.id}/seen", {"json": {"message_id": 1}}),
        ("GET", "/app/api/tickets/999999", {}),
    ]:
        response = client.open(path, method=method, headers=tma(alice), **kwargs)
        assert response.status_code == 404, (method, path)
        assert response.json["ok"] is False
        assert "Bob" not in response.get_data(as_text=True)

    with app.app_context():
        texts = db.session.scalars(select(Message.text)).all()
    assert texts == ["Bob's private matter"]


def test_a_closed_request_takes_no_more_messages(
    app, client, telegram, tma, send_update
):
    user = telegram.user()
    send_update(user.text("Problem"))
    send_update(user.text("/close"))
    ticket = only_ticket(app)

    response = client.post(
        f"/app/api/tickets/{ticket.id}/messages",
        data={"text": "One more thing"},
        headers=tma(user),
    )

    assert response.status_code == 409
    assert "closed" in response.json["error"]
    empty = client.post(
        f"/app/api/tickets/{ticket.id}/messages", data={}, headers=tma(user)
    )
    assert empty.status_code == 400
    assert empty.json["fields"] == {"text": "Write a message or attach a file."}


def test_seen_replies_show_as_seen_in_the_console(
    app, client, telegram, tma, send_update, agent_client, staff_socket
):
    user = telegram.user()
    send_update(user.text("Hello?"))
    ticket = only_ticket(app)
    token = csrf_token_of(agent_client)
    reply = agent_client.post(
        f"/console/tickets/{ticket.id}/messages",
        data={"text": "Hi, how can we help?", "csrf_token": token},
        headers={"Accept": "application/json"},
    ).json["message_id"]
    socket = staff_socket(agent_client)
    socket.emit("join_ticket", {"ticket_id": ticket.id}, namespace="/staff")
    socket.get_received("/staff")

    response = client.post(
        f"/app/api/tickets/{ticket.id}/seen",
        json={"message_id": reply},
        headers=tma(user),
    )

    assert response.json == {"ok": True, "seen": [reply]}
    changes = [
        e["args"][0]
        for e in socket.get_received("/staff")
        if e["name"] == "delivery_changed"
    ]
    assert changes == [
        {"ticket_id": ticket.id, "message_id": reply, "status": "seen", "error": None}
    ]
    partial = agent_client.get(f"/console/messages/{reply}").get_data(as_text=True)
    assert 'data-delivery-state="seen"' in partial
    again = client.post(
        f"/app/api/tickets/{ticket.id}/seen",
        json={"message_id": reply},
        headers=tma(user),
    )
    assert again.json["seen"] == []
    bad = client.post(
        f"/app/api/tickets/{ticket.id}/seen",
        json={"message_id": "1"},
        headers=tma(user),
    )
    assert bad.status_code == 400


def test_start_sets_the_menu_button_to_the_mini_app(send_update, telegram, deliver):
    user = telegram.user()

    send_update(user.text("/start"))
    deliver()

    [call] = telegram.calls_to("setChatMenuButton")
    assert call.chat_id == user.id
    assert call.params["menu_button"] == {
        "type": "web_app",
        "text": "My requests",
        "web_app": {"url": "https://support.example.com/app"},
    }
    assert telegram.calls_to("getChatMenuButton") == []


def test_groups_get_no_web_app_buttons(app, send_update, telegram, deliver):
    user = telegram.user()
    group = telegram.group()

    send_update(user.text_in(group, "/start"))

    with app.app_context():
        rows = db.session.scalars(select(OutboxMessage)).all()
    assert [row.method for row in rows] == ["sendMessage"]
    assert "web_app" not in str(rows[0].payload)


def test_set_webhook_makes_the_mini_app_every_chats_menu_button(runner, telegram):
    result = runner.invoke(args=["bot", "set-webhook"])

    assert result.exit_code == 0, result.output
    [call] = telegram.calls_to("setChatMenuButton")
    assert "chat_id" not in call.params
    assert call.params["menu_button"]["web_app"]["url"].endswith("/app")


def test_admins_keep_the_list_of_categories(app, admin_client, client):
    token = csrf_token_of(admin_client)
    for name in ["Billing", "Delivery", "  Returns  ", "billing"]:
        admin_client.post("/admin/categories", data={"name": name, "csrf_token": token})

    with app.app_context():
        ids = {c.name: c.id for c in categories.all_categories()}
    assert list(ids) == ["Billing", "Delivery", "Returns"]
    admin_client.post(
        f"/admin/categories/{ids['Returns']}/move",
        data={"direction": "up", "csrf_token": token},
    )
    admin_client.post(
        f"/admin/categories/{ids['Billing']}/delete", data={"csrf_token": token}
    )

    form = client.get("/app/new").get_data(as_text=True)
    options = re.findall(r'<option value="([^"]+)">', form)
    assert options == ["Returns", "Delivery"]


def test_a_duplicate_category_is_refused_on_the_page(admin_client):
    token = csrf_token_of(admin_client)
    admin_client.post(
        "/admin/categories", data={"name": "Billing", "csrf_token": token}
    )

    response = admin_client.post(
        "/admin/categories", data={"name": "BILLING", "csrf_token": token}
    )

    assert "There is already a category called “BILLING”" in response.get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/app/api/tickets/99999999999999999999999", {}),
        ("GET", "/app/api/tickets/{id}/messages?after=99999999999999999999999", {}),
        ("GET", "/app/api/tickets/{id}/messages?after=-5", {}),
        ("GET", "/app/api/tickets/{id}/messages?after=abc", {}),
        ("POST", "/app/api/tickets/{id}/seen", {"json": {"message_id": 10**30}}),
        ("POST", "/app/api/tickets/{id}/seen", {"data": "{not json"}),
        ("POST", "/app/api/tickets/{id}/seen", {"json": {"message_id": True}}),
        ("POST", "/app/api/tickets/{id}/messages", {"json": {"text": ["x"]}}),
        ("POST", "/app/api/tickets/{id}/messages", {"data": b"\xff\xfe\x00"}),
        ("POST", "/app/api/tickets", {"data": "x", "content_type": "text/plain"}),
        ("POST", "/app/api/tickets", {"json": {"subject": 5, "description": None}}),
        ("GET", "/app/files/" + "a" * 500, {}),
        ("GET", "/app/tickets/99999999999999999999999", {}),
    ],
)
def test_bad_input_never_causes_a_server_error(
    app, client, telegram, tma, send_update, method, path, kwargs
):
    user = telegram.user()
    send_update(user.text("Hello"))
    path = path.format(id=only_ticket(app).id)

    response = client.open(path, method=method, headers=tma(user), **kwargs)

    assert response.status_code < 500


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MINIAPP_INITDATA_MAX_AGE", "-1", "MINIAPP_INITDATA_MAX_AGE must be 0"),
        ("MINIAPP_INITDATA_MAX_AGE", "a day", "must be a whole number"),
        ("MINIAPP_UPLOAD_MAX_BYTES", "0", "must be a positive size"),
    ],
)
def test_mini_app_settings_are_checked_at_start(tmp_path, variable, value, message):
    environ = {"SECRET_KEY": "x", variable: value}

    with pytest.raises(ConfigError, match=message):
        Config(str(tmp_path), environ)


def test_mini_app_settings_have_defaults(tmp_path):
    config = Config(str(tmp_path), {"SECRET_KEY": "x"})

    assert config.MINIAPP_INITDATA_MAX_AGE == 86400
    assert config.MINIAPP_UPLOAD_MAX_BYTES == 50 * 1024 * 1024
