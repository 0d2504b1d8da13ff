"""The queue's search: what it finds, on PostgreSQL's documents and on SQLite."""

import pytest
from flask_migrate import upgrade
from sqlalchemy import select, text

from supportbot import search
from supportbot.console import queries
from supportbot.extensions import db
from supportbot.miniapp.initdata import sign_user
from supportbot.models import Ticket

from helpers import csrf_token_of, log_in, needs_postgresql


def shown(client, search_text, **args) -> str:
    """Return the queue page a search gives, as text."""
    response = client.get("/console/", query_string={"q": search_text, **args})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def found(client, search_text, subjects, **args) -> set[str]:
    """Return which of ``subjects`` the search puts on the queue page."""
    page = shown(client, search_text, **args)
    return {subject for subject in subjects if subject in page}


@pytest.fixture
def conversation(app, agent_client, send_update, telegram):
    """Hold one ticket with a customer's messages, a reply, a note and a file."""
    user = telegram.user(first_name="Greta", last_name="Lindqvist", username="gl_77")
    send_update(user.text("Printer jammed"))
    send_update(user.text("It makes a grinding noise"))
    send_update(user.document(file_name="warranty-card.pdf"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    token = csrf_token_of(agent_client)
    for data in ({"text": "Try the rear tray"}, {"text": "Ask Kyiv", "note": "1"}):
        response = agent_client.post(
            f"/console/tickets/{ticket_id}/messages",
            data={**data, "csrf_token": token},
            headers={"Accept": "application/json"},
        )
        assert response.status_code < 300, response.get_data(as_text=True)
    send_update(telegram.user(first_name="Quinn").text("Wifi is down"))
    return user


SUBJECTS = ("Printer jammed", "Wifi is down")


def test_search_finds_messages_replies_notes_and_names(agent_client, conversation):
    for words in (
        "printer",
        "GRINDING",
        "rear tray",
        "kyiv",
        "warranty",
        "lindqvist",
        "@gl_77",
    ):
        assert found(agent_client, words, SUBJECTS, status="pending") == {
            "Printer jammed"
        }, words
    assert found(agent_client, "wifi", SUBJECTS) == {"Wifi is down"}
    assert found(agent_client, "printer", SUBJECTS) == set()


@needs_postgresql
def test_every_word_matches_as_the_start_of_a_word(agent_client, conversation):
    pending = {"status": "pending"}

    assert found(agent_client, "grind nois", SUBJECTS, **pending) == {"Printer jammed"}
    assert found(agent_client, "noise grinding", SUBJECTS, **pending) == {
        "Printer jammed"
    }
    assert found(agent_client, "grinding banana", SUBJECTS, **pending) == set()
    assert found(agent_client, "rinding", SUBJECTS, **pending) == set()
    assert found(agent_client, "warranty-card.pdf", SUBJECTS, **pending) == {
        "Printer jammed"
    }


@needs_postgresql
@pytest.mark.parametrize(
    "search_text",
    ["'", "''':*", "a'b", "\\", "x\\'", "!(&|)", ":*", "a:* & b", "<->", "é'", "🙂"],
)
def test_search_takes_any_text(agent_client, conversation, search_text):
    shown(agent_client, search_text)


def test_a_mini_app_request_is_found_by_its_description(
    app, client, agent_client, telegram
):
    user = telegram.user(first_name="Ines")
    initdata = sign_user(app.config["TELEGRAM_BOT_TOKEN"], user.as_dict())
    response = client.post(
        "/app/api/tickets",
        json={"subject": "Parcel lost", "description": "Left at the wrong gate"},
        headers={"Authorization": "tma " + initdata},
    )
    assert response.status_code == 201

    assert "Parcel lost" in shown(agent_client, "wrong gate")
    assert "Parcel lost" in shown(agent_client, "ines")


@pytest.fixture
def edited(send_update, telegram):
    """Have a customer write a message and then edit its text."""
    user = telegram.user()
    first = user.text("The screen flickers")
    send_update(first)
    send_update(user.edit(first, "The screen stays black"))


def test_an_edited_message_is_found_by_its_new_text(agent_client, edited):
    assert "The screen" in shown(agent_client, "black")


@needs_postgresql
def test_an_edited_message_is_still_found_by_its_earlier_text(agent_client, edited):
    assert "The screen" in shown(agent_client, "flickers")


def test_a_renamed_customer_is_found_by_the_new_name(
    app, agent_client, send_update, telegram
):
    user = telegram.user(first_name="Oskar")
    send_update(user.text("Where is my refund?"))

    user.first_name = "Sanna"
    user.username = "sanna_k"
    send_update(user.text("Any news?"))

    assert "Where is my refund?" in shown(agent_client, "Sanna")
    assert "Where is my refund?" in shown(agent_client, "@sanna_k")


@needs_postgresql
def test_a_document_keeps_to_its_budget(
    app, agent_client, send_update, telegram, monkeypatch
):
    monkeypatch.setattr(search, "DOCUMENT_BUDGET", 100)
    user = telegram.user(first_name="Ada")
    send_update(user.text("alpha " * 5))
    send_update(user.text("bravo " * 5))
    # The budget runs out within the run of x's.
    send_update(user.text("x" * 200 + " charlie"))

    with app.app_context():
        chars = db.session.scalar(select(Ticket.search_chars))
    assert chars == 100
    assert "alpha" in shown(agent_client, "alpha")
    assert "alpha" in shown(agent_client, "bravo")
    assert "alpha" not in shown(agent_client, "charlie")


def test_a_search_counts_its_matches_up_to_a_bound(
    make_app, make_staff, send_update, telegram, monkeypatch
):
    for number in range(5):
        send_update(telegram.user().text(f"Lost parcel number {number}"))
    monkeypatch.setattr(queries, "SEARCH_COUNT", 2)
    make_staff("Alice")
    client = make_app(QUEUE_PAGE_SIZE=1).test_client()
    log_in(client, "alice@example.com")

    first = shown(client, "parcel")
    third = shown(client, "parcel", page=3)
    last = shown(client, "parcel", page=5)

    assert "Page 1 of 2+ · 2+ tickets" in first
    assert "Page 3 of 4+ · 4+ tickets" in third
    assert "Older" in third
    assert "Page 5 of 5 · 5 tickets" in last
    assert "Older" not in last
    assert "Page 1 of 5 · 5 tickets" in shown(client, "")


@needs_postgresql
def test_rebuilt_documents_hold_what_the_services_wrote(
    app, agent_client, conversation
):
    with app.app_context():
        written = documents()
        with db.engine.begin() as connection:
            search.rebuild_documents(connection)
        assert documents() == written


@needs_postgresql
def test_the_migration_fills_the_documents_of_existing_tickets(app):
    with app.app_context():
        db.drop_all()
        upgrade(revision="0008")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO customer (id, first_name, username, created_at,"
                    " updated_at) VALUES (7, 'Mira', 'mira_v', now(), now());"
                    " INSERT INTO ticket (id, customer_id, subject, status,"
                    " priority, created_at, updated_at, last_message_preview,"
                    " customer_message_count) VALUES (1, 7, 'Broken hinge',"
                    " 'open', 'normal', now(), now(), '', 1);"
                    " INSERT INTO message (ticket_id, kind, text, attachment,"
                    " created_at) VALUES (1, 'customer', 'The lid wobbles',"
                    ' \'{"file_name": "lid.jpg"}\', now())'
                )
            )

        upgrade()

        for words in ("hinge", "wobbl", "mira", "mira_v", "lid.jpg"):
            matched = select(Ticket.id).where(search.condition(words))
            assert db.session.scalars(matched).all() == [1], words


def documents() -> dict[int, set[str]]:
    """Return each ticket's document as a set of words."""
    rows = db.session.execute(
        text("SELECT id, tsvector_to_array(search_document) FROM ticket")
    )
    return {ticket_id: set(words) for ticket_id, words in rows}
