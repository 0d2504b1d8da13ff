"""Health checks and Prometheus metrics."""

from flask_migrate import upgrade

from supportbot.extensions import db


def test_healthz_answers_without_checking_anything(client):
    assert client.get("/healthz").json == {"ok": True}


def test_readyz_waits_for_migrations(app, client):
    before = client.get("/readyz")
    with app.app_context():
        db.drop_all()
        upgrade()
    after = client.get("/readyz")

    assert before.status_code == 503
    assert before.json["checks"]["migrations"]["ok"] is False
    assert after.status_code == 200
    assert after.json["checks"]["database"]["ok"] is True


def test_readyz_fails_when_the_database_is_gone(make_app):
    app = make_app(
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://nobody@127.0.0.1:1/none",
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 1}},
    )

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["checks"]["database"]["ok"] is False


def test_readyz_checks_redis_when_configured(make_app, app):
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0")

    response = down.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["checks"]["redis"]["ok"] is False


def test_metrics_need_the_token_or_an_admin(make_app, app, agent_client):
    with_token = make_app(METRICS_TOKEN="scrape-me").test_client()

    assert with_token.get("/metrics").status_code == 401
    assert (
        with_token.get(
            "/metrics", headers={"Authorization": "Bearer wrong"}
        ).status_code
        == 401
    )
    assert agent_client.get("/metrics").status_code == 401
    ok = with_token.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200
    assert ok.mimetype == "text/plain"


def test_metrics_are_labelled_by_endpoint(admin_client, send_update, telegram):
    send_update(telegram.user().text("hello"))
    update = telegram.user().text("twice")
    send_update(update)
    send_update(update)
    admin_client.get("/console/tickets/424242")

    body = admin_client.get("/metrics").get_data(as_text=True)

    assert 'endpoint="console.ticket"' in body
    assert "/console/tickets/424242" not in body
    assert (
        'supportbot_webhook_updates_total{kind="message",outcome="duplicate"}' in body
    )
    assert "supportbot_outbox_depth" in body
    assert "supportbot_tickets_opened_total" in body


def sample(body: str, name: str) -> float:
    """Read one unlabelled sample from a Prometheus exposition."""
    line = next(line for line in body.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_metrics_count_waiting_and_failed_updates(
    admin_client, client, send_update, telegram, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("handler bug")

    monkeypatch.setattr("supportbot.tickets.add_customer_message", broken)
    send_update(telegram.user().text("fails"))
    client.post(
        "/telegram/webhook",
        json=telegram.user().text("waits"),
        headers={"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"},
    )

    body = admin_client.get("/metrics").get_data(as_text=True)

    assert sample(body, "supportbot_updates_waiting") == 1
    assert sample(body, "supportbot_updates_failed") == 1
    assert sample(body, "supportbot_updates_oldest_age_seconds") >= 0
    assert 'supportbot_updates_handled_total{outcome="failed"}' in body
