"""``flask staff``: create accounts from the command line."""

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from .. import staff as staff_service
from ..errors import SupportbotError
from ..extensions import db
from ..models import Staff, StaffRole

staff = AppGroup("staff", help="Manage staff accounts.")


@staff.command("create")
@click.argument("email")
@click.option("--name", required=True, help="The person's name, shown to colleagues.")
@click.option(
    "--role",
    type=click.Choice([role.value for role in StaffRole]),
    default=StaffRole.AGENT.value,
    show_default=True,
)
@click.option(
    "--password",
    help="Without it you are asked for one; leave the answer empty to generate one.",
)
def create(email: str, name: str, role: str, password: str | None) -> None:
    """Create a staff account."""
    if password is None:
        password = (
            click.prompt(
                "Password (empty to generate one)",
                default="",
                hide_input=True,
                show_default=False,
            )
            or None
        )

    try:
        account, password_used = staff_service.create(
            email, name, StaffRole(role), password
        )
    except SupportbotError as error:
        raise click.ClickException(error.message) from None
    db.session.commit()

    click.echo(f"Created {role} {account.name} <{account.email}>.")
    if password is None:
        click.echo(f"Generated password, shown only now: {password_used}")


@staff.command("check")
def check() -> None:
    """Say how to create the first admin when there are no accounts yet."""
    if db.session.scalar(select(func.count()).select_from(Staff)):
        return

    click.echo(
        "There are no staff accounts yet. Create the first admin with:\n"
        "  .venv/bin/flask --app wsgi staff create you@example.com"
        " --name 'Your Name' --role admin"
    )
