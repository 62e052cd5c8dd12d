"""``Idempotency-Key`` replay: a write sent again with the same key gets the first answer, and nothing is done twice.

What is remembered is the sandbox's choice: CPlug replays the first response's bytes, lojinha the record's id (its
replay shows the record as it is now). Keys may be scoped (per resource, per order). Call with the lock held.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["IdempotencyStore", "Stored"]

V = TypeVar("V")


@dataclass(frozen=True)
class Stored:
    """A response kept for replay."""

    status: int
    body: bytes
    media_type: str = "application/json"


@dataclass
class IdempotencyStore(Generic[V]):
    """First answer per key; ``replays`` counts the writes answered from it."""

    answers: dict[Hashable, V] = field(default_factory=dict)
    replays: int = 0

    def replay(self, key: Hashable) -> V | None:
        """The answer kept for ``key``, counted as a replay, or None for a key not seen yet."""
        if key is None or key not in self.answers:
            return None
        self.replays += 1
        return self.answers[key]

    def remember(self, key: Hashable, answer: V) -> V:
        """Keep ``answer`` for ``key`` unless one is kept already (a concurrent twin won); returns the kept one."""
        return self.answers.setdefault(key, answer)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.answers
