"""Time the console's queue and ticket pages and count the SQL each one runs.

Pages are rendered through the Flask test client, signed in through the login
form as an agent, so the times are the server's: routing, session, queries and
templates, without the network. Queries are counted for each render; with a
second, smaller database the counts are compared, and they must not grow with
the data.

    .venv/bin/python bench/generate_data.py \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_scale
    .venv/bin/python bench/generate_data.py --tickets 1000 --messages 10000 \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_small
    .venv/bin/python bench/console_pages.py \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_scale \\
        --small-database-url postgresql://postgres@127.0.0.1/supportbot_bench_small
    .venv/bin/python bench/console_pages.py --explain \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_scale

Both databases come from ``generate_data.py``; the run reads them and adds
only the read markers that opening a ticket stores.
"""

import argparse
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sqlalchemy import event, text

from supportbot.config import database_url
from supportbot.extensions import db

from common import bench_app

TARGET_MS = 50.0
EMAIL = "bench@example.com"
PASSWORD = "bench password 1"


@dataclass
class Render:
    """What one page render cost: its time and each query it ran."""

    seconds: float
    queries: list = field(default_factory=list)


class QueryLog:
    """Record every statement the engine sends, with how long it took."""

    def __init__(self, engine):
        self.queries: list[tuple[float, str, object]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, connection, cursor, statement, parameters, context, many):
        connection.info["bench.started"] = time.perf_counter()

    def _after(self, connection, cursor, statement, parameters, context, many):
        elapsed = time.perf_counter() - connection.info.pop("bench.started")
        self.queries.append((elapsed, statement, parameters))

    def take(self) -> list:
        """Return the queries since the last call and start a new list."""
        taken, self.queries = self.queries, []
        return taken


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="the full-size data")
    parser.add_argument(
        "--small-database-url", help="the same shape of data, much smaller"
    )
    parser.add_argument("--repeat", type=int, default=50, help="renders per page")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print EXPLAIN ANALYZE of the slowest query of each page over target",
    )
    return parser.parse_args()


def make_app(url: str, scratch: str):
    """Build the app on ``url`` with no background work and no logging to it."""
    uri = database_url(url, scratch)
    return bench_app(
        uri,
        # Handler threads looking for updates would run statements mid-render.
        TELEGRAM_HANDLERS=0,
        RATELIMIT_STORAGE_URI="memory://",
        ATTACHMENT_CACHE=scratch,
        UPLOAD_FOLDER=scratch,
    )


def sign_in(client) -> None:
    """Sign in through the login form, as a browser would."""
    page = client.get("/login").get_data(as_text=True)
    token = page.split('<meta name="csrf-token" content="')[1].split('"')[0]
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    )
    if response.status_code != 302:
        raise SystemExit(f"Sign-in as {EMAIL} failed: is the data generated?")


def pick_search_word(app) -> str:
    """Find a made-up word that only a few dozen messages hold."""
    with app.app_context():
        return db.session.scalar(
            text(
                "SELECT word FROM ts_stat($$SELECT to_tsvector('simple', text)"
                " FROM message WHERE id % 50 = 0$$)"
                " WHERE ndoc = 1 AND length(word) > 7 ORDER BY word LIMIT 1"
            )
        )


def data_size(app) -> tuple[int, int]:
    """Count the tickets and messages in the app's database."""
    with app.app_context():
        return tuple(
            db.session.execute(
                text(
                    "SELECT (SELECT count(*) FROM ticket),"
                    " (SELECT count(*) FROM message)"
                )
            ).one()
        )


def pages_of(app, rare_word: str) -> list[tuple[str, str]]:
    """Name the pages to render on this database, with their URLs."""
    with app.app_context():
        longest, length = db.session.execute(
            text(
                "SELECT ticket_id, count(*) FROM message GROUP BY ticket_id"
                " ORDER BY count(*) DESC, ticket_id LIMIT 1"
            )
        ).one()
        typical = db.session.scalar(
            text(
                "SELECT ticket_id FROM message GROUP BY ticket_id"
                " HAVING count(*) = 10 ORDER BY ticket_id LIMIT 1"
            )
        )
        closed_pages = db.session.scalar(
            text("SELECT count(*) / 50 FROM ticket WHERE status = 'closed'")
        )

    def queue(**args) -> str:
        return "/console/?" + urlencode(args)

    deep = max(2, min(100, closed_pages))
    return [
        ("queue open", queue(status="open")),
        ("queue open, page 3", queue(status="open", page=3)),
        ("queue open, mine", queue(status="open", scope="mine")),
        (
            "queue open, unassigned, p2",
            queue(status="open", scope="unassigned", page=2),
        ),
        ("queue pending, page 2", queue(status="pending", page=2)),
        ("queue closed", queue(status="closed")),
        (f"queue closed, page {deep}", queue(status="closed", page=deep)),
        ("search open 'refund'", queue(status="open", q="refund")),
        ("search closed 'refund', p2", queue(status="closed", q="refund", page=2)),
        (f"search closed '{rare_word}'", queue(status="closed", q=rare_word)),
        ("search open 'Nadia'", queue(status="open", q="Nadia")),
        ("search closed '#4242'", queue(status="closed", q="#4242")),
        ("unread count", "/console/unread"),
        ("ticket, 10 messages", f"/console/tickets/{typical}"),
        (f"ticket, {length} messages", f"/console/tickets/{longest}"),
    ]


def render(client, log: QueryLog, url: str) -> Render:
    """Fetch ``url`` once and note its time and queries."""
    log.take()
    started = time.perf_counter()
    response = client.get(url)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    return Render(seconds, log.take())


def percentile(values: list[float], share: float) -> float:
    """Return the value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def explain(app, statement: str, parameters) -> str:
    """Run EXPLAIN ANALYZE on one statement the page ran."""
    with app.app_context():
        rows = db.session.connection().exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
        )
        plan = "\n".join(row[0] for row in rows)
        db.session.rollback()
    return plan


class Site:
    """One database's app, a signed-in client and the pages to render on it."""

    def __init__(self, url: str, scratch: str, rare_word: str | None = None):
        self.app = make_app(url, scratch)
        self.rare_word = rare_word or pick_search_word(self.app)
        self.size = data_size(self.app)
        self.pages = pages_of(self.app, self.rare_word)
        self.client = self.app.test_client()
        with self.app.app_context():
            self.log = QueryLog(db.engine)
        sign_in(self.client)
        self.renders: list[list[Render]] = [[] for _ in self.pages]

    def warm_up(self) -> None:
        """Render each page a few times, untimed, to fill caches and pools."""
        for _, url in self.pages:
            for _ in range(3):
                render(self.client, self.log, url)

    def turn(self) -> None:
        """Render every page once and keep the results."""
        for (_, url), runs in zip(self.pages, self.renders, strict=True):
            runs.append(render(self.client, self.log, url))


def p50(runs: list[Render]) -> float:
    """Return the median render time in milliseconds."""
    return statistics.median(run.seconds * 1000 for run in runs)


def main() -> None:
    """Render each page many times and print percentiles and query counts."""
    arguments = parse_arguments()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        full = Site(arguments.database_url, scratch)
        sites = [full]
        if arguments.small_database_url:
            sites.append(Site(arguments.small_database_url, scratch, full.rare_word))
        for site in sites:
            site.warm_up()
        # Both sizes and all pages take turns, so that load from other work on
        # the machine falls on each of them alike.
        for _ in range(arguments.repeat):
            for site in sites:
                site.turn()

        print(
            f"full data: {full.size[0]:,} tickets, {full.size[1]:,} messages;"
            f" {arguments.repeat} renders per page after 3 warm-up renders"
        )
        small = sites[1] if len(sites) > 1 else None
        if small:
            print(f"small data: {small.size[0]:,} tickets, {small.size[1]:,} messages")
        print(
            f"{'page':30} {'p50 ms':>7} {'p99 ms':>7} {'SQL ms':>7} {'queries':>7}"
            f" {'small p50':>9} {'queries':>7}"
        )
        slow = []
        same = True
        for index, (name, _) in enumerate(full.pages):
            runs = full.renders[index]
            times = [run.seconds * 1000 for run in runs]
            sql = statistics.median(
                sum(query[0] for query in run.queries) * 1000 for run in runs
            )
            counts = sorted({len(run.queries) for run in runs})
            line = (
                f"{name:30} {p50(runs):7.1f} {percentile(times, 0.99):7.1f}"
                f" {sql:7.1f} {'/'.join(map(str, counts)):>7}"
            )
            if small:
                small_runs = small.renders[index]
                small_counts = sorted({len(run.queries) for run in small_runs})
                same = same and small_counts == counts
                line += f" {p50(small_runs):9.1f} {'/'.join(map(str, small_counts)):>7}"
            print(line)
            if p50(runs) > TARGET_MS:
                slow.append((name, runs[-1]))

        over = ", ".join(name for name, _ in slow) or "none"
        print(f"target: p50 <= {TARGET_MS:.0f} ms; pages over it: {over}")
        if small:
            print(f"query counts equal at both sizes: {'yes' if same else 'NO'}")

        if arguments.explain:
            for name, run in slow:
                elapsed, statement, parameters = max(run.queries, key=lambda q: q[0])
                if elapsed < run.seconds / 2:
                    print(
                        f"\n== {name}: SQL is not where the time goes; slowest"
                        f" query {elapsed * 1000:.1f} ms of {run.seconds * 1000:.0f} ms"
                    )
                    continue
                print(f"\n== {name}: slowest query, {elapsed * 1000:.1f} ms ==")
                print(" ".join(statement.split())[:600])
                print(explain(full.app, statement, parameters))


if __name__ == "__main__":
    main()
