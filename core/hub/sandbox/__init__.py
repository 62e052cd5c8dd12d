"""Sandboxes: platform emulators shipped in plugins, served on loopback with real HTTP.

A plugin's :class:`hub.platform.Platform` names a factory for its sandbox: a callable taking the sandbox's settings
as keyword arguments (the fields of its :class:`SandboxSettings` model; unknown ones are refused). ``hub sandbox
NAME``, ``hub demo``, the benchmarks and the conformance kit all build it that way and start it through
:func:`serve`. :class:`SandboxBase` and the modules beside it (:mod:`.oauth`, :mod:`.ratelimit`,
:mod:`.idempotency`, :mod:`.faults`, :mod:`.documents`, :mod:`.xmltree`, :mod:`.nfe`: an authorized NF-e valid
against the NF-e 4.00 schema) are the parts platform sandboxes are built from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from .base import Counters, SandboxBase, SandboxSettings
from .faults import FAULTS, FaultQueue
from .serving import ASGIApp, Scope, Served, serve

__all__ = ["FAULTS", "ASGIApp", "Counters", "FaultQueue", "Sandbox", "SandboxBase", "SandboxSettings", "Scope",
           "Served", "serve"]


@runtime_checkable
class Sandbox(Protocol):
    """What the core and the conformance kit need from an emulator (:class:`SandboxBase` gives the common part)."""

    app: ASGIApp
    settings: SandboxSettings
    fault_kinds: ClassVar[tuple[str, ...]]
    random_fault_kinds: ClassVar[tuple[str, ...]]
    """The kinds :meth:`set_fault_rates` draws (the token endpoints are spared, so token faults are not here)."""

    def connection(self, base_url: str) -> dict[str, Any]:
        """``{"options": {...}, "credentials": {...}}`` for a connection to this sandbox at ``base_url``."""

    def seed(self, stream: str, count: int) -> list[str]:
        """Create ``count`` synthetic records in ``stream``; return their remote ids."""

    def touch(self, stream: str, external_id: str) -> None:
        """Change a record, as a user editing it on the platform would (incremental syncs must see it)."""

    def records(self, stream: str) -> list[dict[str, Any]]:
        """Every record the platform holds in ``stream``, as its API would show them."""

    def expected_pull(self, stream: str) -> list[dict[str, Any]]:
        """The records a full pull must bring: ``records(stream)`` unless the platform hides some (Bling's full
        sync reads active products; a grid's variations come inside their parent)."""

    def summary(self) -> dict[str, Any]:
        """Figures ``hub demo`` prints before and after the sync (records per stream, stock...)."""

    def stats(self, *, clear_log: bool = False) -> dict[str, Any]:
        """Requests served, 429s answered, random faults played per kind."""

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` API requests fail with ``kind`` (one of :data:`FAULTS` or the sandbox's own
        ``fault_kinds``): ``401`` revokes the live tokens (the token endpoint itself keeps working),
        ``repeat_page`` answers the next list request with the previous page of the same resource."""

    def set_fault_rates(self, rates: Mapping[str, float], seed: int = 0) -> None:
        """Fail API requests at random, ``rates[kind]`` of them with each kind (``hub sandbox --fault``)."""

    def lift_limits(self) -> None:
        """No rate limit or quota from now on."""

    def seed_invalid(self, stream: str) -> str:
        """Create one record the platform accepts but hub must refuse (a bad EAN, CPF...); return its id. Raise
        ``NotImplementedError`` (the base class's default) where the platform has no such record: the conformance
        kit then skips that check."""

    def seed_future(self, stream: str) -> str:
        """Create one record whose change date is years ahead (a device with a wrong clock, a typed date); return
        its id. The kit checks it is quarantined and does not hide the records changed after it. Only for platforms
        whose records carry a change date the plugin passes on as ``Incoming.updated_at``; otherwise raise
        ``NotImplementedError`` (the default)."""

    def age(self, stream: str, seconds: float) -> None:
        """Move the change date of every record of ``stream`` that many seconds into the past: the kit checks that
        a second incremental pull reads none of them (the cursor advanced past them, re-read window included).
        ``NotImplementedError`` (the default) skips that check."""
