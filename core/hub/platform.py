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

TOKEN_TIMEOUT_SECONDS = 60.0
"""How long a token call may take by default: longer than ordinary calls, because a token answer lost to a client
timeout may leave a rotated refresh token that nobody holds."""


@dataclass(frozen=True)
class MappingTable:
    """A DE-PARA table a plugin adds to the route vocabulary (e.g. Plugg.to's ``channels``, Zydon's ``price_lists``).

    With ``stream`` and ``field`` the core translates that top-level field of the stream's records through the
    route's table before every push (a value missing from a table that is present is refused, never guessed);
    without them the plugin reads the table itself with ``ctx.mapping(name)``."""

    name: str
    description: str
    stream: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class StreamSpec:
    """A stream a plugin adds to the route vocabulary: its canonical model and the hooks that read and write it.

    ``pull_hook``/``push_hook`` name hooks of :mod:`hub.hookspecs` (``pull_catalog``/``push_catalog`` get the
    stream's name as ``stream``). List the stream in ``pulls``/``pushes`` too, as for a built-in one."""

    name: str
    model: type[Canonical]
    pull_hook: str = "pull_catalog"
    push_hook: str = "push_catalog"


@dataclass(frozen=True)
class Platform:
    """A platform a plugin connects to.

    ``pulls`` are the streams its pull hooks can read, ``pushes`` the ones its push hooks can write; a route is
    valid only when its source pulls and its sink pushes every stream it lists. ``options`` validates a
    connection's ``options`` block and ``credentials`` names the secrets it needs (both checked by
    ``hub routes validate``). ``sandbox`` builds the emulator the tests and ``hub demo`` run against.
    ``actions`` are the transition actions it runs (``perform_action``): a route's rule naming one runs it on
    this platform. ``mapping_tables`` and ``streams`` add DE-PARA tables and streams that route files may use
    (the core's are in :mod:`hub.streams`), without a change to the core.
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
    demo_rank: int = 100
    """Which demo ``hub demo`` runs when several plugins ship one: the lowest rank, then the platform name (the
    others run with ``--scenario``)."""
    resync_options: frozenset[str] = frozenset()
    """Options that change what is written to the platform (e.g. the SKU as barcode): changing one after the
    first sync makes the next sync of every route into that connection a full resync."""
    token_timeout_seconds: float = TOKEN_TIMEOUT_SECONDS
    """The client timeout of ``authenticate``'s calls (the connection's ``timeout_seconds`` when that is longer)."""
    refresh_reuse_seconds: float = 0.0
    """How long after a refresh token was sent the platform still accepts it again and answers with the same new
    pair (a grace window). 0, the default, means strict rotation: each refresh token works once (Bling, Plugg.to),
    so when the answer to a rotation is lost (timeout, crash) the hub does not resend it; it pauses the connection
    for re-authorization, unless ``reauth_unattended``."""
    reauth_unattended: bool = False
    """``authenticate`` can get a new token from the stored credentials alone (e.g. CPlug's password grant), so a
    rotation whose answer was lost is retried at once instead of waiting for a person."""
    mapping_tables: tuple[MappingTable, ...] = ()
    streams: tuple[StreamSpec, ...] = ()
    required_mappings: frozenset[str] = frozenset()
    """DE-PARA tables a route that reads sales from this platform must have: its keys mean nothing on any other
    platform (CPlug's payment-method ids), so passing them through unchanged would refuse every sale at push time."""
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

    ``expires_at`` is when the access token dies (the core renews ahead of it, by a margin that scales with the
    token's lifetime: see :data:`hub.sync.loading.AUTH_SKEW`). ``renew_by`` is when the
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

    The core remembers ``event_id`` per connection (platforms deliver twice) and starts a sync of ``stream`` on
    every route reading it from this connection: it reads only ``external_id`` (the record to re-read, e.g. a stock
    event's product) when the plugin implements ``pull_records``, otherwise the incremental run. Either re-reads
    the record from the API, so out-of-order delivery does no harm.
    """

    event_id: str
    event: str
    stream: str | None = None
    external_id: str | None = None
