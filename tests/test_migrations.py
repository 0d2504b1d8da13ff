"""The migrations build the schema from empty, and agree with the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from supportbot.extensions import db


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
