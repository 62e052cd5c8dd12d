"""``hub serve`` (the web console, webhooks, /metrics, /health) and ``hub users`` (who may sign in)."""

from __future__ import annotations

import click

from hub.cli.common import echo_json, friendly_errors, store_runtime


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", is_flag=True, help="Also run the workers, scheduler and relay (`hub run`) here.")
@click.option("--proxy-headers", is_flag=True,
              help="Trust X-Forwarded-Proto/For from a TLS-terminating proxy (cookies then get Secure).")
@friendly_errors
def serve(host: str, port: int, workers: bool, proxy_headers: bool) -> None:
    """Serve the web console, the webhook receiver, /metrics and /health on one port."""
    from hub.console.serving import run_console
    from hub.errors import HubError
    from hub.runner.logs import setup_logging
    from hub.settings import get_settings

    setup_logging()
    rt = store_runtime()
    try:
        run_console(rt, get_settings(), host, port, workers=workers, proxy_headers=proxy_headers,
                    say=lambda line: click.echo(line, err=True))
    except OSError as exc:
        raise HubError(f"cannot serve on {host}:{port}: {exc.strerror or exc}",
                       fix="Choose a free port with --port, or stop what listens there.") from None


@click.group()
def users() -> None:
    """Console users: who may sign in to `hub serve`, and which tenants each sees."""


@users.command("add")
@click.argument("email")
@click.option("--tenant", "tenants", multiple=True, required=True, help="A tenant the user may see (repeatable).")
@click.option("--password", default=None, help="Default: asked for (hidden), or HUB_CONSOLE_PASSWORD.",
              envvar="HUB_CONSOLE_PASSWORD")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def users_add(email: str, tenants: tuple[str, ...], password: str | None, as_json: bool) -> None:
    """Create EMAIL (or bind it to more tenants and set its password)."""
    from hub.console.users import add_user

    rt = store_runtime()
    if password is None:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    user = add_user(rt.store, email, password, list(tenants))
    if as_json:
        echo_json({"email": user.email, "tenants": list(user.tenants)})
    else:
        click.echo(f"{user.email} may sign in to the console for: {', '.join(user.tenants)}")


@users.command("remove")
@click.argument("email")
@friendly_errors
def users_remove(email: str) -> None:
    """Delete EMAIL; its sessions stop working at their next request."""
    from hub.console.users import remove_user

    found = remove_user(store_runtime().store, email)
    click.echo(f"{email} removed" if found else f"no user {email}")


@users.command("time-zone")
@click.argument("tenant")
@click.argument("zone")
@friendly_errors
def users_time_zone(tenant: str, zone: str) -> None:
    """Show TENANT's dates in ZONE on the console (an IANA name; default America/Sao_Paulo)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from sqlalchemy import update

    from hub.errors import ConfigError
    from hub.store.schema import Tenant

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{zone!r} is not a time zone", fix="Use an IANA name, e.g. America/Manaus.") from None
    rt = store_runtime()
    with rt.store.begin() as s:
        n = s.execute(update(Tenant).where(Tenant.id == tenant).values(time_zone=zone)).rowcount  # type: ignore[attr-defined]
    if not n:
        raise ConfigError(f"no tenant {tenant!r}", fix="Check the name with `hub status TENANT`.")
    click.echo(f"{tenant}: dates in {zone}")


def _register_bench() -> None:
    """``hub bench console`` joins the bench group from here (the group's module is not the console's)."""
    from hub.bench import bench
    from hub.console.bench import bench_console

    bench.add_command(bench_console)


_register_bench()
COMMANDS = [serve, users]
