"""The bot's overall sending rate and Telegram's bot-wide pauses.

Per-chat pacing needs no shared state of its own: a chat's rows go one at a
time, so the sent rows in the database tell when its next one may go. The
overall rate and a pause for every chat are shared by all senders: in Redis
when ``REDIS_URL`` is set, so that several worker processes keep to one budget,
and otherwise in this process only. While Redis is unreachable each process
keeps to the budget on its own, so that messages still go.
"""

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

from redis import RedisError

from .settings import Rate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """Whether a call may go now; if not, how long to wait and why."""

    wait: float
    paused: bool = False

    @property
    def granted(self) -> bool:
        return self.wait <= 0


class LocalThrottle:
    """Keep to the overall rate and to bot-wide pauses within this process."""

    def __init__(self, rate: Rate):
        self.rate = rate
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._chat_pauses: dict[int, float] = {}

    def reserve(self) -> Verdict:
        """Take a slot for one call now, or say how long until one is free."""
        with self._lock:
            now = time.monotonic()
            if self._paused_until > now:
                return Verdict(self._paused_until - now, paused=True)

            while self._sent and self._sent[0] <= now - self.rate.seconds:
                self._sent.popleft()
            if len(self._sent) < self.rate.count:
                self._sent.append(now)
                return Verdict(0.0)
            return Verdict(self._sent[0] + self.rate.seconds - now)

    def rate_limited(self, chat_id: int, retry_after: float) -> bool:
        """Note a 429 for ``chat_id``; return True when it now pauses every chat.

        Telegram does not say whether a 429 is about one chat or the whole bot.
        When a second chat is limited while another chat's pause still runs,
        the limit is the bot's, and every chat waits ``retry_after``.
        """
        with self._lock:
            now = time.monotonic()
            until = now + retry_after
            self._chat_pauses = {
                chat: end for chat, end in self._chat_pauses.items() if end > now
            }
            others = set(self._chat_pauses) - {chat_id}
            self._chat_pauses[chat_id] = until
            if not others:
                return False
            self._paused_until = max(self._paused_until, until)
            return True


# Both scripts read the clock of the Redis server, the one clock every worker
# process shares, in milliseconds.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local count, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
    return {paused - now, 1}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < count then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window + 1000)
    return {0, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {tonumber(oldest[2]) + window - now, 0}
"""

_RATE_LIMITED = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local retry = tonumber(ARGV[2])
local ends = now + retry
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local others = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    others = others - 1
end
redis.call('ZADD', KEYS[1], ends, ARGV[1])
if redis.call('PTTL', KEYS[1]) < retry + 1000 then
    redis.call('PEXPIRE', KEYS[1], retry + 1000)
end
if others == 0 then
    return 0
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if ends > paused then
    redis.call('SET', KEYS[2], ends, 'PX', retry + 1000)
end
return 1
"""


class RedisThrottle:
    """Keep to the overall rate and to bot-wide pauses across processes, in Redis."""

    def __init__(self, rate: Rate, redis, prefix: str):
        self.rate = rate
        self._sent_key = f"{prefix}:sent"
        self._pause_key = f"{prefix}:paused"
        self._chat_pauses_key = f"{prefix}:chat-pauses"
        self._reserve = redis.register_script(_RESERVE)
        self._rate_limited = redis.register_script(_RATE_LIMITED)
        self._local = LocalThrottle(rate)
        self._unreachable = False

    def reserve(self) -> Verdict:
        """Take a slot for one call now, or say how long until one is free."""
        try:
            wait, paused = self._reserve(
                keys=[self._sent_key, self._pause_key],
                args=[self.rate.count, int(self.rate.seconds * 1000), uuid.uuid4().hex],
            )
        except RedisError as error:
            self._note_unreachable(error)
            return self._local.reserve()
        self._note_reachable()
        return Verdict(int(wait) / 1000, paused=bool(paused))

    def rate_limited(self, chat_id: int, retry_after: float) -> bool:
        """Note a 429 for ``chat_id``; return True when it now pauses every chat."""
        try:
            applies_to_all = self._rate_limited(
                keys=[self._chat_pauses_key, self._pause_key],
                args=[chat_id, int(retry_after * 1000)],
            )
        except RedisError as error:
            self._note_unreachable(error)
            return self._local.rate_limited(chat_id, retry_after)
        self._note_reachable()
        return bool(applies_to_all)

    def _note_unreachable(self, error: Exception) -> None:
        if not self._unreachable:
            self._unreachable = True
            logger.warning(
                "outbox rates kept in this process only, Redis is unreachable: %s",
                error,
            )

    def _note_reachable(self) -> None:
        if self._unreachable:
            self._unreachable = False
            logger.info("outbox rates shared through Redis again")
