"""``hub auth amazon_fba TENANT``: record the seller's (re-)authorization of the app, which lasts 365 days, and set
up the notifications; ``hub amazon_fba notifications TENANT``: the notifications setup alone."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from hub import friendly_errors


def install(cli: click.Group) -> None:
    target = cli.commands.get("auth")
    if isinstance(target, click.Group):
        target.add_command(auth_amazon)
    if "amazon_fba" not in cli.commands:
        cli.add_command(amazon_fba)


def _notifications(tenant: str, connection_name: str | None, replace: bool) -> str:
    """Create (or find) the queue's destination and the seller's subscriptions; what was done, in a line."""
    from hub import Authorization

    from hub_amazon_fba import subscriptions

    authorization = Authorization(tenant, "amazon_fba", connection_name)
    ctx = authorization.context
    try:
        done = subscriptions.setup(ctx, replace=replace)
    finally:
        ctx.close()
    return f"notifications of {tenant}/{authorization.connection}: {done.summary()}"


@click.command("amazon_fba")
@click.argument("tenant")
@click.option("--connection", "connection_name", default=None, help="When the tenant has several Amazon connections.")
@click.option("--code", default=None, help="The spapi_oauth_code Amazon sent to the app's redirect URI.")
@click.option("--refresh-token", default=None, help="A refresh token from a self-authorization in Seller Central.")
@click.option("--notifications/--no-notifications", default=True, show_default=True,
              help="Then create the queue's notification destination and subscriptions, unless they exist.")
@friendly_errors
def auth_amazon(tenant: str, connection_name: str | None, code: str | None, refresh_token: str | None,
                notifications: bool) -> None:
    """Store the seller's new authorization (Seller Central > Manage Your Apps > Authorize), exchange it through
    Login with Amazon, record when it was granted (the 365-day clock `hub status` warns about), resume the
    connection's waiting work, and make sure Amazon sends the shipments' notifications to the queue."""
    from hub import Authorization

    if not code and not refresh_token:
        code = click.prompt("Paste the spapi_oauth_code (or run with --refresh-token)")
    authorization = Authorization(tenant, "amazon_fba", connection_name)
    granted = datetime.now(UTC).isoformat(timespec="seconds")
    grant = {"authorization_code": code} if code else {"refresh_token": str(refresh_token), "authorized_at": granted}
    queue = authorization.context.options.get("queue_url")
    resumed = authorization.complete(grant)
    click.echo(f"authorized {tenant}/{authorization.connection} (valid 365 days from {granted[:10]}); {resumed} "
               "waiting operations resume now")
    if notifications and queue:
        click.echo(_notifications(tenant, authorization.connection, replace=False))


@click.group("amazon_fba")
def amazon_fba() -> None:
    """Amazon FBA Onsite (Enviado pela Amazon): one-time setup."""


@amazon_fba.command("notifications")
@click.argument("tenant")
@click.option("--connection", "connection_name", default=None, help="When the tenant has several Amazon connections.")
@click.option("--replace", is_flag=True, help="Move a subscription that points at another destination to this queue.")
@friendly_errors
def notifications_command(tenant: str, connection_name: str | None, replace: bool) -> None:
    """Create the SQS queue (options.queue_url) as the app's notification destination (a grantless call) and
    subscribe the seller to FBA_OUTBOUND_SHIPMENT_STATUS and ORDER_CHANGE; what exists already is kept, so running
    it again changes nothing."""
    click.echo(_notifications(tenant, connection_name, replace))
