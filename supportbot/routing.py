"""URL converters: ids in addresses stay within what the database can hold."""

from flask import Flask
from werkzeug.routing import IntegerConverter

# The largest value of the integer primary keys, on SQLite and PostgreSQL.
MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """An ``int`` that matches only ids the database can hold, so others are 404."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("min", 0)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def parse_id(text: str | None) -> int | None:
    """Read an id written in digits, or None when it is not one the database holds."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def id_arg(args, name: str) -> int | None:
    """Read a query-string id, or None when it is missing or out of range."""
    return parse_id(args.get(name))


def init_app(app: Flask) -> None:
    """Make ``<int:...>`` in every route an id the database can hold."""
    app.url_map.converters["int"] = IdConverter
