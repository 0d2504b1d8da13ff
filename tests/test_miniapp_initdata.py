"""The Mini App's initData check: what it accepts, refuses, and a peer's view."""

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram_webapp_auth.auth import TelegramAuthenticator, generate_secret_key
from telegram_webapp_auth.errors import InvalidInitDataError

from supportbot.miniapp import initdata
from supportbot.miniapp.initdata import InitDataError, sign, sign_user, validate

TOKEN = "123456:TEST-token_for-signing"
DAY = 86400
USER = {"id": 4242, "first_name": "Carol", "username": "carol", "language_code": "en"}


def signed(**overrides) -> str:
    fields = {
        "user": json.dumps(USER),
        "auth_date": str(int(time.time())),
        "query_id": "AAH",
    }
    fields.update(overrides)
    return sign(fields, TOKEN)


def refused(raw, token=TOKEN, max_age=DAY) -> str:
    with pytest.raises(InitDataError) as caught:
        validate(raw, token, max_age)
    return caught.value.message


def test_data_from_the_test_signer_is_accepted():
    checked = validate(signed(), TOKEN, DAY)

    assert checked.profile.id == 4242
    assert checked.profile.first_name == "Carol"
    assert checked.profile.username == "carol"
    assert checked.fields["query_id"] == "AAH"


def test_a_tampered_field_is_refused():
    fields = dict(parse_qsl(signed()))
    fields["user"] = json.dumps({**USER, "id": 1})

    assert "does not match" in refused(urlencode(fields))


def test_data_signed_for_another_bot_is_refused():
    other = sign_user("654321:ANOTHER-bot", USER)

    assert "does not match" in refused(other)


def test_missing_or_malformed_hash_is_refused():
    fields = dict(parse_qsl(signed()))
    hash_ = fields.pop("hash")

    assert "no valid signature" in refused(urlencode(fields))
    assert "no valid signature" in refused(urlencode({**fields, "hash": hash_[:-2]}))
    upper = urlencode({**fields, "hash": hash_.upper()})
    assert refused(upper)


def test_old_data_is_refused_unless_the_age_check_is_off():
    old = signed(auth_date=str(int(time.time()) - DAY - 60))

    assert "expired" in refused(old)
    assert validate(old, TOKEN, max_age=0).profile.id == 4242


def test_data_dated_far_in_the_future_is_refused():
    assert "future" in refused(signed(auth_date=str(int(time.time()) + 3600)))


def test_repeated_keys_are_refused_even_when_one_copy_is_signed():
    # The signed copy first, a forged one after: a lenient parser keeps the last.
    forged = signed() + "&user=" + json.dumps({**USER, "id": 1})

    assert "repeats" in refused(forged)


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "",
        "   ",
        "hash",
        "&&&",
        "user=%ZZ&hash=00",
        "user=%ff%fe&auth_date=1&hash=" + "0" * 64,
        "=value&auth_date=1&hash=" + "0" * 64,
        "x" * 20000,
        12345,
    ],
)
def test_garbage_is_refused(garbage):
    assert refused(garbage)


def test_signed_data_without_a_usable_user_is_refused():
    for user in ["", "not json", "[1, 2]", '{"first_name": "x"}', '{"id": "42"}']:
        assert "no user" in refused(signed(user=user))


def test_nothing_is_accepted_without_a_bot_token():
    assert "not configured" in refused(signed(), token="")


def test_a_date_that_is_not_a_number_is_refused():
    for auth_date in ["", "yesterday", "-5", "1e9", "١٢٣"]:
        assert "date" in refused(signed(auth_date=auth_date))


# The peer implementation is a test oracle only: both must judge alike.
KEYS = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).map(
    lambda key: "x_" + key
)
VALUES = st.text(max_size=40)
TOKENS = st.from_regex(r"\A[0-9]{1,10}:[A-Za-z0-9_-]{10,40}\Z")
USERS = st.fixed_dictionaries(
    {"id": st.integers(1, 2**52), "first_name": st.text(max_size=20)},
    optional={
        "last_name": st.text(max_size=20),
        "username": st.text(max_size=20),
        "language_code": st.sampled_from(["en", "de", "pt-br"]),
        "is_premium": st.booleans(),
    },
)
TAMPERING = st.sampled_from(
    ["none", "value", "token", "drop_hash", "repeat", "drop_field", "hash_case"]
)


def peer_accepts(raw: str, token: str) -> int | None:
    authenticator = TelegramAuthenticator(generate_secret_key(token))
    try:
        return authenticator.validate(raw).user.id
    except InvalidInitDataError:
        return None


def ours_accepts(raw: str, token: str) -> int | None:
    try:
        return validate(raw, token, max_age=0).profile.id
    except InitDataError:
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=TOKENS,
    user=USERS,
    auth_date=st.integers(1, 2**33),
    extra=st.dictionaries(KEYS, VALUES, max_size=4),
    tampering=TAMPERING,
    data=st.data(),
)
def test_validator_agrees_with_a_peer_implementation(
    token, user, auth_date, extra, tampering, data
):
    fields = {
        "user": json.dumps(user, ensure_ascii=data.draw(st.booleans())),
        "auth_date": str(auth_date),
        **extra,
    }
    raw = sign(fields, token)
    pairs = parse_qsl(raw, keep_blank_values=True)

    if tampering == "value":
        key = data.draw(st.sampled_from(sorted(fields)))
        pairs = [(k, v + "1" if k == key else v) for k, v in pairs]
    elif tampering == "token":
        token = token + "x"
    elif tampering == "drop_hash":
        pairs = [(k, v) for k, v in pairs if k != "hash"]
    elif tampering == "repeat":
        pairs.append(data.draw(st.sampled_from(pairs)))
    elif tampering == "drop_field":
        key = data.draw(st.sampled_from(sorted(fields)))
        pairs = [(k, v) for k, v in pairs if k != key]
    elif tampering == "hash_case":
        pairs = [(k, v.upper() if k == "hash" else v) for k, v in pairs]
    raw = urlencode(pairs)

    ours, peers = ours_accepts(raw, token), peer_accepts(raw, token)

    assert ours == peers
    if tampering == "none":
        assert ours == user["id"]


def test_signatures_match_the_documented_construction():
    # Telegram's recipe, written out: HMAC of the sorted "key=value" lines under
    # HMAC("WebAppData", token).
    fields = {"auth_date": "1700000000", "user": '{"id":1}', "query_id": "Q"}
    lines = 'auth_date=1700000000\nquery_id=Q\nuser={"id":1}'

    secret = hmac.new(b"WebAppData", TOKEN.encode(), hashlib.sha256).digest()

    assert initdata.data_check_string(fields) == lines
    assert initdata.signature(fields, TOKEN) == (
        hmac.new(secret, lines.encode(), hashlib.sha256).hexdigest()
    )
