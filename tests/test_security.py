"""Security across every area: generated input, CSRF, sessions, headers and sizes."""

import io
import time

import pytest
from flask import url_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from supportbot.extensions import db
from supportbot.miniapp.initdata import sign_user
from supportbot.models import Message, Staff, Ticket, TicketPriority, TicketStatus
from supportbot.routing import MAX_ID

from helpers import PASSWORD, csrf_token_in, csrf_token_of, log_in

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_SECRET = "test-webhook-secret"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# What an HTTP header can carry, and text of any kind for bodies and queries.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
any_text = st.text(st.characters(codec="utf-8"), max_size=30)
numbers = st.integers(min_value=-(2**70), max_value=2**70)
scalars = st.none() | st.booleans() | numbers | st.floats() | any_text
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
query_strings = st.dictionaries(
    st.sampled_from(["after", "days", "page", "q", "status", "before"]) | any_text,
    numbers.map(str) | any_text,
    max_size=3,
)


def holds_nul(query: dict) -> bool:
    """Tell whether a query string carries a NUL character, which is refused."""
    return any("\x00" in key + value for key, value in query.items())


content_types = (
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=latin-1",
            "multipart/form-data",
            "multipart/form-data; boundary=nothing",
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
        ]
    )
    | header_text
)
accepts = st.sampled_from(["application/json", "text/html", "*/*"]) | header_text


def form_bodies(names, values):
    """Generate request bodies: JSON, form fields, files, or bytes of any type."""
    fields = st.dictionaries(st.sampled_from(names) | any_text, values, max_size=4)
    uploads = st.lists(
        st.tuples(st.binary(max_size=64), any_text), min_size=1, max_size=6
    )
    return st.one_of(
        json_values.map(lambda value: {"json": value}),
        fields.map(lambda form: {"data": form}),
        st.tuples(fields, uploads).map(
            lambda parts: {
                "data": {
                    **parts[0],
                    "files": [(io.BytesIO(data), name) for data, name in parts[1]],
                },
                "content_type": "multipart/form-data",
            }
        ),
        st.tuples(st.binary(max_size=200), content_types).map(
            lambda parts: {"data": parts[0], "content_type": parts[1]}
        ),
    )


def row_counts(app) -> dict[str, int]:
    """Count the rows of every table."""
    with app.app_context():
        return {
            table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
        }


def assert_json_error(response):
    """Check that a refusal is JSON a program can read, with a message."""
    assert response.is_json, response.get_data(as_text=True)[:200]
    assert response.json["ok"] is False
    assert isinstance(response.json["error"], str) and response.json["error"]


@pytest.fixture
def customer(app, send_update, telegram):
    """Open a ticket for one customer and return the customer and the ticket id."""
    user = telegram.user()
    send_update(user.text("Hello, my parcel is lost"))
    with app.app_context():
        ticket_id = db.session.scalars(select(Ticket.id)).one()
    return user, ticket_id


@pytest.fixture
def other_ticket(app, send_update, telegram, customer):
    """Open a ticket for a second customer and return its id."""
    send_update(telegram.user().text("Mine is lost too"))
    with app.app_context():
        return db.session.scalar(select(func.max(Ticket.id)))


@pytest.fixture
def initdata(app):
    """Make an ``Authorization`` value for a user, signed as Telegram signs it."""

    def make(user, auth_date=None, token=None):
        token = token or app.config["TELEGRAM_BOT_TOKEN"]
        return "tma " + sign_user(token, user.as_dict(), auth_date)

    return make


# Generated input: no endpoint answers a server error, and refusals are clear.

MINIAPP_CALLS = [
    ("GET", "/app/api/tickets"),
    ("POST", "/app/api/tickets"),
    ("GET", "/app/api/tickets/{id}"),
    ("GET", "/app/api/tickets/{id}/messages"),
    ("POST", "/app/api/tickets/{id}/messages"),
    ("POST", "/app/api/tickets/{id}/seen"),
]
MINIAPP_FIELDS = ["subject", "description", "category", "text", "message_id"]


@FUZZ
@given(
    call=st.sampled_from(MINIAPP_CALLS),
    ticket=st.sampled_from(["own", "other"]) | st.integers(0, 2**40),
    caller=st.sampled_from(["customer", "stranger", "expired", "forged", "none"])
    | header_text.map(lambda text: "tma " + text)
    | header_text,
    query=query_strings,
    body=form_bodies(MINIAPP_FIELDS, any_text | numbers.map(str)),
    accept=accepts,
)
def test_the_mini_app_api_never_answers_a_server_error(
    app,
    client,
    telegram,
    customer,
    other_ticket,
    initdata,
    call,
    ticket,
    caller,
    query,
    body,
    accept,
):
    user, ticket_id = customer
    method, path = call
    ids = {"own": ticket_id, "other": other_ticket}
    authorization = {
        "customer": initdata(user),
        "stranger": initdata(telegram.user()),
        "expired": initdata(user, auth_date=int(time.time()) - 10 * 86400),
        "forged": initdata(user, token="123:not-this-bot"),
        "none": None,
    }.get(caller, caller)
    headers = {"Accept": accept}
    if authorization is not None:
        headers["Authorization"] = authorization
    if method == "GET":
        body = {}

    response = client.open(
        path.format(id=ids.get(ticket, ticket)),
        method=method,
        query_string=query,
        headers=headers,
        **body,
    )

    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert_json_error(response)
    routed = "{id}" not in path or ids.get(ticket, ticket) <= MAX_ID
    if holds_nul(query):
        assert response.status_code == 400
    elif caller not in ("customer", "stranger") and routed:
        assert response.status_code == 401
    elif caller == "customer" and "{id}" in path and ticket == "other":
        assert response.status_code == 404
    with app.app_context():
        db.session.remove()


CONSOLE_CALLS = [
    ("POST", "/console/tickets/{id}/read"),
    ("POST", "/console/tickets/{id}/messages"),
    ("POST", "/console/tickets/{id}/assign"),
    ("POST", "/console/tickets/{id}/status"),
    ("POST", "/console/tickets/{id}/priority"),
    ("POST", "/console/deliveries/{id}/resend"),
    ("GET", "/console/unread"),
    ("GET", "/admin/dashboard/data"),
]
CONSOLE_VALUES = (
    st.sampled_from(
        ["me", "", "1", "2", "note", "on"]
        + [status.value for status in TicketStatus]
        + [priority.value for priority in TicketPriority]
    )
    | numbers.map(str)
    | any_text
)


@FUZZ
@given(
    call=st.sampled_from(CONSOLE_CALLS),
    record=st.sampled_from([1, 2]) | st.integers(0, 2**40),
    query=query_strings,
    body=form_bodies(
        ["text", "note", "assignee", "status", "ask_rating", "priority", "file"],
        CONSOLE_VALUES,
    ),
    accept=accepts,
    token_in_header=st.booleans(),
)
def test_console_endpoints_that_answer_json_never_answer_a_server_error(
    app, admin_client, customer, call, record, query, body, accept, token_in_header
):
    method, path = call
    token = csrf_token_of(admin_client)
    headers = {"Accept": accept}
    if token_in_header:
        # As the console's script sends it.
        headers["X-CSRFToken"] = token
    elif isinstance(body.get("data"), dict):
        body["data"]["csrf_token"] = token
    if method == "GET":
        body = {}

    response = admin_client.open(
        path.format(id=record),
        method=method,
        query_string=query,
        headers=headers,
        **body,
    )

    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400 and accept == "application/json":
        assert_json_error(response)
    with app.app_context():
        db.session.remove()


@FUZZ
@given(
    secret=st.just(WEBHOOK_SECRET) | header_text | st.none(),
    content_type=content_types,
    query=query_strings,
    body=st.just(b'{"update_id": 1}') | st.binary(max_size=100),
    accept=accepts,
)
def test_the_webhook_answers_any_headers_with_json_and_no_server_error(
    app, client, secret, content_type, query, body, accept
):
    headers = {"Accept": accept}
    if secret is not None:
        headers[SECRET_HEADER] = secret

    response = client.post(
        "/telegram/webhook",
        data=body,
        content_type=content_type,
        query_string=query,
        headers=headers,
    )

    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    if holds_nul(query):
        assert response.status_code == 400
    elif secret != WEBHOOK_SECRET:
        assert response.status_code == 403
    with app.app_context():
        db.session.remove()


@pytest.fixture
def metrics_client(make_app, app):
    """Give a client of an app whose metrics a scraper reads with a token."""
    return make_app(METRICS_TOKEN="metrics-token").test_client()


@FUZZ
@given(
    path=st.sampled_from(["/healthz", "/readyz", "/metrics"]),
    authorization=st.just("Bearer metrics-token") | header_text,
    query=query_strings,
)
def test_health_and_metrics_answer_any_caller_without_a_server_error(
    metrics_client, path, authorization, query
):
    response = metrics_client.get(
        path, query_string=query, headers={"Authorization": authorization}
    )

    # Before migrations ran, /readyz answers 503 on purpose.
    assert response.status_code < 500 or (
        path == "/readyz" and response.status_code == 503
    )
    if holds_nul(query):
        assert response.status_code == 400
    elif path == "/metrics":
        expected = 200 if authorization == "Bearer metrics-token" else 401
        assert response.status_code == expected


@FUZZ
@given(
    path=st.sampled_from(
        [
            "/console/",
            "/console/tickets/{id}",
            "/console/tickets/{id}/row",
            "/console/tickets/{id}/summary",
            "/console/tickets/{id}/timeline",
            "/admin/logs",
            "/admin/audit",
            "/admin/deliveries",
            "/login",
        ]
    ),
    query=st.dictionaries(
        st.sampled_from(
            [
                "status",
                "assignee",
                "priority",
                "q",
                "page",
                "level",
                "logger",
                "since",
                "until",
                "ticket",
                "error",
                "before",
                "staff",
                "next",
            ]
        ),
        any_text | numbers.map(str),
        max_size=4,
    ),
    accept=accepts,
)
def test_console_and_admin_pages_take_any_query_string(
    app, admin_client, customer, path, query, accept
):
    _, ticket_id = customer

    response = admin_client.get(
        path.format(id=ticket_id), query_string=query, headers={"Accept": accept}
    )

    assert response.status_code < 500, response.get_data(as_text=True)
    with app.app_context():
        db.session.remove()


# CSRF: no state-changing console or admin form works without the page's token.

STATE_CHANGING = [
    "/console/tickets/1/read",
    "/console/tickets/1/messages",
    "/console/tickets/1/assign",
    "/console/tickets/1/status",
    "/console/tickets/1/priority",
    "/console/deliveries/1/resend",
    "/admin/updates/1/handle-again",
    "/admin/staff",
    "/admin/staff/2",
    "/admin/canned",
    "/admin/canned/1/delete",
    "/admin/categories",
    "/admin/categories/1/move",
    "/admin/categories/1/delete",
    "/account/password",
    "/logout",
    "/login",
]
# Each form filled in as it would be, so that only the token is missing.
FORM_FIELDS = {
    "text": "Sent without a token",
    "assignee": "me",
    "status": "closed",
    "priority": "high",
    "email": "eve@example.com",
    "name": "Eve",
    "role": "admin",
    "password": "correct horse battery",
    "title": "Forged",
    "body": "Forged reply",
    "direction": "up",
    "current": "correct horse battery",
    "new": "another long password",
    "repeat": "another long password",
}


def test_every_state_changing_form_is_listed(app):
    # The webhook and the Mini App API authenticate by a header, not a cookie.
    exempt = ("/telegram/", "/app/")
    listed = {path.split("/1")[0].split("/2")[0] for path in STATE_CHANGING}
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and not rule.rule.startswith(exempt):
            assert rule.rule.split("/<")[0] in listed, f"{rule.rule} is not listed"


@pytest.fixture
def one_of_everything(app, admin_client, make_staff, customer):
    """Create a reply, a colleague, a canned reply and a category for forms to hit."""
    make_staff("Bob")
    token = csrf_token_of(admin_client)
    _, ticket_id = customer
    for path, data in [
        (f"/console/tickets/{ticket_id}/messages", {"text": "On it"}),
        ("/admin/canned", {"title": "Hi", "body": "Hello!"}),
        ("/admin/categories", {"name": "Billing"}),
    ]:
        response = admin_client.post(path, data={**data, "csrf_token": token})
        assert response.status_code in (200, 302), response.get_data(as_text=True)


@pytest.mark.parametrize("path", STATE_CHANGING)
def test_forms_without_the_pages_token_change_nothing(
    app, admin_client, one_of_everything, path
):
    before = row_counts(app), credentials(app)

    missing = admin_client.post(path, data=FORM_FIELDS)
    forged = admin_client.post(
        path,
        data={**FORM_FIELDS, "csrf_token": "forged-token"},
        headers={"Accept": "application/json"},
    )

    assert missing.status_code == 400
    assert "The CSRF token is missing." in missing.get_data(as_text=True)
    assert forged.status_code == 400
    assert forged.json == {"ok": False, "error": "The CSRF token is invalid."}
    assert (row_counts(app), credentials(app)) == before
    assert admin_client.get("/console/").status_code == 200


def credentials(app) -> list[tuple]:
    """Return every account's password hash, session token and state."""
    with app.app_context():
        return [
            (staff.password_hash, staff.session_token, staff.role, staff.is_active)
            for staff in db.session.scalars(select(Staff).order_by(Staff.id))
        ]


def test_a_form_part_without_a_name_is_refused_like_any_form_without_a_token(
    client,
):
    # A line break in the field name leaves the part with no name at all.
    response = client.post(
        "/login", data={"\r": "x"}, content_type="multipart/form-data"
    )

    assert response.status_code == 400
    assert "The CSRF token is missing." in response.get_data(as_text=True)


def test_a_token_from_another_browser_does_not_sign_in(app, client, make_staff):
    make_staff("Alice")
    token = csrf_token_of(app.test_client(), "/login")

    response = client.post(
        "/login",
        data={
            "email": "alice@example.com",
            "password": PASSWORD,
            "csrf_token": token,
        },
    )

    assert response.status_code == 400
    assert client.get("/console/").status_code == 302


# NUL characters: PostgreSQL text cannot hold them, and no field means one.


def test_a_nul_in_an_update_is_dropped_and_the_rest_stored(app, send_update, telegram):
    response = send_update(telegram.user().text("my order\u0000 is late"))

    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalars(select(Message.text)).all() == ["my order is late"]


def test_a_nul_in_a_form_is_dropped_and_the_rest_stored(app, agent_client, customer):
    _, ticket_id = customer

    response = agent_client.post(
        f"/console/tickets/{ticket_id}/messages",
        data={
            "csrf_token": csrf_token_of(agent_client),
            "text": "on\x00 its way",
            "note": "1",
        },
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 200
    with app.app_context():
        note = db.session.get(Message, response.json["message_id"])
        assert note.text == "on its way"


def test_a_nul_in_the_query_is_refused_with_a_reason(agent_client):
    response = agent_client.get(
        "/console/", query_string={"q": "\x00"}, headers={"Accept": "application/json"}
    )

    assert response.status_code == 400
    assert "NUL character" in response.json["error"]


# Sessions.


def login_token(client, base_url) -> str:
    """Open the sign-in page at ``base_url`` and read its CSRF token."""
    return csrf_token_in(client.get("/login", base_url=base_url).get_data(as_text=True))


@pytest.mark.parametrize(
    ("environment", "secure"), [("production", True), ("development", False)]
)
def test_the_session_cookie_is_secure_in_production(
    make_app, app, make_staff, monkeypatch, environment, secure
):
    monkeypatch.setenv("SUPPORTBOT_ENV", environment)
    monkeypatch.setenv("SECRET_KEY", "a-production-secret-key")
    make_staff("Alice")
    client = make_app().test_client()
    https = "https://support.example.com"
    token = login_token(client, https)

    response = client.post(
        "/login",
        base_url=https,
        # Over https the token must come from one of the site's own pages.
        headers={"Referer": f"{https}/login"},
        data={"email": "alice@example.com", "password": PASSWORD, "csrf_token": token},
    )

    assert response.status_code == 302
    [cookie] = response.headers.getlist("Set-Cookie")
    flags = [flag.strip() for flag in cookie.split(";")]
    assert cookie.startswith("session=")
    assert "HttpOnly" in flags
    assert "SameSite=Lax" in flags
    assert ("Secure" in flags) is secure
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_over_https_a_form_from_another_site_is_refused(make_app, app, make_staff):
    make_staff("Alice")
    client = make_app().test_client()
    https = "https://support.example.com"
    token = login_token(client, https)

    response = client.post(
        "/login",
        base_url=https,
        headers={"Referer": "https://evil.example.net/login"},
        data={"email": "alice@example.com", "password": PASSWORD, "csrf_token": token},
    )

    assert response.status_code == 400
    assert "The referrer does not match the host." in response.get_data(as_text=True)


def test_a_signed_out_browser_cannot_open_the_socket(agent_client, staff_socket):
    token = csrf_token_of(agent_client)
    assert staff_socket(agent_client, token=token).is_connected("/staff")

    agent_client.post("/logout", data={"csrf_token": token})

    assert not staff_socket(agent_client, token=token).is_connected("/staff")


# Response headers: each area's pages say who may frame them and what they run.


def _get_paths(app):
    """Yield an address for every route that answers GET."""
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        values = {name: 1 for name in rule.arguments}
        if rule.endpoint == "static":
            values = {"filename": "console.js"}
        elif rule.endpoint == "miniapp.attachment":
            values = {"token": "not-a-link"}
        with app.test_request_context():
            yield url_for(rule.endpoint, **values)


def test_every_page_carries_the_headers_of_its_area(app, admin_client, customer):
    paths = sorted(set(_get_paths(app))) + ["/no/such/page", "/app/no/such/page"]
    miniapp_pages = {"/app", "/app/new", "/app/tickets/1"}

    for path in paths:
        response = admin_client.get(path)
        headers = response.headers
        policy = headers.get("Content-Security-Policy", "")

        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy, path
        if path in miniapp_pages:
            assert "frame-ancestors https://web.telegram.org" in policy, path
            assert "X-Frame-Options" not in headers, path
        else:
            assert "frame-ancestors 'none'" in policy, path
            assert headers["X-Frame-Options"] == "DENY", path


# Request sizes: each area refuses bodies over its limit, with a message.


def test_an_update_over_the_limit_gets_413_json(make_app, app, telegram):
    served = make_app(TELEGRAM_MAX_UPDATE_BYTES=1024)
    update = telegram.user().text("x" * 2048)

    response = served.test_client().post(
        "/telegram/webhook", json=update, headers={SECRET_HEADER: WEBHOOK_SECRET}
    )

    assert response.status_code == 413
    assert_json_error(response)
    assert "more than 1 KB, the most" in response.json["error"]
    assert row_counts(app)["telegram_update"] == 0


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_a_console_body_over_the_limit_gets_413(
    make_app, app, make_staff, customer, accept
):
    served = make_app(MAX_CONTENT_LENGTH=4096)
    make_staff("Alice")
    client = served.test_client()
    log_in(client, "alice@example.com")
    _, ticket_id = customer

    response = client.post(
        f"/console/tickets/{ticket_id}/messages",
        data={
            "csrf_token": csrf_token_of(client),
            "text": "see attached",
            "file": (io.BytesIO(b"x" * 8192), "big.bin"),
        },
        headers={"Accept": accept},
    )

    assert response.status_code == 413
    limit = "That is more than 4 KB, the most that can be sent at once."
    if accept == "application/json":
        assert response.json == {"ok": False, "error": limit}
    else:
        assert limit in response.get_data(as_text=True)
    assert row_counts(app)["message"] == 1


def test_a_mini_app_message_over_the_upload_limit_gets_413_json(
    make_app, app, customer, initdata
):
    served = make_app(MINIAPP_UPLOAD_MAX_BYTES=1024)
    user, ticket_id = customer

    response = served.test_client().post(
        f"/app/api/tickets/{ticket_id}/messages",
        data={"text": "photo", "files": [(io.BytesIO(b"x" * 2048), "big.png")]},
        headers={"Authorization": initdata(user)},
        content_type="multipart/form-data",
    )

    assert response.status_code == 413
    assert_json_error(response)
    assert "“big.png” is larger than 1 KB" in response.json["error"]
    assert row_counts(app)["message"] == 1


def test_mini_app_uploads_may_exceed_the_console_limit(
    make_app, app, customer, initdata
):
    served = make_app(MAX_CONTENT_LENGTH=1024, MINIAPP_UPLOAD_MAX_BYTES=16384)
    user, ticket_id = customer

    response = served.test_client().post(
        f"/app/api/tickets/{ticket_id}/messages",
        data={"files": [(io.BytesIO(b"x" * 8192), "log.txt")]},
        headers={"Authorization": initdata(user)},
        content_type="multipart/form-data",
    )

    assert response.status_code == 201, response.get_data(as_text=True)
    assert row_counts(app)["message"] == 2
