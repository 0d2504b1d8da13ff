"""Hold 1,000 staff sockets on one gevent worker: memory per socket, broadcast rate.

The server is the production one, ``gunicorn -c gunicorn.conf.py wsgi:app`` with
WEB_CONCURRENCY=1. Client processes sign in through the login form, read the
CSRF token from the console page and open ``/staff`` over the websocket
transport with it in the handshake, as ``static/console.js`` does. The worker's
memory is read before and after the sockets connect; then customer messages
posted to the webhook reach every socket through the ``queue`` room, and the
clients count what arrives.

    createdb -h 127.0.0.1 -U postgres supportbot_bench_sockets
    .venv/bin/python bench/sockets.py \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_sockets
    .venv/bin/python bench/sockets.py --worker-connections 1200 \\
        --database-url postgresql://postgres@127.0.0.1/supportbot_bench_sockets

The database must exist; its tables are replaced.
"""

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "sockets@example.com"
PASSWORD = "bench password 1"
WEBHOOK_SECRET = "bench-webhook-secret"
QUEUE_EVENTS = ("customer_message", "ticket_changed")
CLIENTS = {
    "frames": "Engine.IO frames on aiohttp websockets",
    "socketio": "python-socketio AsyncClient",
}


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL URL")
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument(
        "--messages", type=int, default=50, help="customer messages to broadcast"
    )
    parser.add_argument(
        "--posters", type=int, default=1, help="threads posting to the webhook"
    )
    parser.add_argument(
        "--worker-connections",
        type=int,
        help="passed to gunicorn over gunicorn.conf.py's worker_connections",
    )
    parser.add_argument(
        "--tabs-per-sign-in",
        type=int,
        default=10,
        help="console tabs, each its own socket, sharing one browser's session",
    )
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="frames",
        help="bare frames cost the clients less CPU than the full library",
    )
    parser.add_argument("--server-log", help="keep gunicorn's output in this file")
    parser.add_argument("--redis-url", help="REDIS_URL, to emit through the queue")
    return parser.parse_args()


def prepare_database(url: str) -> None:
    """Replace the tables with the migrated schema and one staff account."""
    from flask_migrate import upgrade

    from supportbot import staff as staff_service
    from supportbot.config import database_url
    from supportbot.extensions import db
    from supportbot.models import StaffRole

    from common import bench_app, empty_database

    with tempfile.TemporaryDirectory() as scratch:
        uri = database_url(url, scratch)
        app = bench_app(uri, ATTACHMENT_CACHE=scratch)
        with app.app_context():
            empty_database()
            upgrade()
            staff_service.create(EMAIL, "Socket Bench", StaffRole.AGENT, PASSWORD)
            db.session.commit()
            db.engine.dispose()


def free_port() -> int:
    """Return a TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(arguments, port: int, scratch: str) -> subprocess.Popen:
    """Start gunicorn with one gevent worker, in a process group of its own."""
    env = dict(
        os.environ,
        WEB_CONCURRENCY="1",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        DATABASE_URL=arguments.database_url,
        SECRET_KEY="bench-secret-key-" + "x" * 32,
        TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        OUTBOX_WORKER="off",
        LOG_TO_DATABASE="off",
        LOG_LEVEL="WARNING",
        REDIS_URL=arguments.redis_url or "",
        PROMETHEUS_MULTIPROC_DIR=os.path.join(scratch, "metrics"),
        LOGIN_RATE_LIMIT_PER_IP="100000/minute",
        LOGIN_RATE_LIMIT_PER_ACCOUNT="100000/minute",
    )
    env.pop("TELEGRAM_BOT_TOKEN", None)
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    if arguments.worker_connections:
        command += ["--worker-connections", str(arguments.worker_connections)]
    command.append("wsgi:app")
    log = open(arguments.server_log or os.path.join(scratch, "gunicorn.log"), "wb")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_worker(server: subprocess.Popen, base_url: str) -> psutil.Process:
    """Wait until the worker answers, and return it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("gunicorn exited; see its log above")
        try:
            if requests.get(f"{base_url}/healthz", timeout=2).ok:
                workers = psutil.Process(server.pid).children()
                if len(workers) == 1:
                    return workers[0]
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit("gunicorn did not answer within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    """Stop gunicorn and its worker, forcibly if they linger."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=25)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def rss_mib(process: psutil.Process) -> float:
    """Return the resident memory of ``process`` in MiB."""
    return process.memory_info().rss / 2**20


def token_of(page: str) -> str:
    """Read the CSRF token every page carries in its head."""
    return page.split('<meta name="csrf-token" content="')[1].split('"')[0]


async def sign_in(session, base_url: str, tabs: int) -> list[tuple[str, str]]:
    """Sign in through the form, then open the console in ``tabs`` tabs.

    Returns each tab's session cookie and CSRF token, as its page would hold.
    """
    async with session.get(f"{base_url}/login") as response:
        token = token_of(await response.text())
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    async with session.post(f"{base_url}/login", data=form) as response:
        if not str(response.url).endswith("/console/"):
            raise RuntimeError(f"sign-in failed with {response.status}")

    opened = []
    for _ in range(tabs):
        async with session.get(f"{base_url}/console/") as response:
            token = token_of(await response.text())
        cookie = session.cookie_jar.filter_cookies(base_url)["session"].value
        opened.append((cookie, token))
    return opened


class Tabs:
    """One client process's open sockets and the queue events they received."""

    def __init__(self):
        self.arrivals: dict[str, list] = {name: [] for name in QUEUE_EVENTS}
        self.closed = 0
        self.sockets: list = []

    def record(self, name: str, data) -> None:
        if name in self.arrivals:
            message_id = data.get("message_id") if isinstance(data, dict) else None
            self.arrivals[name].append((time.time(), message_id))

    async def open_library_socket(self, base_url: str, cookie: str, token: str):
        """Connect with python-socketio's client, over the websocket transport."""
        import socketio

        client = socketio.AsyncClient(reconnection=False)

        @client.on("*", namespace="/staff")
        async def any_event(name, data):
            self.record(name, data)

        @client.on("disconnect", namespace="/staff")
        async def gone(reason=None):
            self.closed += 1

        await client.connect(
            base_url,
            headers={"Cookie": f"session={cookie}"},
            auth={"csrf_token": token},
            namespaces=["/staff"],
            transports=["websocket"],
            wait_timeout=60,
        )
        self.sockets.append(client)

    async def open_frame_socket(self, http, base_url: str, cookie: str, token: str):
        """Speak Engine.IO 4 frames on a bare websocket, the same handshake."""
        url = (
            base_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        )
        socket = await http.ws_connect(url, headers={"Cookie": f"session={cookie}"})
        opening = await socket.receive_str()
        if not opening.startswith("0"):
            raise RuntimeError(f"no Engine.IO opening: {opening[:80]}")
        await socket.send_str("40/staff," + json.dumps({"csrf_token": token}))
        # The room is joined before the answer goes out, so a broadcast may
        # arrive first.
        while not (answer := await socket.receive_str()).startswith("40/staff,"):
            if not answer.startswith("42/staff,"):
                raise RuntimeError(f"namespace refused: {answer[:120]}")
            self._event(answer)
        self.sockets.append(socket)
        asyncio.create_task(self._listen(socket))

    def _event(self, frame: str) -> None:
        name, *rest = json.loads(frame[len("42/staff,") :])
        self.record(name, rest[0] if rest else None)

    async def _listen(self, socket) -> None:
        async for frame in socket:
            if not isinstance(frame.data, str):
                break
            if frame.data == "2":
                # The server's heartbeat; a socket that does not answer is closed.
                await socket.send_str("3")
            elif frame.data.startswith("42/staff,"):
                self._event(frame.data)
        self.closed += 1

    async def close(self) -> None:
        """Disconnect every socket."""
        await asyncio.gather(
            *(
                socket.disconnect() if hasattr(socket, "disconnect") else socket.close()
                for socket in self.sockets
            ),
            return_exceptions=True,
        )


async def run_clients(base_url: str, count: int, tabs: int, kind: str, pipe) -> None:
    """Sign browsers in for ``count`` tabs, connect them on command, count events."""
    import aiohttp

    loop = asyncio.get_running_loop()

    async def command() -> str:
        return await loop.run_in_executor(None, pipe.recv)

    limit = asyncio.Semaphore(4)

    async def signed_in_browser(tabs_here: int):
        # The jar keeps cookies of a host given by IP address only when unsafe.
        jar = aiohttp.CookieJar(unsafe=True)
        async with limit, aiohttp.ClientSession(cookie_jar=jar) as session:
            return await sign_in(session, base_url, tabs_here)

    shares = [min(tabs, count - start) for start in range(0, count, tabs)]
    browsers = await asyncio.gather(
        *(signed_in_browser(share) for share in shares), return_exceptions=True
    )
    failed = [b for b in browsers if isinstance(b, BaseException)]
    opened = [tab for b in browsers if not isinstance(b, BaseException) for tab in b]
    pipe.send(("signed_in", len(browsers) - len(failed), repr(failed[:1]), len(opened)))

    await command()
    state = Tabs()
    connect_limit = asyncio.Semaphore(25)
    # Sockets stay open for the whole run: no cap on the connector's pool.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def open_socket(cookie: str, token: str):
        async with connect_limit:
            if kind == "socketio":
                await state.open_library_socket(base_url, cookie, token)
            else:
                await state.open_frame_socket(http, base_url, cookie, token)

    results = await asyncio.gather(
        *(open_socket(*tab) for tab in opened), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    pipe.send(("connected", len(state.sockets), repr(failed[:1])))

    while (order := await command()) != "stop":
        if order == "count":
            pipe.send(
                {name: len(times) for name, times in state.arrivals.items()}
                | {"closed": state.closed}
            )
        elif order == "report":
            pipe.send(state.arrivals)

    await state.close()
    await http.close()
    pipe.send("stopped")


def client_process(base_url: str, count: int, tabs: int, kind: str, pipe) -> None:
    """Run one process's share of the browsers."""
    asyncio.run(run_clients(base_url, count, tabs, kind, pipe))


def update(number: int) -> dict:
    """Make a private message from a new customer, as Telegram would send it."""
    user = {"id": 500_000_000 + number, "is_bot": False, "first_name": f"Load{number}"}
    return {
        "update_id": 900_000_000 + number,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": user["id"], "type": "private", "first_name": "Load"},
            "from": user,
            "text": f"Hello, my order {number} has not arrived yet.",
        },
    }


def gather(pipes, order: str | None = None) -> list:
    """Send ``order`` to every client process and return their answers."""
    if order is not None:
        for pipe in pipes:
            pipe.send(order)
    return [pipe.recv() for pipe in pipes]


def stop_on_signal(number, frame) -> None:
    """Leave through the clean-up, once, however many times the signal comes."""
    # ``timeout`` and shells signal the whole process group, this process too.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(128 + number)


def main() -> None:
    """Connect the sockets, measure memory, broadcast, and print the figures."""
    arguments = parse_arguments()
    logging.disable(logging.WARNING)
    signal.signal(signal.SIGTERM, stop_on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * arguments.sockets + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    prepare_database(arguments.database_url)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    context = multiprocessing.get_context("spawn")
    processes, pipes = [], []
    with tempfile.TemporaryDirectory() as scratch:
        server = start_server(arguments, port, scratch)
        try:
            worker = wait_for_worker(server, base_url)
            if not measure(arguments, base_url, worker, context, processes, pipes):
                log = arguments.server_log or Path(scratch, "gunicorn.log")
                lines = Path(log).read_text().splitlines()
                print("gunicorn's last lines:", *lines[-8:], sep="\n  ")
        except BaseException:
            log = arguments.server_log or Path(scratch, "gunicorn.log")
            print(Path(log).read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            for pipe in pipes:
                try:
                    pipe.send("stop")
                except (BrokenPipeError, OSError):
                    pass
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.terminate()
                    process.join()
            stop_server(server)


def measure(arguments, base_url, worker, context, processes, pipes) -> bool:
    """Run the phases against a started server; tell whether the webhook answered."""
    shares = [
        arguments.sockets // arguments.processes
        + (1 if index < arguments.sockets % arguments.processes else 0)
        for index in range(arguments.processes)
    ]
    rss_started = rss_mib(worker)
    started = time.monotonic()
    for share in shares:
        ours, theirs = context.Pipe()
        process = context.Process(
            target=client_process,
            args=(
                base_url,
                share,
                arguments.tabs_per_sign_in,
                arguments.client,
                theirs,
            ),
        )
        process.start()
        processes.append(process)
        pipes.append(ours)
    answers = gather(pipes)
    signed_in = sum(answer[1] for answer in answers)
    tabs = sum(answer[3] for answer in answers)
    print(
        f"{signed_in} browsers signed in through the form and opened {tabs}"
        f" console tabs in {time.monotonic() - started:.1f} s"
        + "".join(f"; failed: {a[2]}" for a in answers if a[2] != "[]")
    )

    time.sleep(2)
    rss_before = rss_mib(worker)
    started = time.monotonic()
    answers = gather(pipes, "connect")
    connect_seconds = time.monotonic() - started
    connected = sum(answer[1] for answer in answers)
    print(
        f"{connected} sockets connected in {connect_seconds:.1f} s over the"
        f" websocket transport, client: {CLIENTS[arguments.client]}"
        + "".join(f"; failed: {a[2]}" for a in answers if a[2] != "[]")
    )
    time.sleep(5)
    rss_after = rss_mib(worker)
    print(
        f"worker RSS: {rss_started:.1f} MiB at start, {rss_before:.1f} MiB after"
        f" sign-ins, {rss_after:.1f} MiB with {connected} sockets"
    )
    if connected:
        per_socket = (rss_after - rss_before) * 1024 / connected
        print(f"memory per socket: {per_socket:.0f} KiB")

    clients = [psutil.Process(process.pid) for process in processes]
    return broadcast(arguments, base_url, pipes, connected, worker, clients)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """Add up the CPU time the processes have used."""
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def post_messages(base_url: str, arguments) -> tuple:
    """Post the customer messages from ``--posters`` threads, each in turn.

    Returns when each was sent and how long its answer took, by message
    number, or None when the webhook did not answer.
    """
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    sent_at = [0.0] * arguments.messages
    answer_times = [0.0] * arguments.messages
    numbers = iter(range(arguments.messages))
    lock = threading.Lock()
    timed_out = threading.Event()

    def poster() -> None:
        http = requests.Session()
        while not timed_out.is_set():
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            sent_at[number] = time.time()
            try:
                response = http.post(
                    f"{base_url}/telegram/webhook",
                    json=update(number),
                    headers=headers,
                    timeout=30,
                )
            except requests.Timeout:
                # gevent's pool holds worker_connections greenlets and each
                # open socket keeps one; a request past the last one waits.
                timed_out.set()
                return
            answer_times[number] = time.time() - sent_at[number]
            if not response.ok:
                raise SystemExit(f"webhook answered {response.status_code}")

    threads = [threading.Thread(target=poster) for _ in range(arguments.posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if timed_out.is_set():
        return None, None
    return sent_at, answer_times


def broadcast(arguments, base_url, pipes, connected, worker, clients) -> bool:
    """Post customer messages to the webhook and count deliveries at the clients."""
    cpu_before = cpu_seconds([worker]), cpu_seconds(clients)
    first_post = time.time()
    sent_at, answer_times = post_messages(base_url, arguments)
    if sent_at is None:
        print(f"the webhook did not answer within 30 s with {connected} sockets open")
        return False
    posted = time.time()

    expected = arguments.messages * connected
    # Wait for every delivery, or until none has come for ten seconds.
    got, progressed = -1, time.monotonic()
    while time.monotonic() - progressed < 10:
        counts = gather(pipes, "count")
        now_got = sum(count["customer_message"] for count in counts)
        if now_got >= expected:
            break
        if now_got > got:
            got, progressed = now_got, time.monotonic()
        time.sleep(0.5)
    cpu_after = cpu_seconds([worker]), cpu_seconds(clients)
    closed = sum(count["closed"] for count in counts)
    reports = gather(pipes, "report")

    arrivals = {
        name: [moment for report in reports for moment, _ in report[name]]
        for name in QUEUE_EVENTS
    }
    # Message ids rise with the posts on the fresh database: the n-th id
    # seen is the n-th message posted, when one thread posts them in turn.
    ids = sorted(
        {mid for report in reports for _, mid in report["customer_message"] if mid}
    )
    post_of = {}
    # Events of other apps on the same Redis would make the ids more.
    if arguments.posters == 1 and len(ids) == arguments.messages:
        post_of = {mid: sent_at[index] for index, mid in enumerate(ids)}
    latencies = sorted(
        (moment - post_of[mid]) * 1000
        for report in reports
        for moment, mid in report["customer_message"]
        if mid in post_of
    )
    every = sorted(arrivals["customer_message"] + arrivals["ticket_changed"])
    window = every[-1] - first_post if every else float("nan")
    worker_cpu = cpu_after[0] - cpu_before[0]
    client_cpu = cpu_after[1] - cpu_before[1]

    print(
        f"{arguments.messages} customer messages posted by {arguments.posters}"
        f" threads in {posted - first_post:.2f} s,"
        f" webhook answer p50 {statistics.median(answer_times) * 1000:.0f} ms,"
        f" max {max(answer_times) * 1000:.0f} ms"
    )
    got = len(arrivals["customer_message"])
    print(
        f"customer_message deliveries: {got} of {expected};"
        f" ticket_changed deliveries: {len(arrivals['ticket_changed'])}"
    )
    print(
        f"queue-room deliveries: {len(every)} in {window:.2f} s ="
        f" {len(every) / window:,.0f} deliveries/s;"
        f" customer_message alone {got / window:,.0f}/s"
    )
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(
            f"post to socket latency: p50 {statistics.median(latencies):.0f} ms,"
            f" p99 {p99:.0f} ms"
        )
    print(
        f"CPU during the broadcast: worker {worker_cpu:.2f} s"
        f" ({worker_cpu / max(len(every), 1) * 1e6:.0f} µs per delivery),"
        f" clients {client_cpu:.2f} s, over {window:.2f} s;"
        f" sockets closed meanwhile: {closed}"
    )

    return True


if __name__ == "__main__":
    main()
