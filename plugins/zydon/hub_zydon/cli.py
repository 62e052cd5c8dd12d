"""``hub auth zydon TENANT``: install the plugin in a Zydon organization through App Studio's OAuth."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import click
from hub import friendly_errors
from hub.errors import AuthRevoked


def install(cli: click.Group) -> None:
    target = cli.commands.get("auth")
    if isinstance(target, click.Group):
        target.add_command(auth_zydon)


def code_from(answer: str, state: str) -> str:
    """The authorization code from what the person pasted: the code, or the whole callback address."""
    answer = answer.strip()
    if "://" not in answer and "code=" not in answer and "error=" not in answer:
        return answer
    query = parse_qs(urlsplit(answer).query if "://" in answer else answer.lstrip("?"))
    if "error" in query:
        raise AuthRevoked(f"Zydon refused the installation: {query['error'][0]}",
                          fix="Check credentials.client_id (the plugin's id in App Studio) and open the link again "
                              "as an admin of the organization.")
    if query.get("state", [state])[0] != state:
        raise AuthRevoked("the address pasted answers another authorization request (state differs)",
                          fix="Run `hub auth zydon TENANT` again and use the link it prints.")
    codes = query.get("code")
    if not codes:
        raise AuthRevoked("no code in what was pasted", fix="Paste the whole address Zydon sent you back to.")
    return codes[0]


@click.command("zydon")
@click.argument("tenant")
@click.option("--connection", "connection_name", default=None, help="When the tenant has several Zydon connections.")
@click.option("--code", default=None, help="The code (or the whole callback address); asked for when omitted.")
@click.option("--state", default=None, help="Reuse this state in the link (for scripted installs).")
@friendly_errors
def auth_zydon(tenant: str, connection_name: str | None, code: str | None, state: str | None) -> None:
    """Install the hub's App Studio plugin in TENANT's Zydon organization (or, with a key pair configured,
    log in again): print the consent link, then exchange the code for the organization's key pair."""
    from hub import Authorization

    from hub_zydon.auth import authorize_url

    authorization = Authorization(tenant, "zydon", connection_name)
    creds = authorization.context.credentials
    if code is None and creds.get("key_id") and creds.get("key_secret") and not creds.get("client_id"):
        resumed = authorization.complete({})
        click.echo(f"logged in {tenant}/{authorization.connection} with its key pair; {resumed} waiting operations "
                   "resume now")
        return
    url, state = authorize_url(authorization.context, state)
    if code is None:
        click.echo("Open this link as an admin of the Zydon organization and allow the installation:")
        click.echo(f"  {url}")
        code = click.prompt("Then paste the code, or the whole address Zydon sent you back to")
    resumed = authorization.complete({"authorization_code": code_from(code, state)})
    click.echo(f"authorized {tenant}/{authorization.connection}; {resumed} waiting operations resume now")
