"""The Bling platform: registration and the hook implementations (each delegates to a module named for it)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import click
from hub import ConnectorContext, Credentials, Page, Platform, PushResult, RouteView, WebhookEvent, hookimpl
from hub.errors import Fatal
from hub.models import Action, Canonical, Customer, FiscalProblem, Invoice, PaymentMethod, Product, Sale

from hub_bling import auth, catalog, invoices, sales, sales_pull, webhooks
from hub_bling.options import BlingOptions

PULLS = frozenset({"products", "categories", "stock", "prices", "sellers", "payment_methods", "customers", "sales"})
PUSHES = frozenset({"customers", "payment_methods", "sales"})


def _sandbox(**settings: Any) -> Any:
    from hub_bling.sandbox import BlingSandbox

    return BlingSandbox(**settings)


@hookimpl
def register_platforms(register: Any) -> None:
    register(Platform(
        name="bling", title="Bling ERP (API v3)", pulls=PULLS, pushes=PUSHES, options=BlingOptions,
        credentials=("client_id", "client_secret"), actions=frozenset(sales.ACTIONS), sandbox=_sandbox,
        docs="OAuth2 authorization code (hub auth bling TENANT); 3 requests/s and 120,000/day per account.",
        extra={"consent_url": _consent_url},
    ))


def _consent_url(ctx: ConnectorContext, state: str, redirect_uri: str) -> str:
    """The consent page the console's "authorize" button opens. Bling always sends the person back to the redirect
    link registered on the app (its authorize page takes no redirect_uri), so that link must be the console's."""
    return auth.authorize_url(ctx, state)[0]


@hookimpl
def register_commands(cli: click.Group) -> None:
    from hub_bling import cli as commands

    commands.install(cli)


@hookimpl
def authenticate(ctx: ConnectorContext) -> Credentials:
    return auth.authenticate(ctx)


@hookimpl
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterable[Page]:
    return catalog.pull(ctx, stream, since)


@hookimpl
def pull_records(ctx: ConnectorContext, stream: str, ids: list[str], received: dict[str, datetime]
                 ) -> Iterable[Page] | None:
    return catalog.pull_records(ctx, stream, ids, received)


@hookimpl
def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterable[Page]:
    return sales_pull.pull_sales(ctx, since)


@hookimpl
def push_catalog(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None) -> PushResult:
    if isinstance(record, Customer):
        return sales.push_customer(ctx, record, external_id)
    if isinstance(record, PaymentMethod):
        return sales.push_payment_method(ctx, record, external_id)
    raise Fatal(f"Bling connector cannot write {stream}", fix="Bling is the source of products; remove the stream.")


@hookimpl
def push_sale(ctx: ConnectorContext, record: Sale, external_id: str | None) -> PushResult:
    return sales.push_sale(ctx, record, external_id)


@hookimpl
def perform_action(ctx: ConnectorContext, action: Action, record: Canonical, external_id: str) -> PushResult:
    if not isinstance(record, Sale):
        raise Fatal(f"Bling actions apply to sales, not {type(record).__name__}", fix="Check the route's transitions.")
    return sales.perform(ctx, action, record, external_id)


@hookimpl
def emit_invoice(ctx: ConnectorContext, record: Sale, external_id: str, invoice_id: str | None) -> Invoice:
    return invoices.emit(ctx, record, external_id, invoice_id)


@hookimpl
def validate_fiscal(document: Canonical, route: RouteView, products: dict[str, Product]) -> list[FiscalProblem] | None:
    if isinstance(document, Sale):
        return invoices.problems(document, route, products) or None
    return None


@hookimpl
def list_values(ctx: ConnectorContext, table: str) -> dict[str, str] | None:
    """The situações of the sales module: a status route to Zydon passes them by name."""
    return sales_pull.situation_names(ctx) if table == "statuses" else None


@hookimpl
def parse_webhook(ctx: ConnectorContext, headers: dict[str, str], body: bytes) -> list[WebhookEvent]:
    return webhooks.parse(ctx, headers, body)
