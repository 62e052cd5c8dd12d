"""``hub auth bling TENANT`` and ``hub bench bling-pull``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import click
from hub import friendly_errors
from hub.errors import AuthRevoked


def install(cli: click.Group) -> None:
    for group, command in (("auth", auth_bling), ("bench", bench_bling_pull)):
        target = cli.commands.get(group)
        if isinstance(target, click.Group):
            target.add_command(command)


def code_from(answer: str, state: str) -> str:
    """The authorization code from what the person pasted: the code, or the whole redirect address."""
    answer = answer.strip()
    if "://" not in answer and "code=" not in answer:
        return answer
    query = parse_qs(urlsplit(answer).query if "://" in answer else answer.lstrip("?"))
    if "error" in query:
        raise AuthRevoked(f"Bling refused the authorization: {query.get('error_description', query['error'])[0]}",
                          fix="Open the link again with Bling's main admin user and choose to allow access.")
    if query.get("state", [state])[0] != state:
        raise AuthRevoked("the address pasted answers another authorization request (state differs)",
                          fix="Run `hub auth bling TENANT` again and use the link it prints.")
    codes = query.get("code")
    if not codes:
        raise AuthRevoked("no code in what was pasted", fix="Paste the whole address Bling redirected you to.")
    return codes[0]


@click.command("bling")
@click.argument("tenant")
@click.option("--connection", "connection_name", default=None, help="When the tenant has several Bling accounts.")
@click.option("--code", default=None, help="The code (or the whole redirect address); asked for when omitted.")
@click.option("--state", default=None, help="Reuse this state in the link (for scripted authorizations).")
@friendly_errors
def auth_bling(tenant: str, connection_name: str | None, code: str | None, state: str | None) -> None:
    """Authorize TENANT's Bling account: print the link to allow access, then exchange the code it gives."""
    from hub import Authorization

    from hub_bling.auth import authorize_url

    authorization = Authorization(tenant, "bling", connection_name)
    url, state = authorize_url(authorization.context, state)
    if code is None:
        click.echo("Open this link logged in as the Bling account's main admin user, and allow access:")
        click.echo(f"  {url}")
        code = click.prompt("Then paste the code, or the whole address Bling sent you back to")
    resumed = authorization.complete({"authorization_code": code_from(code, state)})
    click.echo(f"authorized {tenant}/{authorization.connection}; {resumed} waiting operations resume now")


@click.command("bling-pull")
@click.option("--products", default=20_000, show_default=True, help="Catalog size of the unthrottled run.")
@click.option("--throttled-products", default=300, show_default=True,
              help="Catalog size of the run with Bling's 3 requests/s on (about 1 request per product).")
@click.option("--database-url", default=None,
              help="A scratch PostgreSQL database for the hub's store (EMPTIED first); a SQLite file otherwise.")
@click.option("--json", "as_json", is_flag=True)
def bench_bling_pull(products: int, throttled_products: int, database_url: str | None, as_json: bool) -> None:
    """Full product pull from a Bling sandbox, with the 3 req/s limit and without, beside a bare httpx loop; then
    incremental runs with no change, one change and one webhook-announced change, with the calls each cost."""
    import json

    from hub_bling.bench import run

    figures = run(products, throttled_products, database_url)
    click.echo(json.dumps(figures, indent=None if as_json else 2))
