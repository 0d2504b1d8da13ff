"""Prometheus counters of the outbox's calls, counted in the process that sends.

The queue's depth and age are read from the database at scrape time by
:mod:`supportbot.monitoring.metrics`, so that every process reports them alike.
"""

from prometheus_client import Counter

SENT = Counter("supportbot_outbox_sent", "Bot API calls that Telegram accepted.")
ERRORS = Counter(
    "supportbot_outbox_errors",
    "Bot API calls that did not succeed, retried or not, by reason.",
    ["reason"],
)
FAILED = Counter(
    "supportbot_outbox_failed_messages",
    "Outbox messages given up, by reason.",
    ["reason"],
)
