"""Staff sign-in: sessions, the login page and the ``flask staff`` commands."""

from functools import wraps

from flask import Flask, abort
from flask_login import current_user, login_required

from ..extensions import db, login_manager
from ..models import Staff


def init_app(app: Flask) -> None:
    """Set up Flask-Login and register the blueprint and its commands."""
    from . import cli, views

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "basic"
    login_manager.user_loader(load_staff)

    app.register_blueprint(views.bp)
    app.cli.add_command(cli.staff)


def load_staff(session_id: str) -> Staff | None:
    """Return the active account of a session, if its token is still current."""
    staff_id, _, token = session_id.partition(":")
    if not staff_id.isdigit():
        return None

    staff = db.session.get(Staff, int(staff_id))
    if staff is None or not staff.is_active or staff.session_token != token:
        return None
    return staff


def admin_required(view):
    """Let only signed-in admins through; agents get 403."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403, "This page is for admins.")
        return view(*args, **kwargs)

    return wrapped
