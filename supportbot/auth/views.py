"""Signing in and out, and changing one's own password."""

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from .. import staff as staff_service
from ..errors import SupportbotError
from ..extensions import db, limiter
from .forms import LoginForm, PasswordForm

bp = Blueprint("auth", __name__)


def _login_account_key() -> str:
    return "login-account:" + request.form.get("email", "").strip().lower()


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT_PER_IP"],
    methods=["POST"],
    error_message="Too many sign-in attempts from your address; wait a minute.",
)
@limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"],
    key_func=_login_account_key,
    methods=["POST"],
    error_message="Too many sign-in attempts for this account; wait a minute.",
)
def login():
    """Show the sign-in form and sign staff in."""
    if current_user.is_authenticated:
        return redirect(url_for("console.queue"))

    form = LoginForm()
    if form.validate_on_submit():
        staff = staff_service.authenticate(form.email.data, form.password.data)
        db.session.commit()
        if staff is not None:
            login_user(staff)
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong e-mail or password.", "error")

    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    """Sign out."""
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change one's own password; other sessions end."""
    form = PasswordForm()
    if form.validate_on_submit():
        try:
            staff_service.change_password(
                current_user, form.current.data, form.new.data
            )
        except SupportbotError as error:
            form.current.errors.append(error.message)
        else:
            db.session.commit()
            # The session id includes the token the change replaced.
            login_user(current_user)
            flash("Your password is changed.", "info")
            return redirect(url_for("console.queue"))

    return render_template("auth/password.html", form=form)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: never an open redirect to another host.
    if target and target.startswith("/") and not target.startswith("//"):
        if not urlsplit(target).netloc:
            return target
    return url_for("console.queue")
