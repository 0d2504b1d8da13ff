"""Fill a PostgreSQL database with a help desk's year: tickets, messages, staff.

The schema comes from the migrations; the rows go in with COPY, and every
field the console reads without a join (a ticket's wait, latest message and
first response, the outbox row of each reply, read markers) is set as the
services would have set it.

    createdb -h 127.0.0.1 -U postgres supportbot_bench_scale
    .venv/bin/python bench/generate_data.py \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_scale
    .venv/bin/python bench/generate_data.py --tickets 1000 --messages 10000 \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_small

The database must exist; its tables are replaced. Staff sign in with the
password below; ``bench@example.com`` is an agent with tickets of their own.
"""

import argparse
import collections
import csv
import io
import itertools
import json
import logging
import random
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta

import psycopg2
from flask_migrate import upgrade
from werkzeug.security import generate_password_hash

from supportbot import search, tickets
from supportbot.config import database_url
from supportbot.extensions import db

from common import bench_app, empty_database

PASSWORD = "bench password 1"
BENCH_EMAIL = "bench@example.com"
STAFF_COUNT = 25
# A few conversations run long, for the ticket page; the rest are short.
LONG_TICKETS = {1000: 10, 300: 40}
TABLES = (
    "customer",
    "staff",
    "ticket",
    "message",
    "ticket_event",
    "ticket_read",
    "outbox_message",
)
BATCH = 100_000

FIRST_NAMES = (
    "Anna Boris Chen Dmitri Elena Fatima Georg Hana Ivan Julia Kemal Lena Marco"
    " Nadia Oleg Priya Quentin Rosa Sergei Tomás Ulla Vera Wen Xenia Yusuf Zoe"
    " Amir Bea Carlos Dana Emil Freya Goran Ines Jonas Kira Luca Mia Nils Olga"
).split()
LAST_NAMES = (
    "Novak Petrov Silva Kim Müller Rossi Haddad Tanaka Kowalski Ivanova Berg"
    " Costa Weber Lindqvist Moreau Yilmaz Santos Nakamura Fischer Horvat"
).split()
LANGUAGES = ("en", "en", "en", "ru", "de", "es", "uk", None)
PRODUCTS = (
    "the mobile app",
    "the web dashboard",
    "my subscription",
    "the premium plan",
    "the desktop client",
    "my account",
    "the payment page",
    "the export feature",
    "two-factor login",
    "the family plan",
)
PROBLEMS = (
    "keeps crashing when I open it",
    "charged me twice this month",
    "does not accept my card",
    "shows an error about an expired session",
    "is very slow since the last update",
    "lost all my saved settings",
    "will not let me change my e-mail address",
    "sends me a verification code that never arrives",
    "says my order was cancelled but I was billed",
    "logs me out every few minutes",
    "shows the wrong currency on the invoice",
    "cannot sync between my phone and laptop",
)
OPENERS = (
    "Hello, {product} {problem}.",
    "Hi! Since yesterday {product} {problem}.",
    "Good morning. I have a problem: {product} {problem}.",
    "{product} {problem}, can you help?",
    "Hey, I need a refund, {product} {problem}.",
)
FOLLOW_UPS = (
    "My order number is {order}.",
    "I already tried reinstalling and restarting, nothing changed.",
    "Here is what the screen says: error {code}.",
    "It started after the update to version {version}.",
    "I use it on {device}.",
    "Any news? I am still waiting.",
    "Thanks, that worked!",
    "No, it still does not work.",
    "Could you please check again? The {word} option is missing too.",
    "My username there is {word}{code}.",
    "I would like to cancel and get my money back.",
    "Is there a phone number I can call instead?",
)
REPLIES = (
    "Thanks for writing to us. Could you tell me your order number?",
    "Sorry for the trouble. Which version of the app do you use?",
    "I have refunded the duplicate charge; it takes 3-5 business days.",
    "Please sign out, clear the cache and sign in again.",
    "Our engineers are looking into error {code}; I will update you here.",
    "I have reset your session. Can you try once more?",
    "The fix is in version {version}, out today.",
    "I have changed the e-mail address on the account for you.",
    "Could you send a screenshot of the {word} screen?",
    "Glad it works now! Anything else I can help with?",
)
NOTES = (
    "Customer has a second account, merged.",
    "Escalated to billing, see order {order}.",
    "Known issue with {device}, linked to the release notes.",
    "Asked twice already; please answer first thing tomorrow.",
)
DEVICES = ("an iPhone 13", "a Pixel 7", "Windows 11", "a Mac", "an old Android tablet")


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL URL")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, help="default: a third of tickets")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def lexicon(rng: random.Random, size: int = 5000) -> list[str]:
    """Make up words, so that searches find anything from many rows to a few."""
    syllables = "ka lo mi nu sa te vo ri pe da zu fi go ha je wy xo qu be".split()
    words = set()
    while len(words) < size:
        words.add("".join(rng.choices(syllables, k=rng.randint(2, 4))))
    return sorted(words)


class Writer:
    """Compose realistic message texts from templates and made-up words."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.words = lexicon(rng)
        # Zipf-like: a few made-up words are common, most are rare.
        self.cumulative = list(
            itertools.accumulate(1 / (rank + 1) for rank in range(len(self.words)))
        )

    def word(self) -> str:
        return self.rng.choices(self.words, cum_weights=self.cumulative)[0]

    def fill(self, template: str) -> str:
        rng = self.rng
        return template.format(
            product=rng.choice(PRODUCTS),
            problem=rng.choice(PROBLEMS),
            order=f"{rng.randint(100000, 999999)}",
            code=f"E{rng.randint(100, 999)}",
            version=f"{rng.randint(3, 9)}.{rng.randint(0, 20)}",
            device=rng.choice(DEVICES),
            word=self.word(),
        )

    def opener(self) -> str:
        text = self.fill(self.rng.choice(OPENERS))
        return text[0].upper() + text[1:]

    def customer(self) -> str:
        parts = [self.fill(self.rng.choice(FOLLOW_UPS))]
        if self.rng.random() < 0.3:
            parts.append(f"Also the {self.word()} {self.word()} part.")
        return " ".join(parts)

    def reply(self) -> str:
        return self.fill(self.rng.choice(REPLIES))

    def note(self) -> str:
        return self.fill(self.rng.choice(NOTES))


def token() -> str:
    """Make a session token, as a new account gets."""
    return secrets.token_hex(16)


def stamp(moment: datetime | None) -> str | None:
    """Write a time as the naive UTC the schema stores."""
    return moment.replace(tzinfo=None).isoformat(" ") if moment else None


def message_counts(rng: random.Random, tickets_total: int, messages: int) -> list:
    """Split ``messages`` over the tickets: mostly short, a few very long."""
    counts = []
    for length, how_many in LONG_TICKETS.items():
        # As many as at full size in proportion, and at least one when it fits.
        how_many = max(1, round(how_many * tickets_total / 100_000))
        if length * how_many * 5 <= messages:
            counts += [length] * how_many
    short = tickets_total - len(counts)
    mean = (messages - sum(counts)) / short
    # Geometric lengths of at least one message, with the mean asked for.
    counts += [
        1 + int(rng.expovariate(1 / max(mean - 0.5, 0.01))) for _ in range(short)
    ]
    rng.shuffle(counts)

    # Nudge single tickets until the total is exact.
    difference = messages - sum(counts)
    while difference:
        index = rng.randrange(tickets_total)
        if difference > 0:
            counts[index] += 1
            difference -= 1
        elif counts[index] > 1 and counts[index] not in LONG_TICKETS:
            counts[index] -= 1
            difference += 1
    return counts


class Dataset:
    """Every row, built in memory with ids in the order the app would give them."""

    def __init__(self, arguments: argparse.Namespace):
        self.rng = random.Random(arguments.seed)
        self.writer = Writer(self.rng)
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.tickets_total = arguments.tickets
        self.messages_total = arguments.messages
        self.customers_total = arguments.customers or max(1, arguments.tickets // 3)
        self.customers: list[tuple] = []
        self.staff: list[tuple] = []
        self.tickets: list[list] = []
        self.messages: list[tuple] = []
        self.events: list[tuple] = []
        self.reads: list[tuple] = []
        self.outbox: list[tuple] = []

    def build(self) -> None:
        self._people()
        conversations = self._conversations()
        self._number_messages(conversations)

    def _people(self) -> None:
        rng = self.rng
        password_hash = generate_password_hash(PASSWORD)
        created = stamp(self.now - timedelta(days=400))
        for number in range(1, STAFF_COUNT + 1):
            name, email = f"Agent {number:02d}", f"agent{number:02d}@example.com"
            if number == 1:
                name, email = "Bench Agent", BENCH_EMAIL
            self.staff.append(
                (number, email, name, password_hash, "agent", True, created, token())
            )
        self.staff.append(
            (
                STAFF_COUNT + 1,
                "admin@example.com",
                "Bench Admin",
                password_hash,
                "admin",
                True,
                created,
                token(),
            )
        )

        for number in range(self.customers_total):
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES) if rng.random() < 0.7 else None
            username = (
                f"{first.lower()}_{self.writer.word()}{number}"
                if rng.random() < 0.6
                else None
            )
            self.customers.append(
                (
                    100_000_000 + number,
                    first,
                    last,
                    username,
                    rng.choice(LANGUAGES),
                    None,
                    created,
                    created,
                )
            )

    def _conversations(self) -> list:
        """Lay out each ticket's messages in time; ids are given afterwards."""
        rng = self.rng
        counts = message_counts(rng, self.tickets_total, self.messages_total)
        span = timedelta(days=365).total_seconds()
        start = self.now - timedelta(days=366)
        latest = self.now - timedelta(minutes=1)
        conversations = []

        for index, count in enumerate(counts):
            ticket_id = index + 1
            # Ticket ids rise with time, as they do when the app opens them.
            opened = start + timedelta(
                seconds=span * index / self.tickets_total + rng.uniform(0, 60)
            )
            roll = rng.random()
            status = "closed" if roll < 0.8 else "open" if roll < 0.92 else "pending"
            assignee = rng.randint(1, STAFF_COUNT) if rng.random() < 0.65 else None
            customer = self.customers[rng.randrange(self.customers_total)][0]

            kinds = self._kinds(count, status)
            gap = 1800 if count < 100 else 300
            moment = opened
            messages = []
            for position, kind in enumerate(kinds):
                if position:
                    moment = min(
                        moment + timedelta(seconds=rng.expovariate(1 / gap)), latest
                    )
                messages.append((moment, kind))
            conversations.append((ticket_id, customer, status, assignee, messages))
        return conversations

    def _kinds(self, count: int, status: str) -> list[str]:
        """Alternate customer and staff turns; open tickets end on the customer."""
        rng = self.rng
        kinds = ["customer"]
        while len(kinds) < count:
            previous = kinds[-1]
            if rng.random() < 0.05:
                kinds.append("note")
            elif previous == "customer" and rng.random() < 0.6:
                kinds.append("reply")
            elif previous in ("reply", "note") and rng.random() < 0.7:
                kinds.append("customer")
            else:
                kinds.append(previous if previous != "note" else "reply")
        if status == "open":
            kinds[-1] = "customer"
        elif status == "pending" and count > 1:
            kinds[-1] = "reply"
        return kinds

    def _number_messages(self, conversations: list) -> None:
        """Give messages ids in time order across tickets and fill the tickets."""
        rng = self.rng
        writer = self.writer
        flat = [
            (moment, ticket_index, position)
            for ticket_index, (*_, messages) in enumerate(conversations)
            for position, (moment, _) in enumerate(messages)
        ]
        flat.sort()
        ids = {}
        for message_id, (_, ticket_index, position) in enumerate(flat, start=1):
            ids[ticket_index, position] = message_id
        del flat

        telegram_ids: dict[int, int] = {}
        for ticket_index, conversation in enumerate(conversations):
            ticket_id, customer, status, assignee, messages = conversation
            waiting_since = first_response = None
            subject = ""
            last_read = read_count = customer_count = 0
            last_text = ""
            rows = []
            for position, (moment, kind) in enumerate(messages):
                message_id = ids[ticket_index, position]
                chat = telegram_id = None
                staff_id = None
                if kind == "customer":
                    text_value = writer.opener() if position == 0 else writer.customer()
                    chat = customer
                    customer_count += 1
                    telegram_id = telegram_ids[customer] = (
                        telegram_ids.get(customer, 0) + 1
                    )
                    if waiting_since is None:
                        waiting_since = moment
                else:
                    staff_id = assignee or rng.randint(1, STAFF_COUNT)
                    text_value = writer.reply() if kind == "reply" else writer.note()
                if kind == "reply":
                    chat = customer
                    telegram_id = telegram_ids[customer] = (
                        telegram_ids.get(customer, 0) + 1
                    )
                    first_response = first_response or moment
                    waiting_since = None
                    self.outbox.append(
                        (
                            customer,
                            "sendMessage",
                            json.dumps({"chat_id": customer, "text": text_value}),
                            message_id,
                            "sent",
                            1,
                            stamp(moment),
                            None,
                            telegram_id,
                            stamp(moment),
                            stamp(moment),
                            stamp(moment + timedelta(seconds=1)),
                            1,
                            1,
                            None,
                        )
                    )
                if kind != "note":
                    last_text = text_value
                if position == 0:
                    subject = tickets.subject_from(text_value)
                if staff_id == assignee and kind != "customer":
                    last_read, read_count = message_id, customer_count
                rows.append(
                    (
                        message_id,
                        ticket_id,
                        kind,
                        staff_id,
                        text_value,
                        chat,
                        telegram_id,
                        None,
                        stamp(moment),
                        None,
                    )
                )
            self.messages.extend(rows)

            opened, last_at = messages[0][0], messages[-1][0]
            updated = last_at
            closed_at = None
            if assignee is not None:
                updated = self._event(ticket_id, assignee, "assigned", opened, updated)
            if status == "closed":
                closed_at = min(last_at + timedelta(hours=rng.uniform(1, 48)), self.now)
                waiting_since = None
                updated = self._event(ticket_id, assignee, "closed", closed_at, updated)
            if assignee is not None and last_read:
                self.reads.append((assignee, ticket_id, last_read, read_count))
            if ticket_id % 3 == 0 and status != "closed":
                # Some tickets the bench agent has caught up on, to vary unread counts.
                self.reads.append((1, ticket_id, rows[-1][0], customer_count))

            preview = tickets.subject_from(last_text)
            self.tickets.append(
                [
                    ticket_id,
                    customer,
                    subject,
                    None,
                    status,
                    rng.choice(("low", "normal", "normal", "normal", "high", "urgent")),
                    assignee,
                    stamp(opened),
                    stamp(updated),
                    stamp(waiting_since),
                    stamp(first_response),
                    stamp(closed_at),
                    stamp(last_at),
                    preview,
                    rng.randint(1, 5) if closed_at and rng.random() < 0.3 else None,
                    None,
                    customer_count,
                ]
            )

        # The bench agent's reads for tickets they also own must be one row.
        self.reads = list({(r[0], r[1]): r for r in self.reads}.values())

    def _event(self, ticket_id, staff_id, kind, moment, updated):
        # Each event moves the ticket's updated_at, as _record_event does.
        if kind == "assigned":
            name = self.staff[staff_id - 1][2]
            detail = {"assignee_id": staff_id, "assignee": name}
        else:
            staff_id = staff_id or self.rng.randint(1, STAFF_COUNT)
            detail = {"rating_asked": self.rng.random() < 0.5}
        self.events.append(
            (ticket_id, staff_id, kind, json.dumps(detail), stamp(moment))
        )
        return max(updated, moment)


COLUMNS = {
    "customer": "id, first_name, last_name, username, language_code, blocked_at,"
    " created_at, updated_at",
    "staff": "id, email, name, password_hash, role, is_active, created_at,"
    " session_token",
    "ticket": "id, customer_id, subject, category, status, priority, assignee_id,"
    " created_at, updated_at, waiting_since, first_response_at, closed_at,"
    " last_message_at, last_message_preview, rating, customer_seen_message_id,"
    " customer_message_count",
    "message": "id, ticket_id, kind, staff_id, text, telegram_chat_id,"
    " telegram_message_id, attachment, created_at, edited_at",
    "ticket_event": "ticket_id, staff_id, kind, detail, created_at",
    "ticket_read": "staff_id, ticket_id, last_read_message_id, read_count",
    "outbox_message": "chat_id, method, payload, message_id, status, attempts,"
    " next_attempt_at, error, telegram_message_id, created_at, queued_at, sent_at,"
    " part, parts, first_part_id",
}


def copy_rows(cursor, table: str, rows: list) -> None:
    """Send ``rows`` to ``table`` with COPY, in batches."""
    for start in range(0, len(rows), BATCH):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in rows[start : start + BATCH]:
            writer.writerow(["\\N" if value is None else value for value in row])
        buffer.seek(0)
        cursor.copy_expert(
            f"COPY {table} ({COLUMNS[table]}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
            buffer,
        )


def secondary_indexes(cursor) -> list[tuple[str, str]]:
    """List the indexes that back no constraint, with the SQL that makes each."""
    cursor.execute(
        """
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename = ANY(%s)
          AND indexname NOT IN (SELECT conname FROM pg_constraint)
        """,
        (list(TABLES),),
    )
    return cursor.fetchall()


def create_schema(uri: str) -> None:
    """Replace the database's tables with the schema the migrations build."""
    with tempfile.TemporaryDirectory() as scratch:
        app = bench_app(uri, ATTACHMENT_CACHE=scratch)
        with app.app_context():
            empty_database()
            upgrade()
            db.engine.dispose()


def index_for_search(uri: str) -> None:
    """Write every ticket's search document, as the services would have."""
    with tempfile.TemporaryDirectory() as scratch:
        app = bench_app(uri, ATTACHMENT_CACHE=scratch)
        with app.app_context():
            with db.engine.begin() as connection:
                search.rebuild_documents(connection)
            with db.engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                    db.text("VACUUM ANALYZE ticket")
                )
            db.engine.dispose()


def load(url: str, data: Dataset) -> dict[str, float]:
    """Copy every table in one transaction; indexes are rebuilt after the rows."""
    timings = {}
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '512MB'")
            indexes = secondary_indexes(cursor)
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')

            for table, rows in (
                ("customer", data.customers),
                ("staff", data.staff),
                ("ticket", data.tickets),
                ("message", data.messages),
                ("ticket_event", data.events),
                ("ticket_read", data.reads),
                ("outbox_message", data.outbox),
            ):
                started = time.monotonic()
                copy_rows(cursor, table, rows)
                timings[f"copy {table}"] = time.monotonic() - started

            started = time.monotonic()
            for _, definition in indexes:
                cursor.execute(definition)
            timings["indexes"] = time.monotonic() - started

            # Later inserts by the app must not collide with the copied ids.
            for table in (
                "staff",
                "ticket",
                "message",
                "ticket_event",
                "outbox_message",
            ):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT coalesce(max(id), 1) FROM {table}))"
                )

        connection.autocommit = True
        with connection.cursor() as cursor:
            started = time.monotonic()
            cursor.execute("VACUUM ANALYZE")
            timings["vacuum analyze"] = time.monotonic() - started
    finally:
        connection.close()
    return timings


def main() -> None:
    """Build the schema, generate the rows, copy them in, and print the times."""
    arguments = parse_arguments()
    logging.disable(logging.WARNING)
    uri = database_url(arguments.database_url, tempfile.gettempdir())
    if not uri.startswith("postgresql"):
        raise SystemExit("generate_data.py loads PostgreSQL only (COPY).")
    plain_url = arguments.database_url.replace(
        "postgresql+psycopg2://", "postgresql://"
    )

    started = time.monotonic()
    create_schema(uri)
    schema_done = time.monotonic()

    data = Dataset(arguments)
    data.build()
    built = time.monotonic()

    timings = load(plain_url, data)
    loaded = time.monotonic()
    index_for_search(uri)
    finished = time.monotonic()
    timings["search documents"] = finished - loaded

    statuses = collections.Counter(row[4] for row in data.tickets)
    by_status = ", ".join(
        f"{name} {count:,}" for name, count in sorted(statuses.items())
    )
    print(
        f"{len(data.tickets):,} tickets ({by_status}),"
        f" {len(data.messages):,} messages, {len(data.customers):,} customers,"
        f" {len(data.staff)} staff"
    )
    print(
        f"{len(data.events):,} ticket events, {len(data.reads):,} read markers,"
        f" {len(data.outbox):,} outbox rows"
    )
    print(f"schema (migrations): {schema_done - started:.1f} s")
    print(f"rows built in Python: {built - schema_done:.1f} s")
    for step, seconds in timings.items():
        print(f"{step}: {seconds:.1f} s")
    print(f"total: {finished - started:.1f} s")


if __name__ == "__main__":
    main()
