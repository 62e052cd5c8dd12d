"""Request budgets shared by every worker: a per-account pace (requests per second) and a daily quota.

Platforms limit an *account*, not a process (Bling: 3 requests/s and 120,000/day for the whole account), so the
budget must be shared by every thread and every ``hub run`` process. With ``HUB_REDIS_URL`` set it lives in Redis;
otherwise in this process (the embedded default runs one process).

The pace is a GCRA reservation (the generic cell rate algorithm, a token bucket kept as one timestamp per key): each
call reserves the next free slot ``1/per_second`` after the previous one and sleeps until it. With the default
``burst=1`` requests never burst, and a sliding one-second window on the server never sees more than ``per_second``
of them. A platform with usage plans (Amazon's SP-API: ``searchOrders`` 0.0056/s with a burst of 20) passes its
``burst``: that many calls go at once after an idle spell, and the next waits ``1/per_second``.

Priority. Calls of one budget come in two classes: :data:`URGENT` (sales, cancellations, status actions, invoices:
a POS sale must reach the ERP while a catalog sync runs; also the default, so a caller that says nothing is paced
as before) and :data:`BULK` (catalog pages, product writes, bulk stock and prices). The two share one timestamp per
key (the next free slot) and one counter (urgent slots booked since the last bulk one), updated atomically (a Lua
script in Redis, a lock in this process), so the classes meet across every ``hub run`` process:

* an urgent call books the next free slot, however far ahead, as before;
* a bulk call books a slot only when the budget is free within :data:`BULK_HORIZON` of an interval (nobody is
  queued ahead of it) or when the last ``BULK_SHARE - 1`` booked slots all went to urgent calls; otherwise it books
  nothing and asks again when the queue ahead would have drained (after at most ``BULK_SHARE`` intervals). Bulk
  work therefore never holds slots ahead of urgent work (an urgent call waits for at most one bulk slot already
  booked, plus the bulk share), even when the urgent work is one thread making one call after another; and bulk
  never starves: while urgent work keeps the budget busy, a waiting bulk call gets one slot in every
  :data:`BULK_SHARE` booked.

The outbox's side of the same rule (sales handed to workers before the catalog, tenants and routes in turn) is
:mod:`hub.sync.fairness` and the relay (:func:`hub.runner.service.relay_once`). ``HUB_BUDGET_PRIORITY=off`` turns
both off: every call and every operation first come, first served, as before (``hub bench priority`` compares).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from hub.errors import QuotaExhausted

__all__ = ["BULK", "BULK_HORIZON", "BULK_SHARE", "PROCESS_THROTTLE", "SEND_WINDOW", "URGENT", "LocalThrottle",
           "RedisThrottle", "SendWindow",
           "Throttle", "make_throttle", "next_midnight", "pace", "priority_enabled"]

URGENT = "urgent"
"""Sales, cancellations, status actions, invoices, and any call that names no class: served first."""
BULK = "bulk"
"""Catalog pulls and pushes, bulk stock and prices: served when no urgent call waits, and never starved."""
BULK_SHARE = 5
"""While urgent calls keep a budget busy, a waiting bulk call still gets one slot in this many."""
BULK_HORIZON = 0.25
"""A bulk call books a slot at most this fraction of an interval ahead (unless its share is due)."""


def priority_enabled() -> bool:
    """False with ``HUB_BUDGET_PRIORITY=off``: every call first come, first served."""
    return os.environ.get("HUB_BUDGET_PRIORITY", "on").lower() not in ("off", "0", "false", "no")


class Throttle(Protocol):
    def reserve(self, key: str, interval: float, burst: int = 1) -> float:
        """Reserve the next slot for ``key``; return how many seconds to wait for it. Throttles with a
        ``prioritized = True`` attribute also take ``priority=`` (:data:`URGENT` or :data:`BULK`); a bulk call
        they refuse returns minus the seconds to wait before asking again (see the module doc)."""

    def count(self, key: str, period_key: str, ttl_seconds: int) -> int:
        """Add one to the counter of ``key`` for the period; return the new count."""

    def lock(self, key: str, timeout: float = 60.0) -> AbstractContextManager[Any]:
        """A lock on ``key`` held by one worker at a time (e.g. find-or-create of one customer)."""


class LocalThrottle:
    """The budget of one process (no Redis configured)."""

    prioritized = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._streak: dict[str, int] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._locks: dict[str, threading.Lock] = {}

    def reserve(self, key: str, interval: float, burst: int = 1, priority: str = URGENT) -> float:
        with self._lock:
            now = time.monotonic()
            ahead = (burst - 1) * interval
            slot = max(self._next.get(key, now), now)
            streak = self._streak.get(key, 0)
            if priority == BULK:
                if slot - ahead - now > interval * BULK_HORIZON and streak < BULK_SHARE - 1:
                    return -_retry_after(slot - ahead - interval * BULK_HORIZON - now, interval)
                self._streak[key] = 0
            else:
                self._streak[key] = streak + 1
            self._next[key] = slot + interval
        return max(0.0, slot - ahead - now)

    def lock(self, key: str, timeout: float = 60.0) -> AbstractContextManager[Any]:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def reset(self) -> None:
        """Forget every booked slot and counter, as a new process starts (a test's platforms are new accounts)."""
        with self._lock:
            self._next.clear()
            self._streak.clear()
            self._counts.clear()

    def count(self, key: str, period_key: str, ttl_seconds: int) -> int:
        with self._lock:
            for old in [k for k in self._counts if k[0] == key and k[1] != period_key]:
                del self._counts[old]
            n = self._counts.get((key, period_key), 0) + 1
            self._counts[(key, period_key)] = n
            return n


def _retry_after(until_open: float, interval: float) -> float:
    """When a refused bulk call asks again: once the queue ahead would have drained, at most BULK_SHARE
    intervals later."""
    return min(max(until_open, interval / 4, 0.001), BULK_SHARE * interval)


_RESERVE = """
-- KEYS[1]: the next free slot (seconds, Redis clock); KEYS[2]: urgent slots booked since the last bulk one.
-- ARGV: interval, burst, class ('urgent' | 'bulk'), BULK_SHARE, BULK_HORIZON. Returns the wait, or minus the retry
-- delay of a bulk call that booked nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local ahead = (tonumber(ARGV[2]) - 1) * interval
local share = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5]) * interval
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local streak = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[3] == 'bulk' then
  if slot - ahead - now > horizon and streak < share - 1 then
    local retry = slot - ahead - horizon - now
    if retry < interval / 4 then retry = interval / 4 end
    if retry < 0.001 then retry = 0.001 end
    if retry > share * interval then retry = share * interval end
    return string.format('%.6f', -retry)
  end
  streak = 0
else
  streak = streak + 1
end
local nxt = slot + interval
local ttl = math.ceil((nxt - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', ttl)
redis.call('SET', KEYS[2], streak, 'PX', ttl + 60000)
local wait = slot - ahead - now
if wait < 0 then wait = 0 end
return string.format('%.6f', wait)
"""


class RedisThrottle:
    """The budget shared through Redis by every process; the clock is Redis's own (``TIME``)."""

    prioritized = True

    def __init__(self, url: str, namespace: str = "hub:budget") -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url)
        self._reserve = self._redis.register_script(_RESERVE)
        self._ns = namespace

    def reserve(self, key: str, interval: float, burst: int = 1, priority: str = URGENT) -> float:
        return float(self._reserve(keys=[f"{self._ns}:pace:{key}", f"{self._ns}:streak:{key}"],
                                   args=[interval, burst, priority, BULK_SHARE, BULK_HORIZON]))

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


class SendWindow:
    """The moments this process actually sent each key's last calls, checked right before the next one goes.

    The budget hands out slots ahead of time; a thread that wakes late for its slot (a busy host) sends late, and
    the calls reserved after it still go on time, so a platform that counts a sliding window (Bling: 3 in any
    second) can see one too many. Here the ``limit``-th previous send must be ``seconds`` old before another goes.
    Per process: across processes, the budget's slack is what absorbs a late send."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str, limit: int, seconds: float, sleep: Any = time.sleep) -> float:
        """Wait until a call on ``key`` keeps the window, record it as sent now; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                sent = self._sent.get(key)
                if sent is None or sent.maxlen != limit:
                    sent = self._sent[key] = deque(maxlen=max(1, limit))
                now = time.monotonic()
                if len(sent) < (sent.maxlen or 1) or now - sent[0] >= seconds:
                    sent.append(now)
                    return waited
                pause = sent[0] + seconds - now
            sleep(pause)
            waited += pause


SEND_WINDOW = SendWindow()
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
         day_tz: str = "UTC", sleep: Any = time.sleep, priority: str = URGENT) -> float:
    """Wait for ``key``'s next slot (``burst`` calls may go at once; a :data:`BULK` call yields to urgent ones,
    see the module doc); raise QuotaExhausted once ``per_day`` requests were made today. Returns the seconds
    waited."""
    if per_day is not None:
        today = datetime.now(ZoneInfo(day_tz)).strftime("%Y%m%d")
        if throttle.count(key, today, 2 * 86400) > per_day:
            raise QuotaExhausted(
                f"{key}: the daily budget of {per_day} requests is spent",
                until=next_midnight(day_tz),
                fix="Nothing to do: the hub resumes at midnight (platform time). Lower the sync frequency if this "
                    "happens every day.")
    waited = 0.0
    if per_second <= 0:
        wait = 0.0
    elif priority == BULK and getattr(throttle, "prioritized", False) and priority_enabled():
        wait = throttle.reserve(key, 1.0 / per_second, burst, priority=BULK)  # type: ignore[call-arg]
        while wait < 0:  # refused: urgent calls are queued; ask again later
            sleep(-wait)
            waited -= wait
            wait = throttle.reserve(key, 1.0 / per_second, burst, priority=BULK)  # type: ignore[call-arg]
    elif burst > 1:
        wait = throttle.reserve(key, 1.0 / per_second, burst)
    else:
        wait = throttle.reserve(key, 1.0 / per_second)  # throttles written before bursts take two arguments
    if wait > 0:
        sleep(wait)
    return waited + wait
