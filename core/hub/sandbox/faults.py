"""The fault queue every sandbox shares: faults queued for the next requests, then faults drawn at random rates.

``hub sandbox PLATFORM --fault KIND=RATE`` and the chaos bench set the rates; tests queue exact faults with
:meth:`FaultQueue.inject`. A queued fault may be kept for one HTTP method (``POST``: time out a create after its
lookups went through).
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Mapping, Sequence

__all__ = ["FAULTS", "FaultQueue", "parse_rates"]

FAULTS = ("500", "timeout", "timeout-after-write", "slow", "429", "401", "repeat_page")
"""Faults every sandbox can play: ``timeout`` answers after the client's timeout, ``timeout-after-write`` serves the
request and answers too late, ``slow`` answers a little late, ``401`` revokes the live access tokens, and
``repeat_page`` answers the next list request with the page it sent last for the same listing."""


class FaultQueue:
    """Queued faults first (in order, those kept for another method skipped), then one draw at the set rates.

    Not thread-safe on its own: the sandbox calls it with its lock held.
    """

    def __init__(self, kinds: Sequence[str] = FAULTS, *, random_kinds: Sequence[str] | None = None) -> None:
        self.kinds = tuple(kinds)
        self.random_kinds = tuple(random_kinds) if random_kinds is not None else self.kinds
        self.queue: deque[tuple[str, str | None]] = deque()
        self.repeat_armed = 0
        """List requests still to be answered with the previous page."""
        self.rates: dict[str, float] = {}
        self.played: Counter[str] = Counter()
        """Faults the random rates picked, per kind (a chaos run reports them)."""
        self._rng = random.Random(0)

    def check(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown fault {kind!r} (known: {', '.join(self.kinds)})")

    def inject(self, kind: str, times: int = 1, *, method: str | None = None) -> None:
        """Fail the next ``times`` requests with ``kind`` (only requests with HTTP ``method`` when given)."""
        self.check(kind)
        if kind == "repeat_page":
            self.repeat_armed += times
        else:
            self.queue.extend([(kind, method.upper() if method else None)] * times)

    def set_rates(self, rates: Mapping[str, float], seed: int = 0) -> None:
        """Fail each request with ``kind`` at ``rates[kind]`` (0 to 1, adding up to at most 1), drawn from a
        generator seeded with ``seed``; an empty mapping stops it."""
        unknown = [k for k in rates if k not in self.random_kinds]
        total = sum(rates.values())
        if unknown or any(r < 0 for r in rates.values()) or total > 1 + 1e-9:
            raise ValueError(f"fault rates {dict(rates)}: each kind is one of {', '.join(self.random_kinds)} and "
                             "the rates go from 0 to 1, adding up to at most 1")
        self.rates = {k: float(r) for k, r in rates.items() if r > 0}
        self._rng = random.Random(seed)

    def set_rate(self, rate: float, kinds: Sequence[str], seed: int = 0) -> None:
        """Fail a random ``rate`` of the requests (0 stops it) with one of ``kinds``, equally likely."""
        unknown = [k for k in kinds if k not in self.random_kinds]
        if not 0 <= rate <= 1 or unknown or (rate and not kinds):
            raise ValueError(f"fault rate {rate} with kinds {tuple(kinds)}: the rate goes from 0 to 1 and the kinds "
                             f"are {', '.join(self.random_kinds)}")
        self.set_rates({k: rate / len(kinds) for k in kinds} if rate else {}, seed)

    def next(self, method: str | None = None) -> str | None:
        """The fault of the request being gated (``repeat_page`` drawn at random arms the next list request)."""
        for i, (kind, only) in enumerate(self.queue):
            if only is None or only == method:
                del self.queue[i]
                return kind
        total = sum(self.rates.values())
        if not total or self._rng.random() >= total:
            return None
        kinds = list(self.rates)
        weights = list(self.rates.values())
        kind = self._rng.choice(kinds) if len(set(weights)) == 1 else self._rng.choices(kinds, weights)[0]
        self.played[kind] += 1
        if kind == "repeat_page":
            self.repeat_armed += 1
            return None
        return kind

    def take_repeat(self) -> bool:
        """True (once per armed fault) when this list request must repeat the previous page."""
        if self.repeat_armed:
            self.repeat_armed -= 1
            return True
        return False


def parse_rates(specs: Sequence[str], kinds: Sequence[str]) -> dict[str, float]:
    """``["500=0.1", "timeout=0.05"]`` -> rates, refusing unknown kinds and rates outside 0..1 with the fix."""
    rates: dict[str, float] = {}
    for spec in specs:
        kind, sep, raw = spec.partition("=")
        if kind not in kinds:
            raise ValueError(f"--fault {spec}: unknown fault kind {kind!r}; known kinds: {', '.join(kinds)}")
        try:
            rate = float(raw) if sep else -1.0
        except ValueError:
            rate = -1.0
        if not 0 <= rate <= 1:
            raise ValueError(f"--fault {spec}: give KIND=RATE with a rate from 0 to 1, e.g. {kind}=0.1")
        rates[kind] = rate
    return rates
