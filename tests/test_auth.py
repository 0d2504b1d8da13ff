"""Staff accounts: signing in and out, passwords, limits and the CLI."""

import pytest

from supportbot.extensions import db
from supportbot.models import Staff

from helpers import PASSWORD, csrf_token_of, log_in


def test_login_with_right_password_opens_the_queue(app, client, make_staff):
    make_staff("Alice")

    response = log_in(client, "Alice@Example.com")

    assert response.status_code == 302
    assert response.headers["Location"] == "/console/"
    assert "Queue" in client.get("/console/").get_data(as_text=True)


def test_login_with_wrong_password_is_refused(app, client, make_staff, caplog):
    make_staff("Alice")

    response = log_in(client, "alice@example.com", "wrong password!")

    assert response.status_code == 200
    assert "Wrong e-mail or password" in response.get_data(as_text=True)
    assert client.get("/console/").status_code == 302
    assert "failed sign-in for 'alice@example.com'" in caplog.text


def test_deactivated_account_cannot_sign_in(app, client, make_staff):
    staff_id = make_staff("Alice")
    with app.app_context():
        db.session.get(Staff, staff_id).is_active = False
        db.session.commit()

    log_in(client, "alice@example.com")

    assert client.get("/console/").status_code == 302


def test_login_form_without_csrf_token_is_refused(app, client, make_staff):
    make_staff("Alice")

    response = client.post(
        "/login", data={"email": "alice@example.com", "password": PASSWORD}
    )

    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_login_is_limited_per_account(make_app, app, make_staff):
    make_staff("Alice")
    limited = make_app(LOGIN_RATE_LIMIT_PER_ACCOUNT="3/minute")

    statuses = []
    for _ in range(4):
        client = limited.test_client()
        statuses.append(
            log_in(client, "alice@example.com", "wrong password!").status_code
        )

    assert statuses == [200, 200, 200, 429]
    # The right password is refused too while the limit lasts.
    assert log_in(limited.test_client(), "alice@example.com").status_code == 429


def test_login_is_limited_per_address(make_app, app, make_staff):
    limited = make_app(LOGIN_RATE_LIMIT_PER_IP="2/minute")
    client = limited.test_client()

    statuses = [
        log_in(client, f"nobody{n}@example.com", "wrong password!").status_code
        for n in range(3)
    ]

    assert statuses == [200, 200, 429]


@pytest.mark.parametrize("proxies, separate", [(0, False), (1, True)])
def test_behind_a_trusted_proxy_each_client_has_its_own_limit(
    make_app, app, proxies, separate
):
    limited = make_app(LOGIN_RATE_LIMIT_PER_IP="2/minute", TRUSTED_PROXIES=proxies)

    def attempt(address):
        client = limited.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = address
        return log_in(client, "nobody@example.com", "wrong password!").status_code

    first, second = attempt("203.0.113.5"), attempt("203.0.113.5")
    other = attempt("198.51.100.7")

    assert [first, second] == [200, 200]
    # Without a trusted proxy the header is anyone's to forge, and ignored.
    assert other == (200 if separate else 429)


def test_next_parameter_never_leaves_the_site(app, client, make_staff):
    make_staff("Alice")
    token = csrf_token_of(client, "/login")

    response = client.post(
        "/login?next=//evil.example.com/",
        data={"email": "alice@example.com", "password": PASSWORD, "csrf_token": token},
    )

    assert response.headers["Location"] == "/console/"


def test_session_cookie_is_httponly_and_samesite(app, client, make_staff):
    make_staff("Alice")

    response = log_in(client, "alice@example.com")

    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_logout_ends_the_session(agent_client):
    token = csrf_token_of(agent_client)

    agent_client.post("/logout", data={"csrf_token": token})

    assert agent_client.get("/console/").status_code == 302


def test_change_password_ends_other_sessions(app, make_staff):
    make_staff("Alice")
    mine, other = app.test_client(), app.test_client()
    log_in(mine, "alice@example.com")
    log_in(other, "alice@example.com")
    token = csrf_token_of(mine)

    response = mine.post(
        "/account/password",
        data={
            "current": PASSWORD,
            "new": "a much better password",
            "repeat": "a much better password",
            "csrf_token": token,
        },
    )

    assert response.status_code == 302
    assert mine.get("/console/").status_code == 200
    assert other.get("/console/").status_code == 302
    fresh = app.test_client()
    assert (
        log_in(fresh, "alice@example.com", "a much better password").status_code == 302
    )


@pytest.mark.parametrize(
    ("current", "new", "message"),
    [
        ("wrong password!", "a much better password", "current password is not right"),
        (PASSWORD, "short", "at least 10"),
    ],
)
def test_change_password_refusals(agent_client, current, new, message):
    token = csrf_token_of(agent_client)

    response = agent_client.post(
        "/account/password",
        data={"current": current, "new": new, "repeat": new, "csrf_token": token},
    )

    assert response.status_code == 200
    assert message in response.get_data(as_text=True)


def test_cli_creates_admin_with_given_password(app, runner):
    result = runner.invoke(
        args=[
            "staff",
            "create",
            "boss@example.com",
            "--name",
            "Boss",
            "--role",
            "admin",
            "--password",
            "long enough pw",
        ]
    )

    assert result.exit_code == 0, result.output
    assert "Created admin Boss" in result.output
    client = app.test_client()
    assert log_in(client, "boss@example.com", "long enough pw").status_code == 302


def test_cli_generates_and_prints_a_password(app, runner):
    result = runner.invoke(
        args=["staff", "create", "new@example.com", "--name", "New"], input="\n"
    )

    assert result.exit_code == 0, result.output
    password = result.output.split("shown only now: ")[1].strip()
    assert log_in(app.test_client(), "new@example.com", password).status_code == 302


def test_cli_refuses_duplicate_email(app, runner, make_staff):
    make_staff("Alice")

    result = runner.invoke(
        args=[
            "staff",
            "create",
            "ALICE@example.com",
            "--name",
            "A",
            "--password",
            "x" * 12,
        ]
    )

    assert result.exit_code != 0
    assert "already an account" in result.output


def test_check_says_how_to_create_the_first_admin(app, runner, make_staff):
    empty = runner.invoke(args=["staff", "check"])
    make_staff("Alice")
    filled = runner.invoke(args=["staff", "check"])

    assert "staff create" in empty.output
    assert filled.output == ""
