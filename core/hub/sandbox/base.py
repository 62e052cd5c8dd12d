"""What every sandbox shares: its declared settings, the lock, request counters, the fault queue and summary().

A platform's sandbox subclasses :class:`SandboxBase` and declares its settings model (a :class:`SandboxSettings`
subclass with the platform's defaults). Its factory takes those settings as keyword arguments, validated by the
model: an unknown or mistyped setting is refused with the list of known ones, and callers that need the limits
off (the benches) call :meth:`SandboxBase.lift_limits` instead of guessing which arguments a factory takes.
"""

from __future__ import annotations

import asyncio
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .faults import FAULTS, FaultQueue

_ID = re.compile(r"/[0-9][^/]*")
"""A path segment that is an id (a number, a document): requests are counted by their shape."""

SLOW_SECONDS = 0.2
"""How late a ``slow`` fault answers (well within any client's timeout)."""


class SandboxSettings(BaseModel):
    """Settings every sandbox takes; platforms subclass it to add theirs and change the defaults."""

    model_config = ConfigDict(extra="forbid")

    rate_per_second: float | None = None
    """The platform's rate limit (None: none)."""
    token_ttl_seconds: float = 3600
    fault_delay: float = 2.0
    """How late ``timeout`` and ``timeout-after-write`` answer: longer than the client's timeout."""

    limit_fields: ClassVar[tuple[str, ...]] = ("rate_per_second",)
    """The settings :meth:`without_limits` sets to None."""

    def without_limits(self) -> SandboxSettings:
        return self.model_copy(update=dict.fromkeys(self.limit_fields))


@dataclass
class Counters:
    """What a sandbox served: API requests, token calls, 429s it answered, and the log of requests."""

    requests: int = 0
    token_calls: int = 0
    throttled: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)


class SandboxBase(ABC):
    """The common half of a platform emulator; subclasses add the API, the data and the control methods."""

    Settings: ClassVar[type[SandboxSettings]] = SandboxSettings
    streams: ClassVar[tuple[str, ...]] = ()
    """The hub streams ``seed``/``records`` know (the default :meth:`summary` counts them)."""
    fault_kinds: ClassVar[tuple[str, ...]] = FAULTS
    random_fault_kinds: ClassVar[tuple[str, ...]] = FAULTS

    app: Any

    def __init__(self, **settings: Any) -> None:
        self.settings = self.configure(settings)
        self.lock = threading.Lock()
        self.counters = Counters()
        self.faults = FaultQueue(self.fault_kinds, random_kinds=self.random_fault_kinds)

    @classmethod
    def configure(cls, values: Mapping[str, Any]) -> SandboxSettings:
        """``values`` validated by :attr:`Settings`; a ValueError naming the setting and the known ones if not."""
        try:
            return cls.Settings.model_validate(dict(values))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(settings)'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{cls.__name__} settings refused ({problems}); known settings: "
                             f"{', '.join(cls.Settings.model_fields)}") from None

    # --- the protocol's common part ----------------------------------------------------------------------------

    @abstractmethod
    def records(self, stream: str) -> list[dict[str, Any]]: ...

    def expected_pull(self, stream: str) -> list[dict[str, Any]]:
        """What a full pull of ``stream`` brings: all its records, unless the platform hides some."""
        return self.records(stream)

    def seed_invalid(self, stream: str) -> str:
        raise NotImplementedError(f"{type(self).__name__} cannot make an invalid {stream} record")

    def seed_future(self, stream: str) -> str:
        raise NotImplementedError(f"{type(self).__name__} cannot make a future-dated {stream} record")

    def age(self, stream: str, seconds: float) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot move its {stream} records into the past")

    def summary(self) -> dict[str, Any]:
        """What ``hub demo`` prints before and after: how many records each stream holds."""
        return {stream: len(self.records(stream)) for stream in self.streams}

    def stats(self, *, clear_log: bool = False) -> dict[str, Any]:
        """Requests served, token calls, 429s answered, random faults played, and the logged requests by method and
        path shape (``clear_log``: then empty the log, which a long bench would otherwise grow without bound)."""
        with self.lock:
            calls = Counter(f"{r.get('method')} {_ID.sub('/{id}', str(r.get('path')))}" for r in self.counters.log)
            if clear_log:
                self.counters.log.clear()
            return {"requests": self.counters.requests, "token_calls": self.counters.token_calls,
                    "throttled": self.counters.throttled,
                    "faults_played": dict(self.faults.played), "calls": dict(calls)}

    def inject_fault(self, kind: str, times: int = 1, *, method: str | None = None) -> None:
        """Fail the next ``times`` API requests with ``kind`` (only those with HTTP ``method`` when given)."""
        with self.lock:
            self.faults.inject(kind, times, method=method)

    def set_fault_rate(self, rate: float, kinds: tuple[str, ...] = ("500", "timeout", "429"), seed: int = 0) -> None:
        """Fail a random ``rate`` of the API requests (0 stops it) with one of ``kinds``, drawn from a generator
        seeded with ``seed``; queued faults go first. Token endpoints are spared."""
        with self.lock:
            self.faults.set_rate(rate, kinds, seed)

    def set_fault_rates(self, rates: Mapping[str, float], seed: int = 0) -> None:
        """Fail API requests with each ``kind`` at ``rates[kind]`` (``hub sandbox --fault KIND=RATE``)."""
        with self.lock:
            self.faults.set_rates(rates, seed)

    def lift_limits(self) -> None:
        """No rate limit or quota from now on (the benches measure the hub, not the platform's limits)."""
        with self.lock:
            self.settings = self.settings.without_limits()
            self.limits_changed()

    @abstractmethod
    def limits_changed(self) -> None:
        """Hook: the limit settings changed (lock held); rebuild the rate limiters from ``self.settings``."""

    @property
    def requests(self) -> int:
        return self.counters.requests

    @property
    def token_calls(self) -> int:
        return self.counters.token_calls

    @property
    def throttled(self) -> int:
        return self.counters.throttled

    @property
    def request_log(self) -> list[dict[str, Any]]:
        return self.counters.log

    @property
    def faults_played(self) -> Counter[str]:
        return self.faults.played

    @property
    def fault_delay(self) -> float:
        return self.settings.fault_delay

    @fault_delay.setter
    def fault_delay(self, seconds: float) -> None:
        self.update_settings(fault_delay=seconds)

    def update_settings(self, **changes: Any) -> None:
        """Change settings on a running sandbox (validated as at start)."""
        with self.lock:
            self.settings = self.configure({**self.settings.model_dump(), **changes})
            self.limits_changed()

    # --- helpers for the HTTP gate -----------------------------------------------------------------------------

    async def delay(self, fault: str | None) -> None:
        """Sleep as the fault says before serving: past the client's timeout, or a little (call without the lock)."""
        if fault == "timeout":
            await asyncio.sleep(self.settings.fault_delay)
        elif fault == "slow":
            await asyncio.sleep(SLOW_SECONDS)

    async def answer_late(self) -> None:
        """``timeout-after-write``: the request was served; its answer comes after the client gave up."""
        await asyncio.sleep(self.settings.fault_delay)
