"""What a plugin registers: a platform, its streams, its options and its sandbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from hub.models import Canonical

if TYPE_CHECKING:
    from hub.sandbox import Sandbox


@dataclass(frozen=True)
class Platform:
    """A platform a plugin connects to.

    ``pulls`` are the streams its pull hooks can read, ``pushes`` the ones its push hooks can write; a route is
    valid only when its source pulls and its sink pushes every stream it lists. ``options`` validates a
    connection's ``options`` block and ``credentials`` names the secrets it needs (both checked by
    ``hub routes validate``). ``sandbox`` builds the emulator the tests and ``hub demo`` run against.
    """

    name: str
    title: str
    pulls: frozenset[str] = frozenset()
    pushes: frozenset[str] = frozenset()
    options: type[BaseModel] | None = None
    credentials: tuple[str, ...] = ()
    actions: frozenset[str] = frozenset()
    sandbox: Callable[..., Sandbox] | None = None
    docs: str = ""
    demo: str | None = None
    """Path of a demo scenario (see :mod:`hub.demo`) that ``hub demo`` runs by default."""
    resync_options: frozenset[str] = frozenset()
    """Options that change what is written to the platform (e.g. the SKU as barcode): changing one after the
    first sync makes the next sync of every route into that connection a full resync."""
    extra: dict[str, Any] = field(default_factory=dict)


class Incoming(BaseModel):
    """One record read from a platform. ``data`` is the canonical model (or a dict the core validates)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    external_id: str
    data: Canonical | dict[str, Any]
    updated_at: datetime | None = None


class Rejected(BaseModel):
    """A record the plugin could read but not map: the core quarantines it and goes on."""

    external_id: str
    reason: str
    field: str | None = None
    fix: str = "Correct the record on the source platform; the next sync picks it up."
    raw: dict[str, Any] = Field(default_factory=dict)


class Page(BaseModel):
    """One page of a pull. ``cursor`` is where to resume if the sync stops after this page (opaque to the
    core, owned by the plugin); it is stored in the same transaction as the page's records."""

    records: Sequence[Incoming | Rejected] = ()
    cursor: str | None = None


class PushResult(BaseModel):
    """What a push hook returns: the remote id, and any warnings the platform gave (logged, not fatal)."""

    external_id: str
    warnings: list[str] = Field(default_factory=list)


class Credentials(BaseModel):
    """What ``authenticate`` returns; stored encrypted, never logged.

    ``expires_at`` is when the access token dies (the core renews a minute before). ``renew_by`` is when the
    renewal grant itself would die if unused (e.g. Bling's 30-day refresh token): the scheduler renews idle
    connections before then, so a quiet tenant is never locked out.
    """

    values: dict[str, str]
    expires_at: datetime | None = None
    renew_by: datetime | None = None

    def __repr__(self) -> str:
        return f"Credentials(keys={sorted(self.values)}, expires_at={self.expires_at})"

    __str__ = __repr__



class WebhookEvent(BaseModel):
    """One verified webhook event, as a plugin's ``parse_webhook`` reads it.

    The core remembers ``event_id`` per connection (platforms deliver twice) and turns the event into an
    incremental sync of ``stream`` on every route reading it from this connection; the sync re-reads the record
    from the API, so out-of-order delivery does no harm.
    """

    event_id: str
    event: str
    stream: str | None = None
    external_id: str | None = None
