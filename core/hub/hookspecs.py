"""The hooks a hub plugin may implement.

Two kinds of call, chosen per hook and never mixed:

**Targeted** hooks are called on exactly one plugin: the one that registered the platform of the connection at
hand (the route's source for pulls, its sink for pushes). Dispatch is deterministic: the core calls them through a
pluggy subset caller that leaves every other plugin's implementation out (other plugins' wrappers still run, and
``HUB_TRACE_PLUGINS`` traces the call); see :mod:`hub.registry`.
``authenticate``, ``pull_catalog``, ``pull_sales``, ``pull_invoices``, ``pull_records``, ``push_catalog``,
``push_stock``, ``push_price``, ``push_sale``, ``push_invoice``, ``emit_invoice``, ``perform_action``,
``prune_catalog``, ``list_values`` and ``parse_webhook`` are targeted.

**Broadcast** hooks are called on every plugin and their answers are collected:
``register_platforms``, ``register_commands``, ``validate_fiscal`` (every problem from every plugin) and
``on_status_transition`` (the core matches the route's transition rules; every plugin of the route may name more
actions; the core runs each exactly once, on the route's platform that declares it in ``Platform.actions``).

Targeted hooks receive ``ctx`` (:class:`hub.sync.context.ConnectorContext`): the connection's options and
credentials, an httpx client whose every call lands in the API log, the route's mappings and a binder. They
raise :mod:`hub.errors` exceptions, which the core maps to retry, wait, re-auth or quarantine.

Push hooks receive the ``idempotency_key`` of the operation (recorded before the call) and the
``external_id`` the record already has on that platform, or None for a create. They must be safe to call twice:
send the key where the platform accepts one and look the record up by its natural key before creating it.

As in pluggy, an implementation may accept fewer arguments than the spec lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from hub.models import (
        Action,
        Canonical,
        FiscalProblem,
        Invoice,
        Price,
        Product,
        Sale,
        StatusTransition,
        StockLevel,
    )
    from hub.platform import Credentials, Page, Platform, PushResult, WebhookEvent
    from hub.sync.context import ConnectorContext, RouteView

hookspec = pluggy.HookspecMarker("hub")
hookimpl = pluggy.HookimplMarker("hub")


# --- broadcast: registration ------------------------------------------------------------------------------


@hookspec
def register_platforms(register: Callable[[Platform], None]) -> None:
    """Call ``register(Platform(...))`` for each platform this plugin connects to."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``hub`` CLI (e.g. ``hub auth bling``)."""


# --- targeted: the connection's own plugin ----------------------------------------------------------------


@hookspec
def authenticate(ctx: ConnectorContext) -> Credentials | None:
    """Obtain or refresh the connection's tokens from ``ctx.credentials``.

    Called single-flight per connection (a lock, then a re-read) when the stored token is missing or about to
    expire, and after a call raised :class:`hub.errors.AuthExpired`. Return the new credentials (the core stores
    them encrypted before releasing the lock), or None when nothing needs renewing. Raise
    :class:`hub.errors.AuthRevoked` when a person must re-authorize: the connection's routes pause, nothing queued
    is lost.
    """


@hookspec
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterable[Page]:
    """Yield pages of catalog records (categories, products, stock, prices, customers, sellers, payment methods).

    ``since`` is the cursor of the last page of the last successful run (None: a full sync). Each page carries
    the cursor to resume from; the core commits it together with the page's records.
    """


@hookspec
def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterable[Page]:
    """Yield pages of sales changed since the cursor, status changes and cancellations included."""


@hookspec
def pull_invoices(ctx: ConnectorContext, since: str | None) -> Iterable[Page]:
    """Yield pages of invoices (NF-e) changed since the cursor."""


@hookspec
def pull_records(ctx: ConnectorContext, stream: str, ids: list[str], received: dict[str, datetime]
                 ) -> Iterable[Page] | None:
    """Read only the records of ``stream`` that webhooks named (``WebhookEvent.external_id``), for any stream the
    pulls above read. Optional: a plugin without it, or answering None for a stream, gets the incremental run.

    ``received`` holds when each id was last announced (naive UTC): a copy read after that moment is current
    (e.g. one detail read shared by two routes). Yield pages as a pull does; their cursors are ignored and the
    stream's cursor does not move, because the incremental run remains the backstop for lost webhooks. A record
    that no longer exists is simply left out (the incremental run sees the deletion). Never read more than the
    ids need: this is the cheap path for one change.
    """


@hookspec
def push_catalog(
    ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None, idempotency_key: str
) -> PushResult:
    """Create or update one catalog record on the platform; return its remote id."""


@hookspec
def push_stock(
    ctx: ConnectorContext, record: StockLevel, external_id: str | None, idempotency_key: str
) -> PushResult:
    """Set one SKU's balance in one warehouse (deposit); the route's store mapping names it."""


@hookspec
def push_price(ctx: ConnectorContext, record: Price, external_id: str | None, idempotency_key: str) -> PushResult:
    """Set one SKU's price in one price list (Zydon-style price updates, in batches of operations)."""


@hookspec
def push_sale(ctx: ConnectorContext, record: Sale, external_id: str | None, idempotency_key: str) -> PushResult:
    """Create or update one sale (status and cancellation included).

    Payment methods, status and store arrive already translated through the route's mappings. The customer is
    matched by CPF/CNPJ on the platform, never duplicated; no customer means the final consumer.
    """


@hookspec
def push_invoice(
    ctx: ConnectorContext, record: Invoice, external_id: str | None, idempotency_key: str
) -> PushResult:
    """Send an authorized invoice to a platform that needs it (e.g. its XML to a marketplace).

    When a route's sink issues the NF-e of a sale that came from this platform (``emit_invoices``), the core sends
    it back here once it is authorized, with ``record.sale.external_id`` set to the sale's id on this platform.
    An invoice the platform already holds for that sale counts as done."""


@hookspec
def prune_catalog(ctx: ConnectorContext, stream: str, keep: set[str]) -> list[str]:
    """Delete the platform's records of ``stream`` whose ids are not in ``keep``; return the deleted ids.

    Runs after a full sync of a route that lists the stream under ``replace`` (e.g. CPlug's categories replaced by
    Bling's), once every write of that sync has reached the platform.
    """


@hookspec
def emit_invoice(
    ctx: ConnectorContext, record: Sale, external_id: str, idempotency_key: str, invoice_id: str | None
) -> Invoice:
    """Issue the NF-e of a sale already pushed (``external_id`` is the sale's id there).

    ``invoice_id`` is the note an earlier attempt created (reported with ``ctx.record_remote_id`` right after
    creating it), or None. Return the invoice once authorized; raise :class:`hub.errors.RateLimited` with a short
    ``retry_after`` while SEFAZ has not answered, and :class:`hub.errors.InvalidRecord` with the fix when it is
    rejected. Never issue a second NF-e for the same sale. Runs on routes with ``emit_invoices: true``.
    """


@hookspec
def list_values(ctx: ConnectorContext, table: str) -> dict[str, str] | None:
    """The values this platform offers for the DE-PARA table ``table`` (e.g. ``statuses``): value -> its name.

    Read online (``hub routes check``, ``hub mappings``) so that a route's mapping to a value the platform lacks,
    or a value that passes through a route by name and has no same-named value here, is reported before records
    are refused one by one. Return None for a table the platform has no list of. Tables a platform lists through
    a stream (``payment_methods``) need no answer here."""


@hookspec
def perform_action(
    ctx: ConnectorContext, action: Action, record: Canonical, external_id: str, idempotency_key: str
) -> PushResult:
    """Run one action of a status change (see ``on_status_transition``) on the record's remote copy.

    ``action.params`` hold the change (``from``, ``to``); ``external_id`` is the record's id on this connection.
    To decline (the platform does it already), return the PushResult with a warning saying why."""


# --- broadcast: every plugin ------------------------------------------------------------------------------


@hookspec
def parse_webhook(ctx: ConnectorContext, headers: dict[str, str], body: bytes, query: dict[str, str]
                  ) -> list[WebhookEvent]:
    """Verify a webhook delivered for this connection and read its events.

    ``headers`` have lower-case names and ``body`` is the raw request body: verify the signature over those
    bytes in constant time and raise :class:`hub.errors.BadSignature` when it does not match. ``query`` is the
    delivery URL's query string (the first value of each name; empty when there is none): a platform that signs
    nothing is authenticated by a secret token in the URL registered for the connection, compared in constant
    time. An implementation that does not name ``query`` is called as before. Do no I/O; the core
    answers at once, dedupes on ``event_id`` and schedules incremental syncs.
    """


@hookspec
def validate_fiscal(
    document: Canonical, route: RouteView, products: dict[str, Product]
) -> list[FiscalProblem] | None:
    """Return every problem that would make an NF-e for ``document`` be rejected (or None).

    ``products`` are the store's records of the sale's items, by SKU (an SKU missing from it is not in the
    store).
    """


@hookspec
def on_status_transition(
    transition: StatusTransition, route: RouteView, actions: list[Action]
) -> list[Action] | None:
    """Name the actions, beyond the route's own, that this plugin's platform must run for a status change.

    The core plans the route's actions itself: ``actions`` are those of every rule of ``route.transitions`` that
    matches the change (``'*'`` matches any status, a new sale's missing one included), in rule order, each with
    the change in ``params["from"]``/``params["to"]``. A plugin need not answer at all; re-matching the rules is
    not its job. Its answer adds actions; every answer of every plugin that owns the route's source or sink is
    kept (other plugins are not part of the route and are ignored). Each action, the route's and the plugins',
    runs exactly once per record and change, through ``perform_action`` on the route's connection whose platform
    declares it in ``Platform.actions`` (the sink when both ends do); an answered action none of the plugin's
    platforms on the route declares is not run (a warning is logged).

    Plan only, do no I/O. An action must not run in some case that needs the platform's state to tell (e.g.
    Bling skips a posting the account's own transition manager already makes): ``perform_action`` decides it
    and answers with a warning instead of a call; the core never removes a planned action.
    """


