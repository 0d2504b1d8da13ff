"""The staff console: queue, ticket page and the actions taken there."""

import io
import os

import pytest
from sqlalchemy import event, select

from supportbot.extensions import db
from supportbot.models import (
    Message,
    MessageKind,
    OutboxMessage,
    Ticket,
    TicketPriority,
    TicketStatus,
)

from helpers import csrf_token_of, log_in


@pytest.fixture
def customer_ticket(app, send_update, telegram):
    """Have a customer write to the bot; return (user, ticket id)."""
    user = telegram.user(first_name="Carol", username="carol")
    send_update(user.text("My parcel never arrived"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    return user, ticket_id


def post(client, path, **data):
    data["csrf_token"] = csrf_token_of(client)
    return client.post(path, data=data, headers={"Accept": "application/json"})


def test_queue_lists_open_tickets_with_customer_and_preview(
    agent_client, customer_ticket
):
    user, ticket_id = customer_ticket

    page = agent_client.get("/console/").get_data(as_text=True)

    assert f"#{ticket_id}" in page
    assert "Carol" in page
    assert "@carol" in page
    assert "My parcel never arrived" in page
    assert 'class="badge"' in page
    assert page.startswith("<!doctype html>")
    assert "<title>(1) Queue" in page


def test_queue_filters_by_status_and_assignee(
    app, agent_client, make_staff, send_update, telegram
):
    for name in ("Dan", "Eve", "Fay"):
        send_update(telegram.user(first_name=name).text(f"question from {name}"))
    bob = make_staff("Bob")
    with app.app_context():
        dan, eve, fay = db.session.scalars(select(Ticket).order_by(Ticket.id)).all()
        dan.assignee_id = 1
        eve.assignee_id = bob
        fay.status = TicketStatus.CLOSED
        db.session.commit()

    def shown(query):
        page = agent_client.get(f"/console/?{query}").get_data(as_text=True)
        return {
            name for name in ("Dan", "Eve", "Fay") if f"question from {name}" in page
        }

    assert shown("") == {"Dan", "Eve"}
    assert shown("scope=mine") == {"Dan"}
    assert shown("scope=unassigned") == set()
    assert shown("status=closed") == {"Fay"}
    assert shown("status=bogus&scope=bogus") == {"Dan", "Eve"}


def test_queue_search_finds_subjects_messages_and_customers(
    agent_client, send_update, telegram
):
    printer = telegram.user(first_name="Pat", username="pat_p")
    send_update(printer.text("Printer jammed"))
    send_update(printer.text("It makes a grinding noise"))
    send_update(telegram.user(first_name="Quinn").text("Wifi is down"))

    def shown(search):
        page = agent_client.get("/console/", query_string={"q": search})
        text = page.get_data(as_text=True)
        return {s for s in ("Printer jammed", "Wifi is down") if s in text}

    assert shown("printer") == {"Printer jammed"}
    assert shown("grinding") == {"Printer jammed"}
    assert shown("@pat_p") == {"Printer jammed"}
    assert shown("wifi") == {"Wifi is down"}
    assert shown("100%_") == set()


def test_queue_search_for_a_number_finds_that_ticket_or_the_text(
    app, agent_client, send_update, telegram
):
    send_update(telegram.user(first_name="Pat").text("Printer jammed"))
    send_update(telegram.user(first_name="Quinn").text("Same as ticket #1 and 1"))
    with app.app_context():
        first = db.session.scalars(select(Ticket.id).order_by(Ticket.id)).first()

    def shown(search):
        page = agent_client.get("/console/", query_string={"q": search})
        text = page.get_data(as_text=True)
        return {s for s in ("Printer jammed", "Same as ticket") if s in text}

    assert shown(f"#{first}") == {"Printer jammed"}
    assert shown(str(first)) == {"Printer jammed", "Same as ticket"}


def test_queue_sorts_longest_waiting_first(app, agent_client, send_update, telegram):
    send_update(telegram.user(first_name="First").text("first in line"))
    send_update(telegram.user(first_name="Second").text("second in line"))

    page = agent_client.get("/console/").get_data(as_text=True)

    assert page.index("first in line") < page.index("second in line")


def test_queue_page_query_count_does_not_grow_with_the_page(
    app, agent_client, send_update, telegram
):
    def queries_for(path):
        statements = []
        with app.app_context():
            engine = db.engine
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            agent_client.get(path)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(statements)

    send_update(telegram.user().text("one ticket"))
    few = queries_for("/console/")
    for n in range(12):
        send_update(telegram.user().text(f"ticket {n}"))
    many = queries_for("/console/")

    assert few == many


def test_queue_paginates(app, make_app, make_staff, send_update, telegram):
    for n in range(5):
        send_update(telegram.user().text(f"ticket number {n}"))
    make_staff("Alice")
    paged = make_app(QUEUE_PAGE_SIZE=2)
    client = paged.test_client()
    log_in(client, "alice@example.com")

    first = client.get("/console/").get_data(as_text=True)
    last = client.get("/console/?page=3").get_data(as_text=True)
    beyond = client.get("/console/?page=99")

    assert "Page 1 of 3" in first
    assert first.count('class="number"') == 2
    assert last.count('class="number"') == 1
    assert beyond.status_code == 200
    assert client.get("/console/?page=-4").status_code == 200


def test_queue_row_partial_follows_the_filters(agent_client, customer_ticket):
    _, ticket_id = customer_ticket

    shown = agent_client.get(f"/console/tickets/{ticket_id}/row?status=open")
    hidden = agent_client.get(f"/console/tickets/{ticket_id}/row?status=closed")

    assert shown.status_code == 200
    assert f'id="ticket-row-{ticket_id}"' in shown.get_data(as_text=True)
    assert hidden.status_code == 204


def test_ticket_page_shows_history_and_marks_read(agent_client, customer_ticket):
    _, ticket_id = customer_ticket

    page = agent_client.get(f"/console/tickets/{ticket_id}").get_data(as_text=True)

    assert "My parcel never arrived" in page
    assert agent_client.get("/console/unread").json == {"unread": 0}


def test_unread_counts_follow_each_ticket_and_each_reader(
    app, agent_client, make_staff, send_update, telegram
):
    carol, dan = telegram.user(first_name="Carol"), telegram.user(first_name="Dan")
    for user, text in [(carol, "One"), (dan, "Two"), (carol, "Three")]:
        send_update(user.text(text))
    with app.app_context():
        carols, dans = db.session.scalars(select(Ticket.id).order_by(Ticket.id))
    make_staff("Bob")
    bob = app.test_client()
    log_in(bob, "bob@example.com")

    agent_client.get(f"/console/tickets/{carols}")
    agent_client.get(f"/console/tickets/{dans}")
    send_update(dan.text("Four"))
    send_update(dan.text("Five"))
    queue = agent_client.get("/console/").get_data(as_text=True)

    assert agent_client.get("/console/unread").json == {"unread": 2}
    assert bob.get("/console/unread").json == {"unread": 5}
    assert f'data-ticket-id="{carols}" data-unread="0"' in queue
    assert f'data-ticket-id="{dans}" data-unread="2"' in queue
    assert "<title>(2) Queue" in queue


def test_a_long_history_shows_its_latest_part_and_the_rest_on_request(
    app, make_staff, send_update, telegram
):
    user = telegram.user(first_name="Carol")
    for number in range(1, 8):
        send_update(user.text(f"Message number {number}"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    make_staff("Alice")
    client = app.test_client()
    log_in(client, "alice@example.com")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("supportbot.console.views.TIMELINE_LENGTH", 3)
        latest = client.get(f"/console/tickets/{ticket_id}").get_data(as_text=True)
        caught_up = client.get(f"/console/tickets/{ticket_id}/timeline").get_data(
            as_text=True
        )
        whole = client.get(f"/console/tickets/{ticket_id}?all=1").get_data(as_text=True)

    shown = latest.split('id="timeline"')[1]
    assert [n for n in range(1, 8) if f"Message number {n}<" in shown] == [5, 6, 7]
    assert "Show 4 earlier entries" in latest
    assert f"/console/tickets/{ticket_id}?all=1" in latest
    assert "Show 4 earlier entries" in caught_up
    assert all(f"Message number {n}<" in whole for n in range(1, 8))
    assert "earlier entr" not in whole


def test_unknown_ticket_is_404(agent_client):
    response = agent_client.get("/console/tickets/999999")

    assert response.status_code == 404
    assert "no ticket #999999" in response.get_data(as_text=True)


def test_reply_is_stored_queued_and_delivered(
    app, agent_client, customer_ticket, telegram, deliver
):
    user, ticket_id = customer_ticket

    response = post(
        agent_client, f"/console/tickets/{ticket_id}/messages", text="On its way!"
    )

    assert response.status_code == 200
    with app.app_context():
        reply = db.session.get(Message, response.json["message_id"])
        assert reply.kind is MessageKind.REPLY
        assert reply.staff.name == "Alice"
        row = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.message_id == reply.id)
        ).one()
        assert row.payload["text"] == "On its way!"
        ticket = db.session.get(Ticket, ticket_id)
        assert ticket.status is TicketStatus.PENDING
        assert ticket.first_response_at is not None
        assert ticket.waiting_since is None

    deliver()
    [sent] = telegram.wait_for(
        "sendMessage", where=lambda c: c.params["text"] == "On its way!"
    )
    assert sent.chat_id == user.id
    with app.app_context():
        assert db.session.get(Message, response.json["message_id"]).telegram_message_id


def test_failed_reply_shows_why_and_can_be_sent_again(
    app, agent_client, customer_ticket, telegram, deliver, caplog
):
    _, ticket_id = customer_ticket
    deliver()
    telegram.fail("sendMessage", error_code=400, description="Bad Request: odd")
    reply_id = post(
        agent_client, f"/console/tickets/{ticket_id}/messages", text="Try again"
    ).json["message_id"]
    deliver()

    failed = agent_client.get(f"/console/messages/{reply_id}").get_data(as_text=True)
    with app.app_context():
        delivery_id = db.session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.message_id == reply_id)
        ).one()
    resent = post(agent_client, f"/console/deliveries/{delivery_id}/resend")
    deliver()

    assert "failed: 400 Bad Request: odd" in failed
    assert f"/console/deliveries/{delivery_id}/resend" in failed
    assert resent.status_code == 200
    assert resent.json["message_id"] == reply_id
    telegram.wait_for("sendMessage", where=lambda c: c.params["text"] == "Try again")
    shown = agent_client.get(f"/console/messages/{reply_id}").get_data(as_text=True)
    assert 'data-delivery-state="sent"' in shown
    assert "Send again" not in shown
    assert f"queued delivery {delivery_id} to chat" in caplog.text


def test_only_a_failed_delivery_can_be_sent_again(
    app, agent_client, customer_ticket, deliver
):
    _, ticket_id = customer_ticket
    reply_id = post(
        agent_client, f"/console/tickets/{ticket_id}/messages", text="Fine"
    ).json["message_id"]
    deliver()
    with app.app_context():
        delivery_id = db.session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.message_id == reply_id)
        ).one()

    sent = post(agent_client, f"/console/deliveries/{delivery_id}/resend")
    unknown = post(agent_client, "/console/deliveries/999999/resend")

    assert sent.status_code == 409
    assert "only a failed delivery" in sent.json["error"]
    assert unknown.status_code == 404


def test_note_never_reaches_telegram(
    app, agent_client, customer_ticket, telegram, deliver
):
    _, ticket_id = customer_ticket

    response = post(
        agent_client,
        f"/console/tickets/{ticket_id}/messages",
        text="VIP customer",
        note="1",
    )
    deliver()

    assert response.status_code == 200
    with app.app_context():
        note = db.session.get(Message, response.json["message_id"])
        assert note.kind is MessageKind.NOTE
    assert all("VIP" not in c.params.get("text", "") for c in telegram.calls)
    page = agent_client.get(f"/console/tickets/{ticket_id}").get_data(as_text=True)
    assert "message-note" in page
    assert "Internal note" in page


@pytest.mark.parametrize("text", ["", "   ", "x" * 20001])
def test_empty_or_oversized_reply_is_refused(agent_client, customer_ticket, text):
    _, ticket_id = customer_ticket

    response = post(agent_client, f"/console/tickets/{ticket_id}/messages", text=text)

    assert response.status_code == 400
    assert response.json["error"]


def test_reply_without_csrf_token_is_refused(agent_client, customer_ticket):
    _, ticket_id = customer_ticket

    response = agent_client.post(
        f"/console/tickets/{ticket_id}/messages", data={"text": "hello"}
    )

    assert response.status_code == 400


def test_assign_status_priority_are_recorded_in_the_timeline(
    app, agent_client, make_staff, customer_ticket
):
    _, ticket_id = customer_ticket
    bob = make_staff("Bob")

    post(agent_client, f"/console/tickets/{ticket_id}/assign", assignee="me")
    post(agent_client, f"/console/tickets/{ticket_id}/assign", assignee=str(bob))
    post(agent_client, f"/console/tickets/{ticket_id}/priority", priority="urgent")
    post(agent_client, f"/console/tickets/{ticket_id}/status", status="pending")

    with app.app_context():
        ticket = db.session.get(Ticket, ticket_id)
        assert ticket.assignee_id == bob
        assert ticket.priority is TicketPriority.URGENT
        assert ticket.status is TicketStatus.PENDING
        assert [e.kind for e in ticket.events] == [
            "assigned",
            "assigned",
            "priority",
            "status",
        ]
    page = agent_client.get(f"/console/tickets/{ticket_id}").get_data(as_text=True)
    assert "assigned the ticket to Bob" in page
    assert "set the priority to urgent" in page


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("assign", {"assignee": "nobody-at-all"}),
        ("assign", {"assignee": "424242"}),
        ("priority", {"priority": "whenever"}),
        ("status", {"status": "lost"}),
    ],
)
def test_bad_action_values_are_refused_clearly(
    agent_client, customer_ticket, path, data
):
    _, ticket_id = customer_ticket

    response = post(agent_client, f"/console/tickets/{ticket_id}/{path}", **data)

    assert 400 <= response.status_code < 500
    assert response.json["error"]


def test_close_with_rating_and_the_customer_rates(
    app, agent_client, customer_ticket, telegram, deliver, send_update
):
    user, ticket_id = customer_ticket

    post(
        agent_client,
        f"/console/tickets/{ticket_id}/status",
        status="closed",
        ask_rating="1",
    )
    deliver()

    [notice] = telegram.wait_for(
        "sendMessage", where=lambda c: "closed" in c.params["text"]
    )
    buttons = notice.params["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == [
        f"rate:{ticket_id}:{score}" for score in range(1, 6)
    ]

    send_update(user.callback(f"rate:{ticket_id}:4", message=notice.response["result"]))
    deliver()

    with app.app_context():
        ticket = db.session.get(Ticket, ticket_id)
        assert ticket.status is TicketStatus.CLOSED
        assert ticket.rating == 4
    [answer] = telegram.calls_to("answerCallbackQuery")
    assert "Thank you" in answer.params["text"]


def test_rating_someone_elses_ticket_is_ignored(
    app, agent_client, customer_ticket, telegram, deliver, send_update
):
    _, ticket_id = customer_ticket
    post(
        agent_client,
        f"/console/tickets/{ticket_id}/status",
        status="closed",
        ask_rating="1",
    )

    send_update(telegram.user().callback(f"rate:{ticket_id}:1"))
    deliver()

    with app.app_context():
        assert db.session.get(Ticket, ticket_id).rating is None
    [answer] = telegram.calls_to("answerCallbackQuery")
    assert "no longer available" in answer.params["text"]


def test_reopen_and_reply_after_close(app, agent_client, customer_ticket):
    _, ticket_id = customer_ticket
    post(agent_client, f"/console/tickets/{ticket_id}/status", status="closed")

    refused = post(agent_client, f"/console/tickets/{ticket_id}/messages", text="late")
    post(agent_client, f"/console/tickets/{ticket_id}/status", status="open")
    accepted = post(agent_client, f"/console/tickets/{ticket_id}/messages", text="back")

    assert refused.status_code == 409
    assert "reopen" in refused.json["error"]
    assert accepted.status_code == 200
    with app.app_context():
        kinds = [e.kind for e in db.session.get(Ticket, ticket_id).events]
        assert kinds == ["closed", "reopened"]


def test_customer_html_is_shown_as_text(agent_client, send_update, telegram):
    send_update(
        telegram.user(first_name="<b>Mallory</b>").text(
            "<script>alert(1)</script><img src=x onerror=alert(2)>"
        )
    )

    queue = agent_client.get("/console/").get_data(as_text=True)
    ticket_id = queue.split('data-ticket-id="')[1].split('"')[0]
    page = agent_client.get(f"/console/tickets/{ticket_id}").get_data(as_text=True)

    for html in (queue, page):
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;" in html
        assert "<b>Mallory</b>" not in html


def test_console_pages_carry_a_strict_content_security_policy(agent_client):
    response = agent_client.get("/console/")

    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"


def test_photo_is_fetched_from_telegram_once_and_cached(
    app, agent_client, send_update, telegram
):
    user = telegram.user()
    update = user.photo(caption="look")
    send_update(update)
    with app.app_context():
        message_id = db.session.scalars(select(Message.id)).one()

    first = agent_client.get(f"/console/files/{message_id}")
    second = agent_client.get(f"/console/files/{message_id}")

    assert first.status_code == 200
    assert first.mimetype == "image/jpeg"
    assert first.data == second.data
    assert len(first.data) > 0
    assert len(telegram.calls_to("getFile")) == 1


def test_document_downloads_as_attachment(app, agent_client, send_update, telegram):
    send_update(telegram.user().document(file_name="page.html", mime_type="text/html"))
    with app.app_context():
        message_id = db.session.scalars(select(Message.id)).one()

    response = agent_client.get(f"/console/files/{message_id}")

    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    assert "attachment" in response.headers["Content-Disposition"]
    assert "page.html" in response.headers["Content-Disposition"]


def test_file_of_text_message_is_404(app, agent_client, customer_ticket):
    with app.app_context():
        message_id = db.session.scalars(select(Message.id)).one()

    assert agent_client.get(f"/console/files/{message_id}").status_code == 404
    assert agent_client.get("/console/files/987654").status_code == 404


def test_file_that_telegram_refuses_is_a_clear_502(
    app, agent_client, send_update, telegram
):
    send_update(telegram.user().photo())
    telegram.fail("getFile", error_code=400, description="Bad Request: file is too big")
    with app.app_context():
        message_id = db.session.scalars(select(Message.id)).one()

    response = agent_client.get(f"/console/files/{message_id}")

    assert response.status_code == 502
    assert "file is too big" in response.get_data(as_text=True)


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_reply_with_a_photo_is_uploaded_to_telegram(
    app, agent_client, customer_ticket, telegram, deliver
):
    user, ticket_id = customer_ticket
    token = csrf_token_of(agent_client)

    response = agent_client.post(
        f"/console/tickets/{ticket_id}/messages",
        data={
            "text": "Here is the label",
            "csrf_token": token,
            "file": (io.BytesIO(PNG), "label.png"),
        },
        headers={"Accept": "application/json"},
        content_type="multipart/form-data",
    )
    deliver()

    assert response.status_code == 200
    [call] = telegram.wait_for("sendPhoto")
    assert call.chat_id == user.id
    assert call.params["caption"] == "Here is the label"
    assert call.params["photo"]["filename"] == "label.png"
    assert call.params["photo"]["size"] == len(PNG)
    served = agent_client.get(f"/console/files/{response.json['message_id']}")
    assert served.data == PNG
    assert served.mimetype == "image/png"


def test_reply_with_a_document_and_no_text(
    app, agent_client, customer_ticket, telegram, deliver
):
    _, ticket_id = customer_ticket
    token = csrf_token_of(agent_client)

    response = agent_client.post(
        f"/console/tickets/{ticket_id}/messages",
        data={
            "csrf_token": token,
            "file": (io.BytesIO(b"%PDF-1.4 ..."), "invoice.pdf"),
        },
        headers={"Accept": "application/json"},
        content_type="multipart/form-data",
    )
    deliver()

    assert response.status_code == 200
    [call] = telegram.wait_for("sendDocument")
    assert call.params["document"]["filename"] == "invoice.pdf"
    assert "caption" not in call.params


def test_file_on_a_note_is_refused(agent_client, customer_ticket):
    _, ticket_id = customer_ticket

    response = agent_client.post(
        f"/console/tickets/{ticket_id}/messages",
        data={
            "csrf_token": csrf_token_of(agent_client),
            "file": (io.BytesIO(b"x"), "a.txt"),
            "text": "internal",
            "note": "1",
        },
        headers={"Accept": "application/json"},
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    assert "notes hold text only" in response.json["error"]


def test_caption_past_telegrams_limit_continues_after_the_file(
    agent_client, customer_ticket, telegram, deliver
):
    _, ticket_id = customer_ticket
    caption = " ".join(["word"] * 300)

    response = agent_client.post(
        f"/console/tickets/{ticket_id}/messages",
        data={
            "csrf_token": csrf_token_of(agent_client),
            "file": (io.BytesIO(b"%PDF-1.4"), "invoice.pdf"),
            "text": caption,
        },
        headers={"Accept": "application/json"},
        content_type="multipart/form-data",
    )
    deliver()

    assert response.status_code == 200
    [document] = telegram.wait_for("sendDocument")
    *_, rest = telegram.calls_to("sendMessage")
    assert len(document.params["caption"]) <= 1024
    assert f"{document.params['caption']} {rest.params['text']}" == caption


def test_a_file_gone_from_disk_fails_the_delivery_with_a_reason(
    app, agent_client, customer_ticket, telegram, deliver
):
    _, ticket_id = customer_ticket
    token = csrf_token_of(agent_client)
    response = agent_client.post(
        f"/console/tickets/{ticket_id}/messages",
        data={"csrf_token": token, "file": (io.BytesIO(b"data"), "gone.txt")},
        headers={"Accept": "application/json"},
        content_type="multipart/form-data",
    )
    with app.app_context():
        message = db.session.get(Message, response.json["message_id"])
        os.remove(
            os.path.join(app.config["UPLOAD_FOLDER"], message.attachment["upload"])
        )

    deliver()

    with app.app_context():
        row = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.message_id == message.id)
        ).one()
        assert row.status.value == "failed"
        assert "no longer kept" in row.error
    assert telegram.calls_to("sendDocument") == []
