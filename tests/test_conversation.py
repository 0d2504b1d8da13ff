"""The bot's side of the conversation, from Telegram update to stored ticket."""

import pytest
from sqlalchemy import select

from supportbot.extensions import db
from supportbot.models import (
    Customer,
    Message,
    MessageKind,
    OutboxMessage,
    Ticket,
    TicketStatus,
)


def tickets_of(customer_id):
    return list(
        db.session.scalars(
            select(Ticket).where(Ticket.customer_id == customer_id).order_by(Ticket.id)
        )
    )


def sent_texts(telegram, chat_id):
    return [
        call.params["text"]
        for call in telegram.calls_to("sendMessage")
        if call.chat_id == chat_id
    ]


def test_first_message_creates_customer_ticket_and_confirmation(
    app, send_update, telegram, deliver
):
    user = telegram.user(first_name="Ada", last_name="Lovelace", username="ada")

    send_update(user.text("My invoice is wrong"))
    deliver()

    with app.app_context():
        customer = db.session.get(Customer, user.id)
        assert customer.first_name == "Ada"
        assert customer.username == "ada"
        assert customer.language_code == "en"
        [ticket] = tickets_of(user.id)
        assert ticket.subject == "My invoice is wrong"
        assert ticket.status is TicketStatus.OPEN
        assert ticket.waiting_since is not None
        [message] = ticket.messages
        assert message.kind is MessageKind.CUSTOMER
        assert message.text == "My invoice is wrong"
        ticket_number = ticket.number

    [reply] = sent_texts(telegram, user.id)
    assert f"#{ticket_number}" in reply


def test_follow_up_joins_current_ticket_and_gets_a_reaction(
    app, send_update, telegram, deliver
):
    user = telegram.user()

    send_update(user.text("first"))
    follow_up = user.text("second")
    send_update(follow_up)
    deliver()

    with app.app_context():
        [ticket] = tickets_of(user.id)
        assert [m.text for m in ticket.messages] == ["first", "second"]
    assert len(sent_texts(telegram, user.id)) == 1
    [reaction] = telegram.calls_to("setMessageReaction")
    assert reaction.params["message_id"] == follow_up["message"]["message_id"]


@pytest.mark.parametrize(
    ("build", "kind", "expected"),
    [
        (lambda u: u.photo(caption="broken screen"), "photo", {"width", "height"}),
        (
            lambda u: u.document(file_name="log.txt", mime_type="text/plain"),
            "document",
            {"file_name", "mime_type"},
        ),
        (lambda u: u.voice(), "voice", {"duration"}),
        (lambda u: u.video(), "video", {"duration"}),
        (lambda u: u.sticker(emoji="👍"), "sticker", {"emoji"}),
        (lambda u: u.location(52.52, 13.40), "location", {"latitude", "longitude"}),
        (lambda u: u.contact("+4912345", "Bob"), "contact", {"phone_number"}),
    ],
)
def test_each_message_kind_is_stored_with_its_attachment(
    app, send_update, telegram, deliver, build, kind, expected
):
    user = telegram.user()
    update = build(user)

    response = send_update(update)
    deliver()

    assert response.status_code == 200
    with app.app_context():
        [ticket] = tickets_of(user.id)
        [message] = ticket.messages
        assert message.attachment["type"] == kind
        assert expected <= message.attachment.keys()
        assert ticket.subject
    assert len(sent_texts(telegram, user.id)) == 1


def test_photo_keeps_largest_size_and_caption(app, send_update, telegram):
    user = telegram.user()
    update = user.photo(caption="see this")
    largest = max(update["message"]["photo"], key=lambda p: p["width"] * p["height"])

    send_update(update)

    with app.app_context():
        [message] = db.session.scalars(select(Message)).all()
        assert message.text == "see this"
        assert message.attachment["file_id"] == largest["file_id"]


def test_unsupported_message_kind_is_explained(app, send_update, telegram, deliver):
    user = telegram.user()
    update = user.text("placeholder")
    message = update["message"]
    del message["text"]
    message["dice"] = {"emoji": "🎲", "value": 3}

    send_update(update)
    deliver()

    with app.app_context():
        assert tickets_of(user.id) == []
    [reply] = sent_texts(telegram, user.id)
    assert "can't take this kind of message" in reply


def test_edit_updates_text_and_keeps_earlier_version(app, send_update, telegram):
    user = telegram.user()
    original = user.text("my odrer is late")
    send_update(original)

    send_update(user.edit(original, "my order is late"))

    with app.app_context():
        [message] = db.session.scalars(select(Message)).all()
        assert message.text == "my order is late"
        assert message.edited_at is not None
        [revision] = message.revisions
        assert revision.text == "my odrer is late"
        assert revision.written_at == message.created_at


def test_two_edits_keep_both_earlier_versions(app, send_update, telegram):
    user = telegram.user()
    original = user.text("one")
    send_update(original)

    send_update(user.edit(original, "two"))
    send_update(user.edit(original, "three"))

    with app.app_context():
        [message] = db.session.scalars(select(Message)).all()
        assert message.text == "three"
        assert [r.text for r in message.revisions] == ["one", "two"]


def test_edit_of_unknown_message_is_acknowledged(app, send_update, telegram):
    user = telegram.user()

    response = send_update(user.edit(4242, "edited"))

    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalars(select(Message)).all() == []


def test_blocking_and_unblocking_the_bot(app, send_update, telegram):
    user = telegram.user()
    send_update(user.text("hello"))

    send_update(user.blocks_bot())
    with app.app_context():
        assert db.session.get(Customer, user.id).has_blocked_bot

    send_update(user.unblocks_bot())
    with app.app_context():
        assert not db.session.get(Customer, user.id).has_blocked_bot


def test_writing_again_makes_a_blocked_customer_reachable(app, send_update, telegram):
    user = telegram.user()
    send_update(user.blocks_bot())

    send_update(user.text("I am back"))

    with app.app_context():
        assert db.session.get(Customer, user.id).blocked_at is None


def test_start_greets_and_offers_mini_app(app, send_update, telegram, deliver):
    user = telegram.user(first_name="Grace")

    send_update(user.text("/start"))
    deliver()

    [call] = telegram.calls_to("sendMessage")
    assert "Hello, Grace" in call.params["text"]
    buttons = [b for row in call.params["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["web_app"]["url"] for b in buttons] == [
        "https://support.example.com/app/new",
        "https://support.example.com/app",
    ]
    with app.app_context():
        assert tickets_of(user.id) == []


def test_start_without_https_public_url_has_no_buttons(app, send_update, telegram):
    app.config["PUBLIC_URL"] = "http://localhost:5000"

    send_update(telegram.user().text("/start"))

    with app.app_context():
        [row] = db.session.scalars(select(OutboxMessage)).all()
        assert "reply_markup" not in row.payload
        assert "Hello" in row.payload["text"]


def test_new_opens_a_ticket_even_with_one_open(app, send_update, telegram, deliver):
    user = telegram.user()
    send_update(user.text("first problem"))

    send_update(user.text("/new Second problem"))
    send_update(user.text("more about the second"))
    deliver()

    with app.app_context():
        first, second = tickets_of(user.id)
        assert [m.text for m in first.messages] == ["first problem"]
        assert second.subject == "Second problem"
        assert [m.text for m in second.messages] == [
            "Second problem",
            "more about the second",
        ]
        second_number = second.number
    assert f"#{second_number}" in sent_texts(telegram, user.id)[-1]


def test_new_without_text_asks_for_details(app, send_update, telegram, deliver):
    user = telegram.user()

    send_update(user.text("/new"))
    send_update(user.text("the details"))
    deliver()

    with app.app_context():
        [ticket] = tickets_of(user.id)
        assert ticket.subject == "the details"
    assert "Tell us what happened" in sent_texts(telegram, user.id)[0]


def test_status_lists_open_tickets(app, send_update, telegram, deliver):
    user = telegram.user()
    send_update(user.text("/new Printer jammed"))
    send_update(user.text("/new Wifi down"))

    send_update(user.text("/status"))
    deliver()

    listing = sent_texts(telegram, user.id)[-1]
    assert "Printer jammed" in listing
    assert "Wifi down" in listing
    assert listing.index("Wifi down") < listing.index("Printer jammed")


def test_status_with_no_tickets(app, send_update, telegram, deliver):
    user = telegram.user()

    send_update(user.text("/status"))
    deliver()

    assert "no open requests" in sent_texts(telegram, user.id)[0]


def test_close_closes_current_ticket_and_next_message_opens_another(
    app, send_update, telegram, deliver
):
    user = telegram.user()
    send_update(user.text("help"))

    send_update(user.text("/close"))
    send_update(user.text("new question"))
    deliver()

    with app.app_context():
        closed, fresh = tickets_of(user.id)
        assert closed.status is TicketStatus.CLOSED
        assert closed.closed_at is not None
        assert fresh.status is TicketStatus.OPEN
        closed_number = closed.number
    texts = sent_texts(telegram, user.id)
    assert f"#{closed_number} is closed" in texts[1]


def test_close_with_nothing_open(app, send_update, telegram, deliver):
    user = telegram.user()

    send_update(user.text("/close"))
    deliver()

    assert "no open request" in sent_texts(telegram, user.id)[0]


def test_unknown_command_lists_commands(app, send_update, telegram, deliver):
    user = telegram.user()

    send_update(user.text("/frobnicate"))
    deliver()

    reply = sent_texts(telegram, user.id)[0]
    assert "don't know that command" in reply
    assert "/status" in reply


def test_group_messages_open_no_ticket(app, send_update, telegram, deliver):
    user = telegram.user()
    group = telegram.group()

    send_update(user.text_in(group, "/start"))
    send_update(user.text_in(group, "just chatting"))
    deliver()

    with app.app_context():
        assert db.session.scalars(select(Ticket)).all() == []
    [reply] = telegram.calls_to("sendMessage")
    assert reply.chat_id == group.id
    assert "private chats" in reply.params["text"]


def test_added_to_group_says_it_works_in_private(app, send_update, telegram, deliver):
    user = telegram.user()
    group = telegram.group()

    send_update(user.group_added(group))
    deliver()

    [reply] = telegram.calls_to("sendMessage")
    assert reply.chat_id == group.id
    assert "private chats" in reply.params["text"]


def test_language_falls_back_to_english(app, send_update, telegram, deliver):
    user = telegram.user(language_code="pt-br")

    send_update(user.text("/help"))
    deliver()

    assert "/status" in sent_texts(telegram, user.id)[0]
