"""Request budgets shared by every worker: a per-account pace (requests per second) and a daily quota.

Platforms limit an *account*, not a process (Bling: 3 requests/s and 120,000/day for the whole account), so the
budget must be shared by every thread and every ``hub run`` process. With ``HUB_REDIS_URL`` set it lives in Redis;
otherwise in this process (the embedded default runs one process).

The pace is a GCRA reservation (the generic cell rate algorithm, a token bucket kept as one timestamp per key): each
call reserves the next free slot ``1/per_second`` after the previous one and sleeps until it. With the default
``burst=1`` requests never burst, and a sliding one-second window on the server never sees more than ``per_second``
of them. A platform with usage plans (Amazon's SP-API: ``searchOrders`` 0.0056/s with a burst of 20) passes its
``burst``: that many calls go at once after an idle spell, and the next waits ``1/per_second``.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from hub.errors import QuotaExhausted

__all__ = ["PROCESS_THROTTLE", "LocalThrottle", "RedisThrottle", "Throttle", "make_throttle", "next_midnight",
           "pace"]


class Throttle(Protocol):
    def reserve(self, key: str, interval: float, burst: int = 1) -> float:
        """Reserve the next slot for ``key``; return how many seconds to wait for it."""

    def count(self, key: str, period_key: str, ttl_seconds: int) -> int:
        """Add one to the counter of ``key`` for the period; return the new count."""

    def lock(self, key: str, timeout: float = 60.0) -> AbstractContextManager[Any]:
        """A lock on ``key`` held by one worker at a time (e.g. find-or-create of one customer)."""


class LocalThrottle:
    """The budget of one process (no Redis configured)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._locks: dict[str, threading.Lock] = {}

    def reserve(self, key: str, interval: float, burst: int = 1) -> float:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next.get(key, now), now)
            self._next[key] = slot + interval
        return max(0.0, slot - (burst - 1) * interval - now)

    def lock(self, key: str, timeout: float = 60.0) -> AbstractContextManager[Any]:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def count(self, key: str, period_key: str, ttl_seconds: int) -> int:
        with self._lock:
            for old in [k for k in self._counts if k[0] == key and k[1] != period_key]:
                del self._counts[old]
            n = self._counts.get((key, period_key), 0) + 1
            self._counts[(key, period_key)] = n
            return n


_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local nxt = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
local wait = slot - (tonumber(ARGV[2]) - 1) * tonumber(ARGV[1]) - now
if wait < 0 then wait = 0 end
return string.format('%.6f', wait)
"""


class RedisThrottle:
    """The budget shared through Redis by every process; the clock is Redis's own (``TIME``)."""

    def __init__(self, url: str, namespace: str = "hub:budget") -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url)
        self._reserve = self._redis.register_script(_RESERVE)
        self._ns = namespace

    def reserve(self, key: str, interval: float, burst: int = 1) -> float:
        return float(self._reserve(keys=[f"{self._ns}:pace:{key}"], args=[interval, burst]))

    def lock(self, key: str, timeout: float = 60.0) -> AbstractContextManager[Any]:
        lock: AbstractContextManager[Any] = self._redis.lock(f"{self._ns}:lock:{key}", timeout=timeout,
                                                             blocking_timeout=timeout)
        return lock

    def count(self, key: str, period_key: str, ttl_seconds: int) -> int:
        name = f"{self._ns}:count:{key}:{period_key}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, ttl_seconds)
        n, _ = pipe.execute()
        return int(n)


PROCESS_THROTTLE = LocalThrottle()
"""The in-process budget every context shares when no Redis is configured."""


def make_throttle(redis_url: str | None) -> Throttle:
    return RedisThrottle(redis_url) if redis_url else PROCESS_THROTTLE


def next_midnight(tz: str, now: datetime | None = None) -> datetime:
    """The next 00:00 in ``tz``, as naive UTC (what the store keeps)."""
    zone = ZoneInfo(tz)
    local = (now or datetime.now(UTC)).astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return midnight.astimezone(UTC).replace(tzinfo=None)


def pace(throttle: Throttle, key: str, per_second: float, *, burst: int = 1, per_day: int | None = None,
         day_tz: str = "UTC", sleep: Any = time.sleep) -> float:
    """Wait for ``key``'s next slot (``burst`` calls may go at once); raise QuotaExhausted once ``per_day``
    requests were made today. Returns the seconds waited."""
    if per_day is not None:
        today = datetime.now(ZoneInfo(day_tz)).strftime("%Y%m%d")
        if throttle.count(key, today, 2 * 86400) > per_day:
            raise QuotaExhausted(
                f"{key}: the daily budget of {per_day} requests is spent",
                until=next_midnight(day_tz),
                fix="Nothing to do: the hub resumes at midnight (platform time). Lower the sync frequency if this "
                    "happens every day.")
    if per_second <= 0:
        wait = 0.0
    elif burst > 1:
        wait = throttle.reserve(key, 1.0 / per_second, burst)
    else:
        wait = throttle.reserve(key, 1.0 / per_second)  # throttles written before bursts take two arguments
    if wait > 0:
        sleep(wait)
    return wait
