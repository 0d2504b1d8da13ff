"""The help desk's tables: customers, tickets, messages, staff and the bot's books."""

import enum
import functools
import secrets
from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


def _new_token() -> str:
    return secrets.token_hex(16)


def utcnow() -> datetime:
    """Return the current time in UTC; every stored time uses it."""
    return datetime.now(UTC)


class UTCDateTime(db.TypeDecorator):
    """A timestamp that goes in and comes out timezone-aware in UTC.

    SQLite keeps no offset, so values are stored as naive UTC everywhere and
    marked as UTC again when read.
    """

    impl = db.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=UTC)
        return value


def _enum(cls: type[enum.Enum]) -> db.Enum:
    # Stored as plain strings so that adding a member needs no ALTER TYPE.
    return db.Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


class TicketStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"
    CLOSED = "closed"


class TicketPriority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class MessageKind(enum.StrEnum):
    CUSTOMER = "customer"
    REPLY = "reply"
    NOTE = "note"


class StaffRole(enum.StrEnum):
    AGENT = "agent"
    ADMIN = "admin"


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Customer(db.Model):
    """A Telegram user who has written to the bot; the id is Telegram's."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str] = mapped_column(String(256), default="")
    last_name: Mapped[str | None] = mapped_column(String(256))
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    language_code: Mapped[str | None] = mapped_column(String(16))
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )

    tickets: Mapped[list["Ticket"]] = relationship(back_populates="customer")

    @property
    def has_blocked_bot(self) -> bool:
        return self.blocked_at is not None

    @property
    def display_name(self) -> str:
        name = " ".join(filter(None, [self.first_name, self.last_name]))
        return name or (f"@{self.username}" if self.username else f"#{self.id}")


class Staff(UserMixin, db.Model):
    """A person who answers tickets in the console."""

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole), default=StaffRole.AGENT)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Changes with the password, so that changing it ends other sessions.
    session_token: Mapped[str] = mapped_column(String(64), default=_new_token)

    @property
    def is_admin(self) -> bool:
        return self.role is StaffRole.ADMIN

    def get_id(self) -> str:
        return f"{self.id}:{self.session_token}"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)
        self.session_token = _new_token()

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class Ticket(db.Model):
    """One support conversation with a customer; its id is the ticket number."""

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    subject: Mapped[str] = mapped_column(String(200), default="")
    category: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[TicketStatus] = mapped_column(
        _enum(TicketStatus), default=TicketStatus.OPEN
    )
    priority: Mapped[TicketPriority] = mapped_column(
        _enum(TicketPriority), default=TicketPriority.NORMAL
    )
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )
    # Set while the customer's last message has no staff answer after it.
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The latest message, kept here so that the queue needs no join to show it.
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_message_preview: Mapped[str] = mapped_column(String(200), default="")
    # Customer messages so far, kept here so that unread counts need no count.
    customer_message_count: Mapped[int] = mapped_column(default=0)
    rating: Mapped[int | None] = mapped_column()
    # The latest staff reply the customer has seen in the Mini App.
    customer_seen_message_id: Mapped[int | None] = mapped_column()
    # The words of the subject, the conversation and the customer's names, for
    # the console's search on PostgreSQL (see supportbot.search), and how many
    # characters they came from. The document is never loaded: nothing shows it.
    search_document: Mapped[str] = mapped_column(
        TSVECTOR().with_variant(Text, "sqlite"), server_default="", deferred=True
    )
    search_chars: Mapped[int] = mapped_column(default=0, server_default="0")

    customer: Mapped[Customer] = relationship(back_populates="tickets")
    assignee: Mapped[Staff | None] = relationship()
    messages: Mapped[list["Message"]] = relationship(
        back_populates="ticket", order_by="Message.id"
    )
    events: Mapped[list["TicketEvent"]] = relationship(
        back_populates="ticket", order_by="TicketEvent.id"
    )

    __table_args__ = (
        # The queue: tickets by status, oldest wait first, per assignee or not.
        Index("ix_ticket_status_waiting_since", "status", "waiting_since"),
        Index("ix_ticket_assignee_id_status", "assignee_id", "status"),
        Index("ix_ticket_status_updated_at", "status", "updated_at"),
        Index("ix_ticket_status_closed_at", "status", "closed_at"),
        # The unread total over every unclosed ticket, read from the index alone.
        Index(
            "ix_ticket_unclosed_message_count",
            "id",
            "customer_message_count",
            postgresql_where=db.text("status <> 'closed'"),
            sqlite_where=db.text("status <> 'closed'"),
        ),
        # The console's search, on PostgreSQL. SQLite leaves the column empty
        # and its index with it, kept so that both databases have one schema.
        Index("ix_ticket_search_document", "search_document", postgresql_using="gin"),
    )

    @property
    def number(self) -> int:
        return self.id

    @property
    def is_closed(self) -> bool:
        return self.status is TicketStatus.CLOSED


class TicketEvent(db.Model):
    """Something staff or the customer did to a ticket, for its timeline."""

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ticket: Mapped["Ticket"] = relationship(back_populates="events")
    staff: Mapped[Staff | None] = relationship()

    __table_args__ = (Index("ix_ticket_event_ticket_id_id", "ticket_id", "id"),)


class TicketRead(db.Model):
    """How far one staff member has read a ticket, for unread counts."""

    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    last_read_message_id: Mapped[int] = mapped_column(default=0)
    # The ticket's customer message count when they last read it: the queue
    # subtracts it from the ticket's count, with no count over messages.
    read_count: Mapped[int] = mapped_column(default=0)


class CannedReply(db.Model):
    """A prepared answer staff can insert into a reply."""

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(db.Model):
    """A customer message, a staff reply or an internal note on a ticket."""

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    kind: Mapped[MessageKind] = mapped_column(_enum(MessageKind))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    text: Mapped[str] = mapped_column(Text, default="")
    # Where the message lives in Telegram, for customer messages and sent replies.
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    # Type, file ids, name, size and the like, as Telegram described the media.
    attachment: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    staff: Mapped[Staff | None] = relationship()
    revisions: Mapped[list["MessageRevision"]] = relationship(
        back_populates="message", order_by="MessageRevision.id"
    )

    __table_args__ = (
        Index("ix_message_ticket_id_id", "ticket_id", "id"),
        Index(
            "ix_message_telegram_chat_id_telegram_message_id",
            "telegram_chat_id",
            "telegram_message_id",
        ),
    )


class MessageRevision(db.Model):
    """The text a message had before one of its edits."""

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    attachment: Mapped[dict | None] = mapped_column(JSON)
    # When this text was current: from its creation or last edit until replaced.
    written_at: Mapped[datetime] = mapped_column(UTCDateTime)
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[Message] = relationship(back_populates="revisions")


# Tables used as queues leave behind every row they hand out a dead row
# version, and an index entry that each look for waiting rows walks again.
# PostgreSQL vacuums them after a thousand such versions, rather than after a
# fifth of the table: for a table holding a week of rows, hundreds of
# thousands.
QUEUE_VACUUM = {
    "autovacuum_vacuum_scale_factor": 0,
    "autovacuum_vacuum_threshold": 1000,
}


class TelegramUpdate(db.Model):
    """An update from Telegram, stored as it came and handled after the answer.

    The update id is the key, so a redelivered update is stored once. Handling
    sets ``handled_at``; an update whose handling failed keeps its ``error`` and
    can be handled again. Updates of one chat are handled in the order of their
    ids.
    """

    update_id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False
    )
    kind: Mapped[str] = mapped_column(String(32))
    # The chat whose order the update keeps; none for kinds that are ignored.
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    # Empty for updates that are ignored, and for those handled before
    # updates were stored whole.
    payload: Mapped[dict | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Handlers look only at the few updates not handled yet.
        Index(
            "ix_telegram_update_waiting",
            "chat_id",
            "update_id",
            postgresql_where=db.text("handled_at IS NULL"),
            sqlite_where=db.text("handled_at IS NULL"),
        ),
        Index(
            "ix_telegram_update_failed",
            "update_id",
            postgresql_where=db.text("error IS NOT NULL"),
            sqlite_where=db.text("error IS NOT NULL"),
        ),
        {"postgresql_with": QUEUE_VACUUM},
    )


class OutboxMessage(db.Model):
    """A Bot API call waiting to be made, written with whatever caused it.

    A text or caption longer than Telegram takes is queued as several rows, the
    message's parts, sent in order; the later parts point at the first.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus), default=OutboxStatus.QUEUED
    )
    # Counts claims, so that a worker whose lease ran out cannot record an outcome.
    attempts: Mapped[int] = mapped_column(default=0)
    # Not before then: a retry's backoff, a rate limit, or a claim's lease end.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    error: Mapped[str | None] = mapped_column(Text)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the row last joined the queue: at creation, or when sent again.
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    part: Mapped[int] = mapped_column(default=1)
    parts: Mapped[int] = mapped_column(default=1)
    first_part_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_message.id"))

    message: Mapped[Message | None] = relationship()

    __table_args__ = (
        Index("ix_outbox_message_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_message_chat_id_id", "chat_id", "id"),
        Index("ix_outbox_message_message_id", "message_id"),
        # A chat's unfinished rows, to find the one that goes next.
        Index("ix_outbox_message_chat_id_status_id", "chat_id", "status", "id"),
        # A chat's recent sends, to keep to its rate.
        Index("ix_outbox_message_chat_id_sent_at", "chat_id", "sent_at"),
        {"postgresql_with": QUEUE_VACUUM},
    )


class LogRecord(db.Model):
    """One application log record, kept for the admin pages."""

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    level: Mapped[int] = mapped_column()
    logger: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    error_id: Mapped[str | None] = mapped_column(String(32), index=True)
    ticket_id: Mapped[int | None] = mapped_column(index=True)
    # Who did it, for the audit trail.
    staff_id: Mapped[int | None] = mapped_column()
    request_path: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (
        Index("ix_log_record_level_created_at", "level", "created_at"),
        Index("ix_log_record_logger_created_at", "logger", "created_at"),
    )


def insert_or_ignore(model: type[db.Model], *, connection=None, **values) -> bool:
    """Insert a row unless one with the same key exists; tell whether it did.

    The row goes in with the session's transaction, or on ``connection`` when
    one is given. On PostgreSQL a concurrent insert of the same key waits for
    the other transaction, so exactly one of them reports True.
    """
    if connection is None:
        runner, dialect = db.session, db.session.get_bind().dialect.name
    else:
        runner, dialect = connection, connection.dialect.name
    statement = _insert_or_ignore(model.__table__, dialect)
    return runner.execute(statement, values).rowcount == 1


@functools.cache
def _insert_or_ignore(table, dialect: str):
    # Built once per table: the values come as parameters, so the compiled
    # statement is reused rather than composed and looked up anew each time.
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"insert_or_ignore does not support {dialect}")
    return insert(table).on_conflict_do_nothing()


class Category(db.Model):
    """A kind of request customers choose from in the Mini App's form."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
