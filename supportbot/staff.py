"""Staff accounts: creating them, signing in, and the admins' changes."""

import logging
import secrets

from sqlalchemy import func, select

from .errors import Conflict, NotFound, SupportbotError
from .extensions import db
from .models import Staff, StaffRole, utcnow

logger = logging.getLogger(__name__)
audit = logging.getLogger("supportbot.audit")

MIN_PASSWORD_LENGTH = 10


def find_by_email(email: str) -> Staff | None:
    """Return the account with ``email``, compared without case."""
    return db.session.scalar(
        select(Staff).where(func.lower(Staff.email) == email.strip().lower())
    )


def get(staff_id: int) -> Staff:
    """Return the account with ``staff_id`` or raise NotFound."""
    staff = db.session.get(Staff, staff_id)
    if staff is None:
        raise NotFound(f"There is no staff account #{staff_id}.")
    return staff


def active_staff() -> list[Staff]:
    """Return the accounts that can sign in, by name."""
    return list(
        db.session.scalars(
            select(Staff).where(Staff.is_active.is_(True)).order_by(Staff.name)
        )
    )


def create(
    email: str,
    name: str,
    role: StaffRole,
    password: str | None = None,
    by: Staff | None = None,
) -> tuple[Staff, str]:
    """Create an account; returns it and its password, generated when not given."""
    email = email.strip()
    name = name.strip()
    if "@" not in email or len(email) > 254:
        raise SupportbotError("Give a valid e-mail address.")
    if not name:
        raise SupportbotError("Give the person's name.")
    if find_by_email(email) is not None:
        raise Conflict(f"There is already an account for {email}.")
    if password is None:
        password = secrets.token_urlsafe(12)
    check_password_strength(password)

    staff = Staff(email=email, name=name[:128], role=role)
    staff.set_password(password)
    db.session.add(staff)
    db.session.flush()

    audit.info(
        "%s created staff %s (%s, %s)",
        _who(by),
        staff.id,
        email,
        role.value,
        extra={"staff_id": by.id if by else None},
    )
    return staff, password


def authenticate(email: str, password: str) -> Staff | None:
    """Return the active account matching the credentials, or None."""
    staff = find_by_email(email)
    if staff is None or not staff.is_active or not staff.check_password(password):
        audit.warning("failed sign-in for %r", email[:254])
        return None

    staff.last_login_at = utcnow()
    audit.info("staff %s signed in", staff.id, extra={"staff_id": staff.id})
    return staff


def change_password(staff: Staff, current: str, new: str) -> None:
    """Change ``staff``'s own password, which signs out their other sessions."""
    if not staff.check_password(current):
        raise SupportbotError("The current password is not right.")
    check_password_strength(new)

    staff.set_password(new)
    audit.info(
        "staff %s changed their password", staff.id, extra={"staff_id": staff.id}
    )


def update(staff: Staff, by: Staff, role: StaffRole, active: bool) -> None:
    """Change an account's role or whether it may sign in."""
    if staff.id == by.id and (role is not StaffRole.ADMIN or not active):
        raise Conflict(
            "You cannot remove your own admin rights or deactivate yourself."
        )

    if staff.role is not role:
        staff.role = role
        audit.info(
            "staff %s made staff %s %s",
            by.id,
            staff.id,
            role.value,
            extra={"staff_id": by.id},
        )
    if staff.is_active != active:
        staff.is_active = active
        # A new token ends the sessions the deactivated account still has.
        staff.session_token = secrets.token_hex(16)
        state = "reactivated" if active else "deactivated"
        audit.info(
            "staff %s %s staff %s", by.id, state, staff.id, extra={"staff_id": by.id}
        )


def check_password_strength(password: str) -> None:
    """Refuse passwords too short to resist guessing."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SupportbotError(
            f"A password needs at least {MIN_PASSWORD_LENGTH} characters."
        )


def _who(staff: Staff | None) -> str:
    return f"staff {staff.id}" if staff is not None else "the command line"
