"""Setting up: plugins, the database schema and route files."""

from __future__ import annotations

import click

from hub.cli.common import echo_json, friendly_errors


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
def plugins(as_json: bool, show_all: bool) -> None:
    """List installed plugins: distribution, version, platforms, hooks, and load errors."""
    from hub.registry import get_registry

    registry = get_registry()
    manager = registry.manager
    rows = []
    for name, info in sorted(manager.info.items()):
        if info.builtin and not show_all:
            continue
        info.hooks = manager.hooks_of(name)
        rows.append(info.as_dict())
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no plugins installed")
    for row in rows:
        head = f"{row['name']} ({row['distribution'] or 'built-in'} {row['version'] or ''})".strip()
        if row["error"]:
            click.secho(f"{head}: FAILED TO LOAD: {row['error']}", fg="red")
            continue
        click.echo(f"{head}\n  platforms: {', '.join(row['platforms']) or '-'}\n  hooks: {', '.join(row['hooks'])}")
    for conflict in registry.conflicts:
        click.secho(f"warning: {conflict}", fg="yellow")


@click.group()
def db() -> None:
    """The canonical store's schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@friendly_errors
def db_upgrade(revision: str) -> None:
    """Migrate the database to the current schema (safe to run on every deploy)."""
    from hub.settings import get_settings
    from hub.store import migrate
    from hub.store.engine import Store

    store = Store.from_url(get_settings().resolved_database_url())
    migrate.upgrade(store, revision)
    current, heads = migrate.current_and_heads(store)
    click.echo(f"database at {', '.join(sorted(current))} (head: {', '.join(sorted(heads))})")


@db.command("downgrade")
@click.argument("revision")
@friendly_errors
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION ("base" drops everything)."""
    from hub.settings import get_settings
    from hub.store import migrate
    from hub.store.engine import Store

    migrate.downgrade(Store.from_url(get_settings().resolved_database_url()), revision)
    click.echo(f"database at {revision}")


@click.group()
def routes() -> None:
    """Declarative route files."""


def _check(path: str) -> object:
    from hub.config import apply as applying
    from hub.config import routes as config
    from hub.errors import ConfigError
    from hub.registry import get_registry

    parsed = config.load(path)
    errors, warnings = applying.check(parsed, get_registry(), path)
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if errors:
        raise ConfigError("\n".join(errors), fix="Correct the keys listed above, then validate again.")
    return parsed


@routes.command("validate")
@click.argument("path", type=click.Path())
@friendly_errors
def routes_validate(path: str) -> None:
    """Check a route file against the schema and the installed plugins; nothing is written."""
    _check(path)
    click.echo(f"{path}: valid")


@routes.command("apply")
@click.argument("path", type=click.Path())
@friendly_errors
def routes_apply(path: str) -> None:
    """Validate a route file, then write it to the store (credentials encrypted)."""
    from hub.app import build_runtime
    from hub.config import apply as applying
    from hub.config.routes import RoutesFile
    from hub.store.migrate import require_head

    parsed = _check(path)
    assert isinstance(parsed, RoutesFile)
    rt = build_runtime()
    require_head(rt.store)
    counts = applying.apply(parsed, rt.store, rt.vault, rt.registry)
    click.echo(f"applied {path}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if k != "resynced"))
    if counts["resynced"]:
        click.secho(f"warning: an option that changes what is written to a platform changed after the first sync; "
                    f"the next sync of {counts['resynced']} route(s) is a full resync", fg="yellow")


@click.group()
def auth() -> None:
    """Authorize a tenant's connection; each platform plugin adds its command (e.g. `hub auth bling TENANT`)."""


COMMANDS = [plugins, db, routes, auth]
