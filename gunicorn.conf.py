"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The gevent worker serves many slow clients per process. psycopg2 talks to
PostgreSQL in C, out of gevent's sight, so each worker makes it cooperative
right after the fork.
"""

import os
import shutil
import tempfile

# Socket.IO must use the worker's concurrency model.
os.environ.setdefault("SOCKETIO_ASYNC_MODE", "gevent")
# Every worker writes its metrics here, and /metrics adds them up.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(tempfile.gettempdir(), "supportbot-metrics"),
)

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# One worker per server: gunicorn hands each connection to any of its workers,
# and a Socket.IO client that polls must reach the same one every time. The
# gevent worker serves many clients; run more servers behind a sticky proxy.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gevent"
# Each open console or Mini App holds a connection: leave room for requests
# beside a thousand of them.
worker_connections = 2000
timeout = 30
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Nothing here uses gunicorn's control socket, whose one path per user would
# be shared by every server on the host.
control_socket_disable = True


def on_starting(server):
    # Counts left by an earlier run of the server would be added in.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


def post_worker_init(worker):
    import gc

    # What the loaded app holds lives as long as the worker. Frozen, it is
    # left out of the collector's full passes, which would otherwise walk it
    # all and hold up every request of the worker for tens of milliseconds.
    gc.freeze()
