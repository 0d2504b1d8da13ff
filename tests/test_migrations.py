"""The migrations build the schema from empty, and agree with the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from supportbot.extensions import db

from helpers import needs_postgresql

QUEUE_TABLES = ("telegram_update", "outbox_message")


def test_upgrade_from_empty_matches_the_models(app):
    with app.app_context():
        db.drop_all()

        upgrade()

        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True}
            )
            differences = compare_metadata(context, db.metadata)
        assert differences == []


def test_downgrade_to_empty_and_up_again(app):
    with app.app_context():
        db.drop_all()
        upgrade()

        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}

        upgrade()
        assert "ticket" in inspect(db.engine).get_table_names()


@needs_postgresql
def test_queue_tables_are_vacuumed_after_a_thousand_dead_rows(app):
    expected = {
        "autovacuum_vacuum_scale_factor=0",
        "autovacuum_vacuum_threshold=1000",
    }
    with app.app_context():
        # As the models create them, and as the migrations leave them.
        created = storage_options(QUEUE_TABLES)
        db.drop_all()
        upgrade()
        migrated = storage_options(QUEUE_TABLES)

    assert created == migrated == {table: expected for table in QUEUE_TABLES}


def storage_options(tables):
    with db.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT relname, reloptions FROM pg_class WHERE relname IN :names"),
            {"names": tuple(tables)},
        )
        return {name: set(options or ()) for name, options in rows}
