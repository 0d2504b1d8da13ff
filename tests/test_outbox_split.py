"""Texts and captions too long for one Telegram message go as parts, in order."""

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from supportbot import outbox
from supportbot.extensions import db
from supportbot.models import OutboxMessage, OutboxStatus
from supportbot.outbox.splitting import split_call, split_text, utf16_length


def paragraph(number, words=150):
    """Return a paragraph of about a thousand characters, numbered to be found."""
    return f"Paragraph {number}: " + " ".join(["lorem"] * words)


def rows_of(app):
    """Return every outbox row, oldest first, detached from the session."""
    with app.app_context():
        rows = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        found = list(rows)
        db.session.expunge_all()
        return found


def test_long_text_is_cut_between_paragraphs():
    text = "\n\n".join(paragraph(n) for n in range(1, 13))

    parts = split_text(text)

    assert len(parts) == 3
    assert all(utf16_length(part) <= 4096 for part in parts)
    assert all(part.startswith("Paragraph") for part in parts)
    assert "\n\n".join(parts) == text


def test_a_paragraph_longer_than_a_message_is_cut_between_words():
    text = paragraph(1, words=1500)

    parts = split_text(text)

    assert [utf16_length(part) <= 4096 for part in parts] == [True, True, True]
    assert " ".join(parts) == text
    assert all(not part.endswith(" ") and "lorem" in part for part in parts)


def test_emoji_count_twice_as_telegram_counts_them():
    text = "😀" * 3000

    parts = split_text(text)

    assert [len(part) for part in parts] == [2048, 952]


@given(
    st.lists(
        st.text(alphabet=st.sampled_from("ab😀 \n"), min_size=1, max_size=600),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=2, max_value=300),
)
def test_parts_keep_every_visible_character_in_order(pieces, limit):
    text = "".join(pieces)

    parts = split_text(text, limit)

    assert all(utf16_length(part) <= limit for part in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


def test_reply_quote_goes_on_the_first_part_and_buttons_on_the_last():
    keyboard = {"inline_keyboard": [[{"text": "Rate", "callback_data": "rate"}]]}
    quote = {"message_id": 7, "allow_sending_without_reply": True}

    calls = split_call(
        "sendMessage",
        {
            "chat_id": 1,
            "text": "\n\n".join(paragraph(n) for n in range(1, 6)),
            "parse_mode": "HTML",
            "reply_markup": keyboard,
            "reply_parameters": quote,
        },
    )

    first, *_, last = [payload for _, payload in calls]
    assert first["reply_parameters"] == quote
    assert "reply_markup" not in first
    assert last["reply_markup"] == keyboard
    assert "reply_parameters" not in last
    assert {payload["parse_mode"] for _, payload in calls} == {"HTML"}


def test_formatting_entities_follow_their_text_into_each_part():
    text = paragraph(1, words=800)
    bold_start = text.index("lorem", 4000)
    entities = [{"type": "bold", "offset": bold_start, "length": 200}]

    calls = split_call(
        "sendMessage", {"chat_id": 1, "text": text, "entities": entities}
    )

    [(_, first), (_, second)] = calls
    [in_first] = first["entities"]
    [in_second] = second["entities"]
    assert first["text"][in_first["offset"] :].startswith("lorem")
    assert in_first["offset"] + in_first["length"] == len(first["text"])
    assert in_second["offset"] == 0
    assert in_first["length"] + in_second["length"] < 200


def test_long_caption_stays_under_the_photo_up_to_its_limit():
    caption = "\n\n".join(paragraph(n, words=60) for n in range(1, 8))

    calls = split_call("sendPhoto", {"chat_id": 1, "photo": "p-1", "caption": caption})

    (media_method, media), *rest = calls
    assert media_method == "sendPhoto"
    assert media["photo"] == "p-1"
    assert utf16_length(media["caption"]) <= 1024
    assert [method for method, _ in rest] == ["sendMessage"]
    assert media["caption"] + "\n\n" + rest[0][1]["text"] == caption


def test_long_reply_arrives_whole_and_in_order_with_each_part_tracked(
    make_app, app, telegram
):
    # A chat rate that lets all five messages go in one round.
    roomy = make_app(OUTBOX_RATE_PRIVATE="5/1")
    text = "\n\n".join(paragraph(n) for n in range(1, 17))
    with roomy.app_context():
        first = outbox.enqueue(2, "sendMessage", {"text": text})
        outbox.enqueue(2, "sendMessage", {"text": "and a short one"})
        db.session.commit()
        first_id = first.id

        outbox.deliver_due(roomy.extensions["supportbot.telegram"])

    texts = [call.params["text"] for call in telegram.calls_to("sendMessage")]
    assert "\n\n".join(texts[:-1]) == text
    assert texts[-1] == "and a short one"
    parts = [row for row in rows_of(app) if row.parts > 1]
    assert [(row.part, row.parts) for row in parts] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert {row.first_part_id for row in parts[1:]} == {first_id}
    assert {row.status for row in parts} == {OutboxStatus.SENT}
    assert len({row.telegram_message_id for row in parts}) == 4


def test_when_a_part_fails_the_rest_of_the_message_waits_for_a_resend(
    app, telegram, deliver
):
    text = "\n\n".join(paragraph(n) for n in range(1, 13))
    with app.app_context():
        outbox.enqueue(3, "sendMessage", {"text": text})
        db.session.commit()
    telegram.fail("sendMessage", error_code=400, description="Bad Request: odd")

    deliver()

    first, second, third = rows_of(app)
    assert first.status is OutboxStatus.FAILED
    assert (second.status, third.status) == (OutboxStatus.FAILED,) * 2
    assert third.error == "not sent: part 1 of 3 failed: 400 Bad Request: odd"
    assert len(telegram.calls_to("sendMessage")) == 1

    with app.app_context():
        outbox.resend(third.id)
        db.session.commit()
    deliver()

    accepted = [c.params["text"] for c in telegram.calls_to("sendMessage")[1:]]
    assert "\n\n".join(accepted) == text
    assert {row.status for row in rows_of(app)} == {OutboxStatus.SENT}
