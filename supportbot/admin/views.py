"""Admin pages: staff accounts, canned replies and the Mini App's categories."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import canned, categories
from .. import staff as staff_service
from ..auth import admin_required
from ..errors import SupportbotError
from ..extensions import db
from ..models import Staff, StaffRole
from .forms import CannedReplyForm, CategoryForm, NewStaffForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@admin_required
def require_admin():
    """Keep every admin page for admins."""


@bp.route("/staff", methods=["GET", "POST"])
def staff():
    """List staff accounts and add new ones."""
    form = NewStaffForm()
    if form.validate_on_submit():
        try:
            account, password = staff_service.create(
                form.email.data,
                form.name.data,
                StaffRole(form.role.data),
                by=current_user,
            )
        except SupportbotError as error:
            form.email.errors.append(error.message)
        else:
            db.session.commit()
            flash(
                f"{account.name} can now sign in as {account.email} with the"
                f" password {password} (shown only now; they should change it).",
                "info",
            )
            return redirect(url_for("admin.staff"))

    accounts = db.session.scalars(select(Staff).order_by(Staff.name))
    return render_template(
        "admin/staff.html", form=form, accounts=accounts, roles=list(StaffRole)
    )


@bp.post("/staff/<int:staff_id>")
def update_staff(staff_id: int):
    """Change a staff member's role or whether they may sign in."""
    account = staff_service.get(staff_id)
    try:
        role = StaffRole(request.form.get("role", ""))
    except ValueError:
        raise SupportbotError("Choose a role: agent or admin.") from None

    staff_service.update(
        account, by=current_user, role=role, active=bool(request.form.get("active"))
    )
    db.session.commit()

    flash(f"{account.name} is updated.", "info")
    return redirect(url_for("admin.staff"))


@bp.route("/canned", methods=["GET", "POST"])
def canned_replies():
    """List canned replies and add new ones."""
    form = CannedReplyForm()
    if form.validate_on_submit():
        try:
            canned.add(form.title.data, form.body.data, by=current_user)
        except SupportbotError as error:
            form.title.errors.append(error.message)
        else:
            db.session.commit()
            flash("The canned reply is added.", "info")
            return redirect(url_for("admin.canned_replies"))

    return render_template("admin/canned.html", form=form, replies=canned.all_replies())


@bp.post("/canned/<int:reply_id>/delete")
def delete_canned_reply(reply_id: int):
    """Delete a canned reply."""
    reply = canned.delete(reply_id, by=current_user)
    db.session.commit()

    flash(f"“{reply.title}” is deleted.", "info")
    return redirect(url_for("admin.canned_replies"))


@bp.route("/categories", methods=["GET", "POST"])
def request_categories():
    """List the categories customers choose from in the Mini App, and add more."""
    form = CategoryForm()
    if form.validate_on_submit():
        try:
            categories.add(form.name.data, by=current_user)
        except SupportbotError as error:
            form.name.errors.append(error.message)
        else:
            db.session.commit()
            flash("The category is added.", "info")
            return redirect(url_for("admin.request_categories"))

    return render_template(
        "admin/categories.html", form=form, categories=categories.all_categories()
    )


@bp.post("/categories/<int:category_id>/move")
def move_category(category_id: int):
    """Move a category up or down the form's list."""
    categories.move(category_id, request.form.get("direction") == "up", current_user)
    db.session.commit()
    return redirect(url_for("admin.request_categories"))


@bp.post("/categories/<int:category_id>/delete")
def delete_category(category_id: int):
    """Take a category off the form; tickets keep the name they were given."""
    category = categories.delete(category_id, by=current_user)
    db.session.commit()

    flash(f"“{category.name}” is deleted.", "info")
    return redirect(url_for("admin.request_categories"))
