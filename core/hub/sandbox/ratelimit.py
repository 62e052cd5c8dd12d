"""Rate limits for sandboxes: sliding windows, token buckets with burst and calendar-day quotas, per key.

A :class:`Limits` checks every rule of a key before counting the request in any of them, so a request refused by
the daily quota does not use up the per-second window. What a refusal looks like on the wire (the platform's 429
body and headers) is the sandbox's: it gets a :class:`Throttled` naming the rule and the seconds to wait.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["DailyQuota", "Limits", "Rule", "Throttled", "TokenBucket", "Window"]


class Rule(Protocol):
    name: str
    """What the sandbox's 429 body says about it (Bling: ``second`` or ``day``; Amazon: the operation)."""

    def wait(self, now: float) -> float | None:
        """None when a request may go now, else the seconds until one may."""

    def hit(self, now: float) -> None:
        """Count a request that went."""

    def reset(self) -> None: ...


@dataclass
class Window:
    """At most ``limit`` requests in any ``seconds`` (sliding); ``limit`` None: no limit."""

    limit: float | None
    seconds: float = 1.0
    name: str = "second"
    hits: deque[float] = field(default_factory=deque)

    def wait(self, now: float) -> float | None:
        if self.limit is None:
            return None
        while self.hits and self.hits[0] <= now - self.seconds:
            self.hits.popleft()
        if len(self.hits) >= self.limit:
            return max(0.0, self.hits[0] + self.seconds - now) if self.hits else self.seconds
        return None

    def hit(self, now: float) -> None:
        if self.limit is not None:
            self.hits.append(now)

    def reset(self) -> None:
        self.hits.clear()


@dataclass
class TokenBucket:
    """``rate`` requests a second on average, up to ``burst`` at once (default: one second's worth)."""

    rate: float | None
    burst: float | None = None
    name: str = "second"
    tokens: float | None = None
    stamp: float = 0.0

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else self.rate or 0)

    def _refill(self, now: float) -> float:
        assert self.rate is not None
        if self.tokens is None:
            self.tokens, self.stamp = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def wait(self, now: float) -> float | None:
        if self.rate is None:
            return None
        tokens = self._refill(now)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def hit(self, now: float) -> None:
        if self.rate is not None:
            self._refill(now)
            assert self.tokens is not None
            self.tokens -= 1.0

    def reset(self) -> None:
        self.tokens = None


@dataclass
class DailyQuota:
    """At most ``limit`` requests per calendar day, the day as ``today()`` tells it (the platform's local day)."""

    limit: int | None
    today: Callable[[], str]
    name: str = "day"
    day: str = ""
    count: int = 0

    def _roll(self) -> None:
        day = self.today()
        if day != self.day:
            self.day, self.count = day, 0

    def wait(self, now: float) -> float | None:
        self._roll()
        if self.limit is not None and self.count >= self.limit:
            return 86400.0
        return None

    def hit(self, now: float) -> None:
        self._roll()
        self.count += 1

    def reset(self) -> None:
        self.count = 0


@dataclass(frozen=True)
class Throttled:
    """A refused request: which rule refused it and how long to wait (``retry_after`` rounds it up, at least 1)."""

    rule: Rule
    wait: float

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait - 1e-9))


class Limits:
    """The rules of each key (an account, an operation), made on first use by ``rules(key)``."""

    def __init__(self, rules: Callable[[Hashable], Sequence[Rule]]) -> None:
        self._make = rules
        self._rules: dict[Hashable, Sequence[Rule]] = {}
        self.throttled = 0

    def rules(self, key: Hashable = None) -> Sequence[Rule]:
        found = self._rules.get(key)
        if found is None:
            found = self._rules[key] = self._make(key)
        return found

    def take(self, now: float, key: Hashable = None) -> Throttled | None:
        """Count one request against every rule of ``key``; the first refusal instead (nothing counted then)."""
        rules = self.rules(key)
        for rule in rules:
            wait = rule.wait(now)
            if wait is not None:
                self.throttled += 1
                return Throttled(rule, wait)
        for rule in rules:
            rule.hit(now)
        return None

    def reset(self) -> None:
        """Forget every key's rules (the next request makes them anew, e.g. after a limit changed)."""
        self._rules.clear()
