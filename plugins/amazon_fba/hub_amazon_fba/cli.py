"""``hub auth amazon_fba TENANT``: record the seller's (re-)authorization of the app, which lasts 365 days."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from hub import friendly_errors


def install(cli: click.Group) -> None:
    target = cli.commands.get("auth")
    if isinstance(target, click.Group):
        target.add_command(auth_amazon)


@click.command("amazon_fba")
@click.argument("tenant")
@click.option("--connection", "connection_name", default=None, help="When the tenant has several Amazon connections.")
@click.option("--code", default=None, help="The spapi_oauth_code Amazon sent to the app's redirect URI.")
@click.option("--refresh-token", default=None, help="A refresh token from a self-authorization in Seller Central.")
@friendly_errors
def auth_amazon(tenant: str, connection_name: str | None, code: str | None, refresh_token: str | None) -> None:
    """Store the seller's new authorization (Seller Central > Manage Your Apps > Authorize), exchange it through
    Login with Amazon, record when it was granted (the 365-day clock `hub status` warns about) and resume the
    connection's waiting work."""
    from hub import Authorization

    if not code and not refresh_token:
        code = click.prompt("Paste the spapi_oauth_code (or run with --refresh-token)")
    authorization = Authorization(tenant, "amazon_fba", connection_name)
    granted = datetime.now(UTC).isoformat(timespec="seconds")
    grant = {"authorization_code": code} if code else {"refresh_token": str(refresh_token), "authorized_at": granted}
    resumed = authorization.complete(grant)
    click.echo(f"authorized {tenant}/{authorization.connection} (valid 365 days from {granted[:10]}); {resumed} "
               "waiting operations resume now")
