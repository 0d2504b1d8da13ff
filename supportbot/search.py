"""Searching tickets: what the console's queue search looks in, and how.

On PostgreSQL each ticket keeps a search document: the words of its subject,
its messages, notes and file names, and its customer's names and username, in
a GIN-indexed tsvector that grows with the conversation. A search reads that
one index whatever the number of messages. Every word of a search matches as
the start of a word, so "refun" finds "refund", and a ticket matches when it
holds all of them. SQLite, the development database, matches the search as a
substring of each field instead.
"""

from sqlalchemy import Text, cast, event, func, literal_column, or_, select, union
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.orm import Session

from .extensions import db
from .models import Customer, Message, Ticket
from .routing import parse_id

# Characters of a conversation its document holds. The first ones are what a
# search needs, and the bound keeps a document inside PostgreSQL's 1 MB limit
# on a tsvector, whatever a customer sends.
DOCUMENT_BUDGET = 100_000

# What finds a customer's tickets besides their words.
NAME_FIELDS = ("first_name", "last_name", "username")

PENDING = "supportbot.search_pending"
SIMPLE = literal_column("'simple'")

# Written as SQL text, which costs a flush a small part of what composing the
# same expression for every ticket does.
NEW_DOCUMENT = db.text("strip(to_tsvector('simple', :search_text))")
# Joined by the database to the document as the row holds it, so that texts
# two transactions add at once are both kept.
LONGER_DOCUMENT = db.text(
    "search_document || strip(to_tsvector('simple', :search_text))"
)


def init_app(app) -> None:
    """Write the texts services index into ticket documents when sessions flush."""
    if not event.contains(Session, "before_flush", _write_documents):
        event.listen(Session, "before_flush", _write_documents)
        event.listen(Session, "after_soft_rollback", _forget_pending)


def index(ticket: Ticket, *texts: str | None) -> None:
    """Make ``texts`` findable on ``ticket`` from the next flush on."""
    texts = [text for text in texts if text]
    if texts:
        pending = db.session.info.setdefault(PENDING, {})
        pending.setdefault(ticket, []).extend(texts)


def index_names(customer: Customer) -> None:
    """Make the customer's current names find every ticket of theirs."""
    if db.session.get_bind().dialect.name != "postgresql":
        return

    # Names are short, so they are left out of the documents' budget.
    document = LONGER_DOCUMENT.bindparams(search_text=" ".join(names(customer)))
    db.session.execute(
        Ticket.__table__.update()
        .where(Ticket.customer_id == customer.id)
        .values(search_document=document)
    )


def names(customer: Customer) -> list[str]:
    """Return what a customer may be searched by: names and username."""
    return [
        getattr(customer, field) for field in NAME_FIELDS if getattr(customer, field)
    ]


def condition(search: str):
    """Return the condition a ticket meets when ``search`` finds it.

    "#42" names ticket 42 alone; a bare "42" finds it and any ticket whose
    text holds 42.
    """
    number = parse_id(search.lstrip("#"))
    if number is not None and search.startswith("#"):
        return Ticket.id == number

    if db.session.get_bind().dialect.name == "postgresql":
        found = Ticket.search_document.op("@@")(_prefix_query(search))
        return found if number is None else or_(Ticket.id == number, found)

    by_number = [] if number is None else [select(Ticket.id).where(Ticket.id == number)]
    return Ticket.id.in_(
        union(*by_number, *_substring_matches(search)).scalar_subquery()
    )


def rebuild_documents(connection) -> None:
    """Write every ticket's document anew from its subject, messages and customer."""
    connection.execute(
        db.text(
            """
            UPDATE ticket SET search_document = strip(to_tsvector('simple', body)),
                              search_chars = length(body)
            FROM (
                SELECT ticket.id,
                       left(concat_ws(E'\\n', ticket.subject,
                                      min(concat_ws(' ', customer.first_name,
                                                    customer.last_name,
                                                    customer.username)),
                                      string_agg(concat_ws(' ', message.text,
                                                           message.attachment
                                                           ->> 'file_name'),
                                                 E'\\n' ORDER BY message.id)),
                            :budget) AS body
                FROM ticket
                JOIN customer ON customer.id = ticket.customer_id
                LEFT JOIN message ON message.ticket_id = ticket.id
                GROUP BY ticket.id
            ) AS conversation
            WHERE ticket.id = conversation.id
            """
        ),
        {"budget": DOCUMENT_BUDGET},
    )


def _prefix_query(search: str):
    # plainto_tsquery splits the search as documents are split and joins the
    # words with "&"; marking each quoted word ':*' makes it match as a prefix.
    words = cast(func.plainto_tsquery(SIMPLE, search), Text)
    return cast(func.regexp_replace(words, "'( |$)", "':*\\1", "g"), TSQUERY)


def _substring_matches(search: str) -> list:
    in_customer = or_(
        Customer.username.icontains(search.lstrip("@"), autoescape=True),
        Customer.first_name.icontains(search, autoescape=True),
        Customer.last_name.icontains(search, autoescape=True),
    )
    return [
        select(Ticket.id).where(Ticket.subject.icontains(search, autoescape=True)),
        select(Message.ticket_id).where(
            or_(
                Message.text.icontains(search, autoescape=True),
                Message.attachment["file_name"]
                .as_string()
                .icontains(search, autoescape=True),
            )
        ),
        select(Ticket.id).join(Ticket.customer).where(in_customer),
    ]


def _write_documents(session: Session, flush_context, instances) -> None:
    pending = session.info.pop(PENDING, None)
    if not pending or session.get_bind().dialect.name != "postgresql":
        return

    for ticket, texts in pending.items():
        held = ticket.search_chars or 0
        text = "\n".join(texts)[: max(DOCUMENT_BUDGET - held, 0)]
        if not text:
            continue
        document = NEW_DOCUMENT if ticket.id is None else LONGER_DOCUMENT
        ticket.search_document = document.bindparams(search_text=text)
        # Two transactions writing to one ticket at once may count one text
        # short; the budget's margin to the 1 MB limit absorbs that.
        ticket.search_chars = held + len(text)


def _forget_pending(session: Session, transaction) -> None:
    session.info.pop(PENDING, None)
