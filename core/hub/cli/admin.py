"""Setting up: plugins, the database schema and route files."""

from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING, Any

import click

from hub.cli.common import echo_json, friendly_errors

if TYPE_CHECKING:
    from hub.config.routes import RoutesFile


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
        row = info.as_dict()
        row["platform_details"] = [describe_platform(registry.platform(p)) for p in info.platforms
                                   if p in registry.platforms]
        rows.append(row)
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
        for detail in row["platform_details"]:
            click.echo(f"  {detail['name']} ({detail['title']})")
            click.echo(f"    reads: {', '.join(detail['pulls']) or '-'}")
            click.echo(f"    writes: {', '.join(detail['pushes']) or '-'}")
            if detail["actions"]:
                click.echo(f"    actions: {', '.join(detail['actions'])}")
            click.echo(f"    credentials: {', '.join(detail['credentials']) or '-'}")
            for option in detail["options"]:
                default = "required" if option["required"] else f"default {option['default']!r}"
                text = f" {option['description']}" if option["description"] else ""
                click.echo(f"    option {option['name']} ({default}):{text}")
    for conflict in registry.conflicts:
        click.secho(f"warning: {conflict}", fg="yellow")


def describe_platform(platform: Any) -> dict[str, Any]:
    """What ``hub plugins`` shows of a platform: its streams, actions, credentials and options with their
    descriptions and defaults (from the plugin's options model)."""
    options = []
    model = platform.options
    if model is not None:
        for name, field in model.model_fields.items():
            required = field.is_required()
            default = None if required else field.get_default(call_default_factory=True)
            if not isinstance(default, str | int | float | bool | None):
                default = str(default)
            options.append({"name": field.alias or name, "required": required, "default": default,
                            "description": field.description or ""})
    return {"name": platform.name, "title": platform.title, "pulls": sorted(platform.pulls),
            "pushes": sorted(platform.pushes), "actions": sorted(platform.actions),
            "credentials": list(platform.credentials), "options": options}


@click.group()
def db() -> None:
    """The canonical store's schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def db_upgrade(revision: str, as_json: bool) -> None:
    """Migrate the database to the current schema (safe to run on every deploy); creates the store if needed."""
    from hub.settings import get_settings
    from hub.store import migrate
    from hub.store.engine import Store

    store = Store.from_url(get_settings().resolved_database_url())
    before, _ = migrate.current_and_heads(store)
    migrate.upgrade(store, revision)
    current, heads = migrate.current_and_heads(store)
    url = store.engine.url.render_as_string(hide_password=True)
    if as_json:
        echo_json({"database": url, "before": sorted(before), "current": sorted(current), "head": sorted(heads)})
        return
    click.echo(f"database at {', '.join(sorted(current))} (head: {', '.join(sorted(heads))}): {url}")


@db.command("downgrade")
@click.argument("revision")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def db_downgrade(revision: str, as_json: bool) -> None:
    """Migrate the database down to REVISION ("base" drops everything)."""
    from hub.cli.common import check_home
    from hub.settings import get_settings
    from hub.store import migrate
    from hub.store.engine import Store

    check_home()
    store = Store.from_url(get_settings().resolved_database_url())
    migrate.downgrade(store, revision)
    current, _heads = migrate.current_and_heads(store)
    if as_json:
        echo_json({"current": sorted(current)})
        return
    click.echo(f"database at {revision}")


@db.command("prune")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Keep this many days (default: HUB_LOG_RETENTION_DAYS, 30).")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def db_prune(days: int | None, as_json: bool) -> None:
    """Delete API-log rows and received webhooks older than the retention (`hub run` does it hourly). The outbox
    is kept: its idempotency keys are what keep a write from being made twice."""
    from hub.cli.common import check_home
    from hub.settings import get_settings
    from hub.store.engine import Store
    from hub.store.retention import prune

    check_home()
    settings = get_settings()
    keep = days if days is not None else settings.log_retention_days
    if keep <= 0:
        raise click.UsageError("HUB_LOG_RETENTION_DAYS is 0 (keep everything); give --days to prune anyway")
    pruned = prune(Store.from_url(settings.resolved_database_url()), keep)
    if as_json:
        echo_json({"days": keep, "api_log": pruned.api_log, "webhook_events": pruned.webhook_events})
        return
    click.echo(f"deleted {pruned.api_log} API-log rows and {pruned.webhook_events} webhook events older than "
               f"{keep} days")


@db.command("status")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def db_status(as_json: bool) -> None:
    """Where the store is and whether its schema is current (exit 1 when `hub db upgrade` is needed)."""
    from hub.cli.common import check_home
    from hub.settings import get_settings
    from hub.store import migrate
    from hub.store.engine import Store

    check_home()
    store = Store.from_url(get_settings().resolved_database_url())
    current, heads = migrate.current_and_heads(store)
    url = store.engine.url.render_as_string(hide_password=True)
    up_to_date = current == heads
    if as_json:
        echo_json({"database": url, "current": sorted(current), "head": sorted(heads), "up_to_date": up_to_date})
    else:
        click.echo(f"database {url}: at {', '.join(sorted(current)) or 'nothing (never migrated)'}, "
                   f"head {', '.join(sorted(heads))}" + ("" if up_to_date else "; run `hub db upgrade`"))
    if not up_to_date:
        raise SystemExit(1)


@click.group()
def routes() -> None:
    """Declarative route files."""


def _check(path: str, as_json: bool = False) -> tuple[RoutesFile, list[str]]:
    """The parsed file and its warnings (printed unless ``as_json``). Otherwise a ConfigError listing every error
    with its line, or, with ``as_json``, that JSON and exit 1."""
    from hub.config import apply as applying
    from hub.config import routes as config
    from hub.errors import ConfigError
    from hub.registry import get_registry

    try:
        parsed = config.load(path)
        errors, warnings = applying.check(parsed, get_registry(), path)
        warnings = [config.with_line(parsed, w) for w in warnings]
        if not as_json:
            for warning in warnings:
                click.secho(f"warning: {warning}", fg="yellow", err=True)
        if errors:
            raise ConfigError("\n".join(config.with_line(parsed, e) for e in errors), fix=config.CLOSING)
    except ConfigError as exc:
        if not as_json:
            raise
        echo_json({"file": path, "valid": False, "errors": exc.message.splitlines(), "fix": exc.fix})
        raise SystemExit(1) from None
    return parsed, warnings


@routes.command("validate")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def routes_validate(path: str, as_json: bool) -> None:
    """Check a route file against the schema and the installed plugins; nothing is written."""
    parsed, warnings = _check(path, as_json)
    if as_json:
        echo_json({"file": path, "valid": True, "tenants": list(parsed.tenants), "warnings": warnings})
        return
    click.echo(f"{path}: valid (tenants: {', '.join(parsed.tenants)})")


@routes.command("apply")
@click.argument("path", type=click.Path())
@click.option("--tenant", "tenants", multiple=True, metavar="TENANT",
              help="Apply this tenant's block (repeatable); other tenants in the file are left untouched.")
@click.option("--all-tenants", is_flag=True, help="Apply every tenant the file names.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def routes_apply(path: str, tenants: tuple[str, ...], all_tenants: bool, as_json: bool) -> None:
    """Validate a route file, then write the named tenants to the store (credentials encrypted).

    A file naming one tenant applies to it; a file naming several needs --tenant for each, or --all-tenants."""
    from hub.cli.common import store_runtime
    from hub.config import apply as applying
    from hub.errors import ConfigError

    if tenants and all_tenants:
        raise ConfigError("--tenant and --all-tenants were both given", fix="Use one of them.")
    chosen: applying.Scope = "all" if all_tenants else (list(tenants) or None)
    parsed, warnings = _check(path, as_json)
    applying.scope(parsed, chosen)
    rt = store_runtime()
    counts = applying.apply(parsed, rt.store, rt.vault, rt.registry, tenants=chosen)
    if as_json:
        echo_json({"file": path, "applied": dict(counts), "skipped": counts.skipped, "notices": counts.notices,
                   "warnings": warnings})
        return
    click.echo(f"applied {path}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if k != "resynced"))
    if counts.skipped:
        click.echo(f"skipped tenants not named with --tenant: {', '.join(counts.skipped)}")
    for notice in counts.notices:
        click.secho(f"warning: {notice}", fg="yellow")
    if counts["resynced"]:
        click.secho(f"warning: an option that changes what is written to a platform changed after the first sync; "
                    f"the next sync of {counts['resynced']} route(s) is a full resync", fg="yellow")


@routes.command("check")
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def routes_check(tenant: str, as_json: bool) -> None:
    """Online: read both platforms' lists (payment methods...) and the stored sales, and report every DE-PARA value
    the sink does not offer and every source value with no entry (exit 1 when there is one)."""
    from hub.cli.common import store_runtime
    from hub.mappings import tenant_check
    from hub.privacy import mask_value

    found = tenant_check(store_runtime(), tenant)
    problems = [p for reports in found.values() for r in reports for p in r.problems]
    unreadable = [f"{route}.{r.table}: {side}: {err}" for route, reports in found.items() for r in reports
                  for side, err in (("source", r.source.error), ("sink", r.sink.error)) if err]
    if as_json:
        echo_json(mask_value({"tenant": tenant, "ok": not problems, "problems": problems,
                              "unreadable": unreadable,
                              "routes": {k: [r.as_dict() for r in v] for k, v in found.items()}}))
    else:
        for line in unreadable:
            click.secho(f"warning: could not read {line}", fg="yellow", err=True)
        for problem in problems:
            click.secho(f"problem: {problem}", fg="red")
        checked = sum(len(v) for v in found.values())
        click.echo(f"{tenant}: {checked} DE-PARA tables in {len(found)} routes checked; {len(problems)} problems"
                   + (" (see `hub mappings TENANT ROUTE`)" if problems else ""))
    if problems:
        raise SystemExit(1)


class AuthGroup(click.Group):
    """``hub auth PLATFORM TENANT``: a plugin's own command (e.g. Bling's link-and-code flow), or for a platform
    without one, authorizing again with the credentials configured for it. Every one takes ``--json``."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None:
            from hub.registry import get_registry

            found = _reauthorize(cmd_name) if cmd_name in get_registry().platforms else None
        return _answers_json(found) if found is not None else None

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every installed platform, with its own command or not (for `hub auth --help` and shell completion)."""
        from hub.registry import get_registry

        return sorted(set(super().list_commands(ctx)) | set(get_registry().platforms))


def auth_report(tenant: str, platform: str | None = None, connection: str | None = None) -> list[dict[str, Any]]:
    """Each connection of TENANT (on ``platform``, named ``connection``) as ``hub auth --json`` reports it: whether
    it works or waits for `hub auth`, when its token expires and is renewed, and the operations waiting for it.
    Never a credential."""
    from sqlalchemy import func, select

    from hub.auth import find_connection
    from hub.cli.common import store_runtime
    from hub.errors import Fatal
    from hub.privacy import mask_documents
    from hub.store.engine import utcnow
    from hub.store.schema import Connection, Operation, Tenant

    rt = store_runtime()
    only = find_connection(rt, tenant, platform, connection) if platform is not None else None
    with rt.store.sessions() as s:
        if s.get(Tenant, tenant) is None:
            raise Fatal(f"no tenant {tenant!r}", fix="Apply a route file that declares it: hub routes apply FILE")
        conns = [only] if only is not None else list(s.scalars(
            select(Connection).where(Connection.tenant_id == tenant).order_by(Connection.name)))
        queued = dict(s.execute(select(Operation.connection_id, func.count()).where(
            Operation.tenant_id == tenant, Operation.state.in_(("pending", "running")))
            .group_by(Operation.connection_id)).all())
    now = utcnow()
    rows = []
    for conn in conns:
        paused = conn.paused_until is not None and conn.paused_until > now
        state = "active" if not paused else "needs_authorization" if conn.pause_kind == "auth" else "paused"
        rows.append({"tenant": tenant, "connection": conn.name, "platform": conn.platform, "state": state,
                     "pause_kind": conn.pause_kind if paused else None,
                     "pause_reason": mask_documents(conn.pause_reason) if paused else None,
                     "paused_until": conn.paused_until if paused else None,
                     "token_issued_at": conn.token_issued_at, "token_expires_at": conn.token_expires_at,
                     "renew_by": conn.renew_by, "renewal_in_flight_since": conn.auth_attempt_at,
                     "queued_operations": int(queued.get(conn.id, 0)),
                     "fix": f"hub auth {conn.platform} {tenant} --connection {conn.name}"
                            if state == "needs_authorization" else None})
    return rows


def _answers_json(command: click.Command) -> click.Command:
    """Give a ``hub auth`` command ``--json`` when its plugin did not: what it prints (the consent link, the prompt
    for the code) goes to stderr, and stdout gets the connection as :func:`auth_report` has it afterwards, or the
    JSON error object (exit 1). Scripts pass ``--code`` (and ``--state``) so nothing is asked."""
    if command.callback is None or any(p.name == "as_json" for p in command.params):
        return command
    inner = command.callback
    command.params.append(click.Option(["--json", "as_json"], is_flag=True,
                                       help="Print only JSON on stdout: the connection's state and token expiry, "
                                            "or the error (exit 1)."))

    @wraps(inner)
    def callback(*args: Any, as_json: bool = False, **kwargs: Any) -> Any:
        if not as_json:
            return inner(*args, **kwargs)
        import contextlib
        import sys

        from hub.cli.common import JSON_MODE, fail

        ctx = click.get_current_context()
        ctx.meta[JSON_MODE] = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            try:
                inner(*args, **kwargs)
            except (click.Abort, EOFError):
                fail("no authorization code was given", fix=f"Pass it with --code (and the link's --state) to "
                                                            f"`hub auth {command.name} ... --json`.")
        tenant = kwargs.get("tenant")
        if tenant is None:
            echo_json({"ok": True})
            return None
        (row,) = auth_report(tenant, command.name, kwargs.get("connection_name"))
        echo_json({"ok": True, **row})
        return None

    command.callback = friendly_errors(callback)
    return command


def _reauthorize(platform: str) -> click.Command:
    @click.command(platform)
    @click.argument("tenant")
    @click.option("--connection", "connection_name", default=None, help="When the tenant has several accounts.")
    @friendly_errors
    def command(tenant: str, connection_name: str | None) -> None:
        """Authorize TENANT's connection again with its configured credentials, and resume it."""
        from hub.auth import authorize, find_connection
        from hub.cli.common import store_runtime

        rt = store_runtime()
        conn = find_connection(rt, tenant, platform, connection_name)
        resumed = authorize(rt, conn.id, {})
        click.echo(f"authorized {tenant}/{conn.name}; {resumed} waiting operations resume now")

    return command


@click.group(cls=AuthGroup)
def auth() -> None:
    """Authorize a tenant's connection; each platform plugin adds its command (e.g. `hub auth bling TENANT`).
    Every one takes --json."""


@auth.command("status")
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON array, one object per connection.")
@friendly_errors
def auth_status(tenant: str, as_json: bool) -> None:
    """Each connection of TENANT: active or waiting for `hub auth`, token expiry and renewal (UTC), and the
    operations waiting for it."""
    from hub.cli.common import show_time

    rows = auth_report(tenant)
    if as_json:
        echo_json(rows)
        return
    click.echo("times in UTC")
    for r in rows:
        click.echo(f"{r['connection']} ({r['platform']}): {r['state'].replace('_', ' ')}; token expires "
                   f"{show_time(r['token_expires_at'], utc=True)}; {r['queued_operations']} queued operations")
        if r["fix"]:
            click.secho(f"    {r['pause_reason'] or 'authorization needed'}; fix: `{r['fix']}`", fg="red")


@click.group()
def secrets() -> None:
    """The keys that encrypt credentials and secret options at rest (HUB_SECRET_KEY or HUB_HOME/secret.key)."""


@secrets.command("generate")
def secrets_generate() -> None:
    """Print a new key. To rotate: HUB_SECRET_KEY=NEW,OLD, run `hub secrets rotate`, then HUB_SECRET_KEY=NEW."""
    from hub.crypto import generate_key

    click.echo(generate_key())


@secrets.command("rotate")
@friendly_errors
def secrets_rotate() -> None:
    """Re-encrypt every connection's credentials and secret options with the first key of HUB_SECRET_KEY, so the
    keys after it can be retired."""
    from hub.cli.common import check_home
    from hub.config.secrets import rotate_all
    from hub.crypto import Vault
    from hub.settings import get_settings
    from hub.store.engine import Store
    from hub.store.migrate import require_head

    check_home()
    settings = get_settings()
    vault = Vault(settings)
    store = Store.from_url(settings.resolved_database_url())
    try:
        require_head(store)
        rotated = rotate_all(store, vault)
    finally:
        store.engine.dispose()
    click.echo(f"re-encrypted {rotated} connection(s) with the newest key; the older keys can now be removed "
               "from HUB_SECRET_KEY")


COMMANDS = [plugins, db, routes, auth, secrets]
