"""Alembic environment: migrations run inside the app, on its engine and models."""

from alembic import context
from flask import current_app

from supportbot import models  # noqa: F401  (registers every table on the metadata)


def run_migrations_offline() -> None:
    """Write the migration SQL for the configured URL instead of running it."""
    migrate = current_app.extensions["migrate"]
    context.configure(
        url=migrate.db.engine.url,
        target_metadata=migrate.db.metadata,
        literal_binds=True,
        **migrate.configure_args,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the app's database."""
    migrate = current_app.extensions["migrate"]
    with migrate.db.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=migrate.db.metadata,
            **migrate.configure_args,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
