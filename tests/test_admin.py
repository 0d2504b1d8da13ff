"""Admins manage staff accounts and canned replies, and watch deliveries and
updates."""

from datetime import timedelta

from sqlalchemy import select, update

from supportbot import outbox
from supportbot.extensions import db
from supportbot.models import (
    CannedReply,
    Message,
    OutboxMessage,
    OutboxStatus,
    Staff,
    StaffRole,
    utcnow,
)

from helpers import PASSWORD, csrf_token_of, log_in


def post(client, path, **data):
    data["csrf_token"] = csrf_token_of(client)
    return client.post(path, data=data)


def test_admin_adds_a_staff_member_who_can_sign_in(app, admin_client):
    response = post(
        admin_client, "/admin/staff", email="new@example.com", name="Nina", role="agent"
    )

    assert response.status_code == 302
    page = admin_client.get("/admin/staff").get_data(as_text=True)
    password = page.split("with the password ")[1].split(" ")[0]
    assert "Nina" in page
    assert log_in(app.test_client(), "new@example.com", password).status_code == 302


def test_adding_a_duplicate_or_invalid_account_is_refused(admin_client, make_staff):
    make_staff("Alice")

    duplicate = post(
        admin_client, "/admin/staff", email="ALICE@example.com", name="A", role="agent"
    )
    invalid = post(admin_client, "/admin/staff", email="nope", name="B", role="agent")

    assert "already an account" in duplicate.get_data(as_text=True)
    assert "valid e-mail" in invalid.get_data(as_text=True)


def test_admin_changes_a_role(app, admin_client, make_staff):
    alice = make_staff("Alice")

    post(admin_client, f"/admin/staff/{alice}", role="admin", active="1")

    with app.app_context():
        assert db.session.get(Staff, alice).role is StaffRole.ADMIN


def test_deactivating_ends_the_sessions_and_sign_ins(app, admin_client, make_staff):
    alice = make_staff("Alice")
    alice_client = app.test_client()
    log_in(alice_client, "alice@example.com")
    assert alice_client.get("/console/").status_code == 200

    post(admin_client, f"/admin/staff/{alice}", role="agent")

    assert alice_client.get("/console/").status_code == 302
    assert log_in(app.test_client(), "alice@example.com").status_code == 200
    page = admin_client.get("/admin/staff").get_data(as_text=True)
    assert 'class="inactive"' in page


def test_an_admin_cannot_lock_themselves_out(app, admin_client):
    demote = post(admin_client, "/admin/staff/1", role="agent", active="1")
    deactivate = post(admin_client, "/admin/staff/1", role="admin")

    assert demote.status_code == 409
    assert deactivate.status_code == 409
    with app.app_context():
        ada = db.session.get(Staff, 1)
        assert ada.role is StaffRole.ADMIN
        assert ada.is_active


def test_unknown_account_or_role_is_refused(admin_client):
    assert post(admin_client, "/admin/staff/999", role="agent").status_code == 404
    assert post(admin_client, "/admin/staff/1", role="boss").status_code == 400


def test_canned_replies_are_added_used_and_deleted(
    app, admin_client, send_update, telegram
):
    post(admin_client, "/admin/canned", title="Thanks", body="Thank you for waiting!")
    duplicate = post(admin_client, "/admin/canned", title="Thanks", body="again")
    send_update(telegram.user().text("hello"))

    ticket_page = admin_client.get("/console/tickets/1").get_data(as_text=True)
    with app.app_context():
        reply_id = db.session.scalars(select(CannedReply.id)).one()
    post(admin_client, f"/admin/canned/{reply_id}/delete")

    assert "already a canned reply" in duplicate.get_data(as_text=True)
    assert '<option value="Thank you for waiting!">Thanks</option>' in ticket_page
    with app.app_context():
        assert db.session.scalars(select(CannedReply)).all() == []
    assert post(admin_client, f"/admin/canned/{reply_id}/delete").status_code == 404


def test_admin_actions_reach_the_audit_log(admin_client, caplog):
    post(
        admin_client, "/admin/staff", email="new@example.com", name="Nina", role="agent"
    )
    post(admin_client, "/admin/canned", title="Hi", body="Hello!")

    audit = [r.getMessage() for r in caplog.records if r.name == "supportbot.audit"]
    assert any("created staff 2" in line for line in audit)
    assert any("added canned reply" in line for line in audit)
    assert PASSWORD not in caplog.text


def test_deliveries_page_lists_failed_and_stuck_messages(
    app, admin_client, telegram, deliver
):
    telegram.fail("sendMessage", error_code=400, description="Bad Request: no")
    with app.app_context():
        failed = outbox.enqueue(5, "sendMessage", {"text": "refused one"})
        stuck = outbox.enqueue(6, "sendMessage", {"text": "waiting one"})
        db.session.commit()
        failed_id, stuck_id = failed.id, stuck.id
    deliver()
    with app.app_context():
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == stuck_id)
            .values(
                status=OutboxStatus.QUEUED,
                queued_at=utcnow() - timedelta(hours=1),
                next_attempt_at=utcnow() + timedelta(hours=1),
                error="502 Bad Gateway",
            )
        )
        db.session.commit()

    page = admin_client.get("/admin/deliveries").get_data(as_text=True)
    failed_part, stuck_part = page.split("<h2>Stuck</h2>")

    assert "refused one" in failed_part
    assert "400 Bad Request: no" in failed_part
    assert f"/console/deliveries/{failed_id}/resend" in failed_part
    assert "waiting one" in stuck_part
    assert "502 Bad Gateway" in stuck_part
    assert "resend" not in stuck_part


def test_a_delivery_sent_again_from_the_deliveries_page_arrives(
    app, admin_client, telegram, deliver
):
    chat_id = telegram.user().id
    telegram.fail("sendMessage", error_code=400)
    with app.app_context():
        row = outbox.enqueue(chat_id, "sendMessage", {"text": "second time lucky"})
        db.session.commit()
        row_id = row.id
    deliver()

    response = post(admin_client, f"/console/deliveries/{row_id}/resend")
    deliver()

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/deliveries"
    telegram.wait_for(
        "sendMessage", where=lambda c: c.params["text"] == "second time lucky"
    )
    assert "No failed deliveries" in admin_client.get("/admin/deliveries").get_data(
        as_text=True
    )


def test_a_failed_update_is_listed_and_handled_again_from_the_deliveries_page(
    app, admin_client, send_update, telegram, monkeypatch, handle_updates, caplog
):
    update = telegram.user().text("lost in handling")
    with monkeypatch.context() as patch:
        patch.setattr(
            "supportbot.tickets.add_customer_message", broken_handler("no disk")
        )
        send_update(update)

    page = admin_client.get("/admin/deliveries").get_data(as_text=True)
    _, updates_part = page.split("<h2>Updates not handled</h2>")
    response = post(admin_client, f"/admin/updates/{update['update_id']}/handle-again")
    handle_updates()
    again = post(admin_client, f"/admin/updates/{update['update_id']}/handle-again")

    assert "RuntimeError: no disk" in updates_part
    assert f"/admin/updates/{update['update_id']}/handle-again" in updates_part
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/deliveries"
    with app.app_context():
        texts = db.session.scalars(select(Message.text)).all()
    assert texts == ["lost in handling"]
    assert again.status_code == 404
    assert "No update failed" in admin_client.get("/admin/deliveries").get_data(
        as_text=True
    )
    audit = [r.getMessage() for r in caplog.records if r.name == "supportbot.audit"]
    assert any("back to be handled" in line for line in audit)


def broken_handler(reason):
    """Return a stand-in for a service that fails with ``reason``."""

    def broken(*args, **kwargs):
        raise RuntimeError(reason)

    return broken
