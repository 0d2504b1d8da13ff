"""Request categories: the list admins keep for the Mini App's form."""

import logging

from sqlalchemy import func, select

from .errors import Conflict, NotFound, SupportbotError
from .extensions import db
from .models import Category, Staff

audit = logging.getLogger("supportbot.audit")

NAME_LENGTH = 64


def all_categories() -> list[Category]:
    """Return the categories in the order the form lists them."""
    statement = select(Category).order_by(Category.position, Category.id)
    return list(db.session.scalars(statement))


def names() -> list[str]:
    """Return the categories' names, in the form's order."""
    return [category.name for category in all_categories()]


def add(name: str, by: Staff) -> Category:
    """Add a category at the end of the list; names are unique."""
    name = " ".join((name or "").split())
    if not name:
        raise SupportbotError("Give the category a name.")
    if len(name) > NAME_LENGTH:
        raise SupportbotError(f"A category name has at most {NAME_LENGTH} characters.")
    taken = select(Category.id).where(func.lower(Category.name) == name.lower())
    if db.session.scalar(taken) is not None:
        raise Conflict(f"There is already a category called “{name}”.")

    last = db.session.scalar(select(func.max(Category.position)))
    category = Category(name=name, position=(last or 0) + 1)
    db.session.add(category)
    db.session.flush()

    audit.info("staff %s added category %s %r", by.id, category.id, name)
    return category


def delete(category_id: int, by: Staff) -> Category:
    """Remove a category from the form; tickets keep the name they were given."""
    category = _get(category_id)

    db.session.delete(category)
    audit.info("staff %s deleted category %s %r", by.id, category.id, category.name)
    return category


def move(category_id: int, up: bool, by: Staff) -> Category:
    """Swap a category with its neighbour above or below."""
    category = _get(category_id)
    ordered = all_categories()
    index = ordered.index(category)
    other = index - 1 if up else index + 1
    if not 0 <= other < len(ordered):
        return category

    # Positions are renumbered so that equal ones from older rows cannot stick.
    ordered[index], ordered[other] = ordered[other], ordered[index]
    for position, item in enumerate(ordered, start=1):
        item.position = position
    audit.info(
        "staff %s moved category %s %s", by.id, category.id, "up" if up else "down"
    )
    return category


def _get(category_id: int) -> Category:
    category = db.session.get(Category, category_id)
    if category is None:
        raise NotFound(f"There is no category #{category_id}.")
    return category
