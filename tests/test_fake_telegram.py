"""Exercise the fake Telegram Bot API over real HTTP."""

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from supportbot.fake_telegram import FakeTelegram, _TerminalChat

INLINE_MARKUP = {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}


@pytest.fixture(scope="module")
def server():
    with FakeTelegram() as telegram:
        yield telegram


@pytest.fixture
def telegram(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def http():
    session = requests.Session()
    # Keep proxy variables from the environment away from localhost calls.
    session.trust_env = False
    yield session
    session.close()


def api(telegram, method):
    return f"{telegram.base_url}/bot{telegram.token}/{method}"


def send(http, telegram, text="hello", chat_id=42, **extra):
    return http.post(
        api(telegram, "sendMessage"), json={"chat_id": chat_id, "text": text, **extra}
    )


class _WebhookReceiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        self.server.received.append(
            (dict(self.headers), json.loads(self.rfile.read(length)))
        )
        body = json.dumps(self.server.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut_short:
            # As a server killed mid-answer: half the body, then nothing.
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        return


@pytest.fixture
def webhook_receiver():
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    receiver.received = []
    receiver.answer = {}
    receiver.cut_short = False
    thread = threading.Thread(
        target=receiver.serve_forever, kwargs={"poll_interval": 0.05}
    )
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()
    thread.join()


# Envelope and routing


def test_get_me_answers_with_success_envelope(telegram, http):
    response = http.get(api(telegram, "getMe"))

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["result"]["is_bot"] is True
    assert body["result"]["username"] == telegram.bot_username
    assert body["result"]["id"] == 123456


def test_wrong_token_is_unauthorized_and_still_recorded(telegram, http):
    response = http.get(f"{telegram.base_url}/bot999:WRONG/getMe")

    assert response.status_code == 401
    assert response.json() == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }
    [call] = telegram.calls
    assert call.token == "999:WRONG"
    assert call.status == 401


def test_unknown_method_is_not_found(telegram, http):
    response = http.post(api(telegram, "launchRockets"), json={})

    assert response.status_code == 404
    assert response.json()["description"] == "Not Found"


def test_method_names_are_case_insensitive(telegram, http):
    response = http.post(api(telegram, "SENDMESSAGE"), json={"chat_id": 7, "text": "x"})

    assert response.status_code == 200
    assert telegram.calls_to("sendMessage")[0].chat_id == 7


# sendMessage and media


def test_send_message_returns_message_with_per_chat_increasing_ids(telegram, http):
    first = send(http, telegram, chat_id="42", reply_markup=INLINE_MARKUP).json()[
        "result"
    ]
    second = send(http, telegram, chat_id=42).json()["result"]
    other_chat = send(http, telegram, chat_id=43).json()["result"]

    assert second["message_id"] == first["message_id"] + 1
    assert other_chat["message_id"] == 1
    assert first["chat"] == {"id": 42, "first_name": "User", "type": "private"}
    assert first["from"]["is_bot"] is True
    assert first["text"] == "hello"
    assert first["reply_markup"] == INLINE_MARKUP
    assert isinstance(first["date"], int)
    assert "reply_markup" not in second
    assert telegram.calls[0].chat_id == 42


def test_send_message_to_a_known_user_uses_their_chat(telegram, http):
    ada = telegram.user(first_name="Ada", username="ada")

    result = send(http, telegram, chat_id=ada.id).json()["result"]

    assert result["chat"] == {
        "id": ada.id,
        "first_name": "Ada",
        "type": "private",
        "username": "ada",
    }


@pytest.mark.parametrize(
    ("payload", "description"),
    [
        ({"chat_id": 42}, "Bad Request: message text is empty"),
        ({"chat_id": 42, "text": "   "}, "Bad Request: message text is empty"),
        ({"text": "hi"}, "Bad Request: chat_id is empty"),
        ({"chat_id": "@nobody", "text": "hi"}, "Bad Request: chat not found"),
        ({"chat_id": 42, "text": "x" * 4097}, "Bad Request: message is too long"),
    ],
)
def test_send_message_rejects_bad_requests(telegram, http, payload, description):
    response = http.post(api(telegram, "sendMessage"), json=payload)

    assert response.status_code == 400
    assert response.json() == {
        "ok": False,
        "error_code": 400,
        "description": description,
    }


def test_html_parse_mode_strips_tags_and_rejects_unknown_ones(telegram, http):
    good = send(http, telegram, text="<b>Ticket</b> &amp; co", parse_mode="HTML")
    bad = send(http, telegram, text="hi <div>there</div>", parse_mode="HTML")
    unclosed = send(http, telegram, text="<b>hi", parse_mode="HTML")

    assert good.json()["result"]["text"] == "Ticket & co"
    assert bad.status_code == 400
    assert 'Unsupported start tag "div" at byte offset 3' in bad.json()["description"]
    assert "Can't find end tag" in unclosed.json()["description"]


def test_callback_data_longer_than_64_bytes_is_rejected(telegram, http):
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "x" * 65}]]}

    response = send(http, telegram, reply_markup=markup)

    assert response.status_code == 400
    assert response.json()["description"] == "Bad Request: BUTTON_DATA_INVALID"


def test_send_photo_by_file_id_returns_growing_photo_sizes(telegram, http):
    response = http.post(
        api(telegram, "sendPhoto"),
        json={"chat_id": 42, "photo": "existing-id", "caption": "look"},
    )

    result = response.json()["result"]
    sizes = result["photo"]
    assert len(sizes) == 3
    assert [size["width"] for size in sizes] == sorted(size["width"] for size in sizes)
    assert sizes[-1]["file_id"] == "existing-id"
    assert result["caption"] == "look"


@pytest.mark.parametrize(
    ("method", "field", "expected_keys"),
    [
        ("sendVoice", "voice", {"duration", "mime_type", "file_size"}),
        ("sendVideo", "video", {"width", "height", "duration", "mime_type"}),
        ("sendSticker", "sticker", {"type", "is_animated", "is_video", "width"}),
        ("sendAnimation", "animation", {"width", "height", "duration", "file_name"}),
        ("sendAudio", "audio", {"duration", "file_name", "mime_type"}),
    ],
)
def test_media_methods_return_plausible_objects(
    telegram, http, method, field, expected_keys
):
    response = http.post(api(telegram, method), json={"chat_id": 42, field: "abc"})

    media = response.json()["result"][field]
    assert expected_keys <= media.keys()
    assert media["file_id"] == "abc"
    assert media["file_unique_id"]


def test_media_without_a_file_is_rejected(telegram, http):
    response = http.post(api(telegram, "sendPhoto"), json={"chat_id": 42})

    assert response.status_code == 400
    assert (
        response.json()["description"]
        == "Bad Request: there is no photo in the request"
    )


def test_simple_methods_answer_true(telegram, http):
    answers = [
        http.post(
            api(telegram, "sendChatAction"), json={"chat_id": 1, "action": "typing"}
        ),
        http.post(
            api(telegram, "setMessageReaction"),
            json={
                "chat_id": 1,
                "message_id": 3,
                "reaction": [{"type": "emoji", "emoji": "👍"}],
            },
        ),
        http.post(
            api(telegram, "answerCallbackQuery"), json={"callback_query_id": "9"}
        ),
        http.post(
            api(telegram, "setMyCommands"),
            json={"commands": [{"command": "start", "description": "Begin"}]},
        ),
        http.post(
            api(telegram, "setChatMenuButton"),
            json={"menu_button": {"type": "commands"}},
        ),
    ]

    assert [answer.json()["result"] for answer in answers] == [True] * 5
    commands = http.get(api(telegram, "getMyCommands")).json()["result"]
    assert commands == [{"command": "start", "description": "Begin"}]


def test_edit_message_text_edits_a_bot_message_once(telegram, http):
    sent = send(http, telegram, reply_markup=INLINE_MARKUP).json()["result"]
    edit = {"chat_id": 42, "message_id": sent["message_id"], "text": "changed"}

    edited = http.post(api(telegram, "editMessageText"), json=edit)
    repeated = http.post(api(telegram, "editMessageText"), json=edit)
    missing = http.post(
        api(telegram, "editMessageText"), json={**edit, "message_id": 999}
    )

    result = edited.json()["result"]
    assert result["text"] == "changed"
    assert "edit_date" in result
    assert "reply_markup" not in result
    assert repeated.json()["description"].startswith(
        "Bad Request: message is not modified"
    )
    assert missing.json()["description"] == "Bad Request: message to edit not found"


# Parameter encodings


def test_form_params_decode_json_fields_but_keep_text_as_text(telegram, http):
    response = http.post(
        api(telegram, "sendMessage"),
        data={
            "chat_id": "42",
            "text": "[1, 2]",
            "reply_markup": json.dumps(INLINE_MARKUP),
        },
    )

    assert response.status_code == 200
    params = telegram.calls[0].params
    assert params["text"] == "[1, 2]"
    assert params["reply_markup"] == INLINE_MARKUP
    assert params["chat_id"] == "42"
    assert telegram.calls[0].chat_id == 42


def test_query_string_params_are_read(telegram, http):
    response = http.get(
        api(telegram, "sendMessage"),
        params={
            "chat_id": "5",
            "text": "via query",
            "reply_markup": json.dumps(INLINE_MARKUP),
        },
    )

    assert response.json()["result"]["text"] == "via query"
    assert response.json()["result"]["reply_markup"] == INLINE_MARKUP


def test_multipart_upload_records_fields_and_file_and_can_be_downloaded(telegram, http):
    content = b"%PDF\x00\r\n--boundary-lookalike\r\n\xff" * 5

    response = http.post(
        api(telegram, "sendDocument"),
        data={"chat_id": "42", "caption": "the report"},
        files={"document": ("report.pdf", content, "application/pdf")},
    )

    params = telegram.calls[0].params
    assert params["caption"] == "the report"
    assert params["document"] == {
        "filename": "report.pdf",
        "size": len(content),
        "content_type": "application/pdf",
    }
    document = response.json()["result"]["document"]
    assert document["file_name"] == "report.pdf"
    assert document["file_size"] == len(content)
    file_info = http.get(
        api(telegram, "getFile"), params={"file_id": document["file_id"]}
    )
    path = file_info.json()["result"]["file_path"]
    download = http.get(f"{telegram.base_url}/file/bot{telegram.token}/{path}")
    assert download.content == content


def test_add_file_serves_get_file_and_download(telegram, http):
    telegram.add_file("file-1", b"hello bytes", file_path="documents/hello.txt")

    info = http.post(api(telegram, "getFile"), json={"file_id": "file-1"}).json()[
        "result"
    ]
    download = http.get(
        f"{telegram.base_url}/file/bot{telegram.token}/documents/hello.txt"
    )
    wrong_token = http.get(f"{telegram.base_url}/file/bot1:X/documents/hello.txt")
    unknown = http.post(api(telegram, "getFile"), json={"file_id": "nope"})

    assert info["file_size"] == 11
    assert info["file_path"] == "documents/hello.txt"
    assert info["file_unique_id"]
    assert download.content == b"hello bytes"
    assert wrong_token.status_code == 401
    assert unknown.json()["description"] == "Bad Request: invalid file_id"


# Scripted failures


def test_fail_429_carries_retry_after_then_recovers(telegram, http):
    telegram.fail("sendMessage", error_code=429, retry_after=3)

    limited = send(http, telegram)
    recovered = send(http, telegram)

    assert limited.status_code == 429
    assert limited.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert recovered.status_code == 200


@pytest.mark.parametrize(
    ("error_code", "description"),
    [
        (400, "Bad Request: chat not found"),
        (403, "Forbidden: bot was blocked by the user"),
        (500, "Internal Server Error"),
    ],
)
def test_fail_uses_telegram_style_default_descriptions(
    telegram, http, error_code, description
):
    telegram.fail(error_code=error_code)

    response = http.get(api(telegram, "getMe"))

    assert response.status_code == error_code
    assert response.json()["description"] == description


def test_fail_can_target_one_chat_and_last_until_reset(telegram, http):
    telegram.fail("sendMessage", chat_id=42, error_code=500, times=None)

    failures = [send(http, telegram, chat_id=42).status_code for _ in range(3)]
    other_chat = send(http, telegram, chat_id=43)
    telegram.reset()
    after_reset = send(http, telegram, chat_id=42)

    assert failures == [500, 500, 500]
    assert other_chat.status_code == 200
    assert after_reset.status_code == 200


def test_blocked_chat_answers_forbidden_until_unblocked(telegram, http):
    telegram.block(42)

    blocked = send(http, telegram, chat_id=42)
    typing = http.post(
        api(telegram, "sendChatAction"), json={"chat_id": 42, "action": "typing"}
    )
    telegram.unblock("42")
    unblocked = send(http, telegram, chat_id=42)

    assert blocked.status_code == 403
    assert blocked.json()["description"] == "Forbidden: bot was blocked by the user"
    assert typing.status_code == 403
    assert unblocked.status_code == 200


def test_delay_slows_only_the_named_method(telegram, http):
    telegram.delay(0.3, "getMe")

    started = time.monotonic()
    http.get(api(telegram, "getMe"))
    slow = time.monotonic() - started
    started = time.monotonic()
    send(http, telegram)
    fast = time.monotonic() - started

    assert slow >= 0.3
    assert fast < 0.2


def test_dropped_connection_raises_connection_error_once(telegram, http):
    telegram.drop_connection("getMe")

    with pytest.raises(requests.ConnectionError):
        http.get(api(telegram, "getMe"))
    second = http.get(api(telegram, "getMe"))

    assert second.status_code == 200
    assert [call.status for call in telegram.calls_to("getMe")] == [None, 200]


def test_wait_for_reports_recorded_calls_on_timeout(telegram, http):
    send(http, telegram, text="first")

    with pytest.raises(AssertionError) as failure:
        telegram.wait_for("sendPhoto", timeout=0.1)

    message = str(failure.value)
    assert "sendPhoto" in message
    assert "sendMessage" in message
    assert '"first"' in message


def test_wait_for_wakes_on_a_call_from_another_thread(telegram, http):
    threading.Timer(0.1, send, args=(http, telegram), kwargs={"text": "late"}).start()

    calls = telegram.wait_for(
        "sendMessage", where=lambda call: call.params["text"] == "late"
    )

    assert calls[0].params["text"] == "late"


# Updates: long polling


def test_get_updates_honours_offset_and_confirms_older_updates(telegram, http):
    ada = telegram.user()
    updates = [ada.text(f"message {n}") for n in range(3)]
    for update in updates:
        assert telegram.push(update) is None

    everything = http.get(api(telegram, "getUpdates")).json()["result"]
    later = http.get(
        api(telegram, "getUpdates"), params={"offset": updates[1]["update_id"]}
    )
    info = http.get(api(telegram, "getWebhookInfo")).json()["result"]

    assert [u["update_id"] for u in everything] == [u["update_id"] for u in updates]
    assert [u["update_id"] for u in later.json()["result"]] == [
        updates[1]["update_id"],
        updates[2]["update_id"],
    ]
    assert info == {
        "url": "",
        "has_custom_certificate": False,
        "pending_update_count": 2,
    }


def test_long_poll_wakes_up_when_an_update_is_pushed(telegram, http):
    update = telegram.user().text("are you there?")
    threading.Timer(0.2, telegram.push, args=(update,)).start()

    started = time.monotonic()
    response = http.get(api(telegram, "getUpdates"), params={"timeout": 5})
    waited = time.monotonic() - started

    assert response.json()["result"] == [update]
    assert 0.15 <= waited < 2


def test_long_poll_returns_empty_after_timeout(telegram, http):
    started = time.monotonic()
    response = http.post(api(telegram, "getUpdates"), json={"timeout": 0.2})

    assert response.json() == {"ok": True, "result": []}
    assert time.monotonic() - started >= 0.2


def test_get_updates_conflicts_with_an_active_webhook(telegram, http):
    telegram.set_webhook("http://127.0.0.1:9/hook")

    response = http.get(api(telegram, "getUpdates"))

    assert response.status_code == 409
    assert response.json()["description"].startswith("Conflict: can't use getUpdates")


def test_allowed_updates_filters_what_is_queued(telegram, http):
    ada = telegram.user()
    http.get(api(telegram, "getUpdates"), params={"allowed_updates": '["message"]'})

    telegram.push(ada.callback("yes"))
    telegram.push(ada.text("kept"))

    result = http.get(api(telegram, "getUpdates")).json()["result"]
    assert [list(update)[1] for update in result] == ["message"]


# Updates: webhook


def test_push_posts_to_webhook_with_secret_header(telegram, http, webhook_receiver):
    url = f"http://127.0.0.1:{webhook_receiver.server_address[1]}/telegram"
    set_answer = http.post(
        api(telegram, "setWebhook"),
        json={"url": url, "secret_token": "s3cr3t", "allowed_updates": ["message"]},
    )
    update = telegram.user().text("hi")

    result = telegram.push(update)

    assert set_answer.json() == {
        "ok": True,
        "result": True,
        "description": "Webhook was set",
    }
    assert result.status == 200
    assert result.json == {}
    [(headers, body)] = webhook_receiver.received
    assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cr3t"
    assert body == update
    info = http.get(api(telegram, "getWebhookInfo")).json()["result"]
    assert info["url"] == url
    assert info["allowed_updates"] == ["message"]


def test_webhook_answer_with_a_method_is_executed(telegram, webhook_receiver):
    telegram.set_webhook(f"http://127.0.0.1:{webhook_receiver.server_address[1]}/")
    webhook_receiver.answer = {"method": "sendMessage", "chat_id": 42, "text": "inline"}

    telegram.push(telegram.user().text("hi"))

    [call] = telegram.calls_to("sendMessage")
    assert call.params["text"] == "inline"
    assert call.status == 200


def test_push_to_unreachable_webhook_reports_status_zero(telegram, http):
    telegram.set_webhook("http://127.0.0.1:9/hook")

    result = telegram.push(telegram.user().text("hi"))

    assert result.status == 0
    assert result.json is None
    info = http.get(api(telegram, "getWebhookInfo")).json()["result"]
    assert info["last_error_message"].startswith("Connection failed")


def test_push_answered_only_in_part_reports_status_zero(
    telegram, http, webhook_receiver
):
    telegram.set_webhook(f"http://127.0.0.1:{webhook_receiver.server_address[1]}/")
    webhook_receiver.cut_short = True

    result = telegram.push(telegram.user().text("hi"))

    # Telegram counts half an answer as none and delivers the update again.
    assert result.status == 0
    info = http.get(api(telegram, "getWebhookInfo")).json()["result"]
    assert info["last_error_message"].startswith("Connection failed")


def test_invalid_secret_token_is_rejected(telegram, http):
    response = http.post(
        api(telegram, "setWebhook"),
        json={"url": "http://x/", "secret_token": "no spaces"},
    )

    assert response.status_code == 400


# Update builders


def test_text_update_marks_a_leading_command(telegram):
    ada = telegram.user(first_name="Ada", last_name="Lovelace", username="ada")

    command = ada.text("/start ref42")
    plain = ada.text("hello")

    message = command["message"]
    assert message["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    assert message["from"] == {
        "id": ada.id,
        "is_bot": False,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "username": "ada",
        "language_code": "en",
    }
    assert message["chat"]["type"] == "private"
    assert message["chat"]["id"] == ada.id
    assert "entities" not in plain["message"]
    assert plain["update_id"] == command["update_id"] + 1
    assert plain["message"]["message_id"] == message["message_id"] + 1


def test_media_updates_have_bot_api_shapes(telegram):
    ada = telegram.user()

    photo = ada.photo(caption="screenshot")["message"]
    document = ada.document()["message"]["document"]
    sticker = ada.sticker()["message"]["sticker"]
    voice = ada.voice()["message"]["voice"]
    location = ada.location(1.5, 2.5)["message"]["location"]
    contact = ada.contact("+100", "Bob")["message"]["contact"]

    sizes = photo["photo"]
    assert 2 <= len(sizes) <= 3
    assert [s["file_size"] for s in sizes] == sorted(s["file_size"] for s in sizes)
    assert {"file_id", "file_unique_id", "width", "height"} <= sizes[0].keys()
    assert photo["caption"] == "screenshot"
    assert document["file_name"] == "report.pdf"
    assert document["mime_type"] == "application/pdf"
    assert sticker["type"] == "regular"
    assert sticker["emoji"] == "👍"
    assert sticker["is_animated"] is False
    assert voice["mime_type"] == "audio/ogg"
    assert location == {"latitude": 1.5, "longitude": 2.5}
    assert contact == {"phone_number": "+100", "first_name": "Bob"}


def test_user_media_file_ids_are_known_to_get_file(telegram, http):
    document = telegram.user().document()["message"]["document"]

    info = http.get(api(telegram, "getFile"), params={"file_id": document["file_id"]})

    assert info.json()["result"]["file_size"] == document["file_size"]


def test_edit_update_keeps_message_id_and_adds_edit_date(telegram):
    ada = telegram.user()
    original = ada.text("helo")

    edited = ada.edit(original, "hello")["edited_message"]

    assert edited["message_id"] == original["message"]["message_id"]
    assert edited["text"] == "hello"
    assert edited["edit_date"] >= edited["date"]


def test_block_updates_flip_member_status_and_block_sends(telegram, http):
    ada = telegram.user()

    blocked = ada.blocks_bot()
    telegram.push(blocked)
    refused = send(http, telegram, chat_id=ada.id)
    unblocked = ada.unblocks_bot()
    telegram.push(unblocked)
    accepted = send(http, telegram, chat_id=ada.id)

    member = blocked["my_chat_member"]
    assert member["old_chat_member"]["status"] == "member"
    assert member["new_chat_member"]["status"] == "kicked"
    assert member["new_chat_member"]["user"]["is_bot"] is True
    assert member["from"]["id"] == ada.id
    assert unblocked["my_chat_member"]["new_chat_member"]["status"] == "member"
    assert refused.status_code == 403
    assert accepted.status_code == 200


def test_group_updates(telegram):
    ada = telegram.user()
    team = telegram.group(title="Support team", supergroup=True)

    joined = telegram.group_added(team, by=ada)["my_chat_member"]
    message = ada.text_in(team, "/help@supportbot_test_bot now")["message"]

    assert joined["chat"] == {
        "id": team.id,
        "title": "Support team",
        "type": "supergroup",
    }
    assert joined["old_chat_member"]["status"] == "left"
    assert joined["new_chat_member"]["status"] == "member"
    assert message["chat"]["type"] == "supergroup"
    assert message["entities"][0]["length"] == len("/help@supportbot_test_bot")
    assert team.id < 0


def test_callback_update_points_at_the_bot_message(telegram, http):
    ada = telegram.user()
    sent = send(http, telegram, chat_id=ada.id, reply_markup=INLINE_MARKUP).json()

    query = ada.callback("yes")["callback_query"]

    assert query["data"] == "yes"
    assert query["message"]["message_id"] == sent["result"]["message_id"]
    assert query["from"]["id"] == ada.id


# Reset and terminal


def test_reset_clears_everything(telegram, http):
    ada = telegram.user()
    telegram.add_file("f", b"x")
    send(http, telegram)
    telegram.fail(times=None)
    telegram.delay(1)
    telegram.drop_connection(times=None)
    telegram.block(42)
    telegram.push(ada.text("queued"))
    telegram.set_webhook("http://127.0.0.1:9/")
    last_update_id = telegram.next_update_id()

    telegram.reset()

    assert telegram.calls == []
    assert telegram.sent_messages() == []
    started = time.monotonic()
    assert send(http, telegram, chat_id=42).status_code == 200
    assert time.monotonic() - started < 0.5
    updates = http.get(api(telegram, "getUpdates")).json()
    assert updates == {"ok": True, "result": []}
    # Registered files are meant to survive, so session fixtures can add them once.
    assert http.get(api(telegram, "getFile"), params={"file_id": "f"}).ok
    assert telegram.next_update_id() > last_update_id
    assert telegram.token == "123456:TEST-TOKEN"


def test_terminal_chat_sends_lines_and_prints_bot_messages(telegram, http):
    output = io.StringIO()
    chat = _TerminalChat(telegram, output)
    telegram.add_listener(chat.show)

    chat.run(["hello bot\n", ":photo cat\n", ":quit\n", "never sent\n"])
    send(
        http,
        telegram,
        text="Hi there",
        chat_id=chat.user.id,
        reply_markup=INLINE_MARKUP,
    )
    telegram.wait_for("sendMessage", where=lambda call: call.status is not None)

    updates = http.get(api(telegram, "getUpdates")).json()["result"]
    assert [u["message"].get("text") for u in updates] == ["hello bot", None]
    assert updates[1]["message"]["caption"] == "cat"
    deadline = time.monotonic() + 2
    while "bot: Hi there" not in output.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "bot: Hi there" in output.getvalue()
    assert "[Yes]" in output.getvalue()


def test_stop_ends_a_pending_long_poll_quickly(http):
    telegram = FakeTelegram().start()
    url = api(telegram, "getUpdates")
    outcome = []

    def poll():
        try:
            outcome.append(http.get(url, params={"timeout": 30}, timeout=5).status_code)
        except requests.RequestException as error:
            outcome.append(type(error).__name__)

    poller = threading.Thread(target=poll)
    poller.start()
    telegram.wait_for("getUpdates")
    started = time.monotonic()
    telegram.stop()
    poller.join(timeout=5)

    assert time.monotonic() - started < 2
    assert outcome
