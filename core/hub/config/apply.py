"""Checks that need the installed plugins, and writing an applied config into the store."""

from __future__ import annotations

import os
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hub.config.routes import RoutesFile, env_fix, env_refusal, expand, parse_duration, read_env
from hub.config.secrets import connection_options, split_options
from hub.control import reinstall
from hub.crypto import Vault
from hub.errors import ConfigError, Fatal
from hub.platform import Platform
from hub.registry import Registry
from hub.store.engine import Store, utcnow
from hub.store.schema import Binding, Connection, Cursor, Operation, Route, Tenant
from hub.streams import known_streams, known_tables, stream_spec
from hub.sync.loading import PAUSE_FOR_REAUTH


def check(config: RoutesFile, registry: Registry, path: str) -> tuple[list[str], list[str]]:
    """Return (errors, warnings), each naming file, key and fix."""
    errors: list[str] = []
    warnings: list[str] = []
    for tid, tenant in config.tenants.items():
        for cname, conn in tenant.connections.items():
            key = f"{path}: tenants.{tid}.connections.{cname}"
            reg = registry.platforms.get(conn.platform)
            if reg is None:
                errors.append(f"{key}.platform: no installed plugin provides {conn.platform!r} "
                              f"(fix: install it, or use one of: {', '.join(sorted(registry.platforms)) or 'none'})")
                continue
            platform = reg.platform
            try:
                expanded = expand(conn.options, f"{key}.options", conn.platform)
                if platform.options is not None:
                    platform.options.model_validate(expanded)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"])
                    errors.append(f"{key}.options.{loc}: {err['msg']} (fix: see `hub plugins` docs for "
                                  f"{conn.platform})")
            except ConfigError as exc:
                errors.append(f"{exc.message} (fix: {exc.fix})")
            if isinstance(conn.credentials, dict):
                for cred, ref in conn.credentials.items():
                    name = ref if isinstance(ref, str) else ref.env
                    refusal = env_refusal(name, conn.platform)
                    if refusal is not None:
                        errors.append(f"{key}.credentials.{cred}: {refusal} (fix: {env_fix(name, conn.platform)})")
                    elif not os.environ.get(name):
                        errors.append(f"{key}.credentials.{cred}: environment variable {name} is not set (fix: "
                                      f"export {name}=... before applying the routes, or write `credentials: stored` "
                                      "for a connection whose secrets are already in the store)")
                for needed in platform.credentials:
                    if needed not in conn.credentials:
                        errors.append(f"{key}.credentials.{needed}: missing "
                                      f"(fix: add `{needed}: {{env: VARIABLE}}` or use `credentials: stored`)")
        for rname, route in tenant.routes.items():
            key = f"{path}: tenants.{tid}.routes.{rname}"
            ends = {}
            for end in ("source", "sink"):
                cname = getattr(route, end)
                conn_cfg = tenant.connections.get(cname)
                if conn_cfg is None:
                    errors.append(f"{key}.{end}: no connection named {cname!r} in tenant {tid} "
                                  f"(fix: use one of: {', '.join(tenant.connections) or 'none'})")
                elif conn_cfg.platform in registry.platforms:
                    ends[end] = registry.platform(conn_cfg.platform)
            if route.source == route.sink:
                errors.append(f"{key}: source and sink are the same connection (fix: name two connections)")
            source, sink = ends.get("source"), ends.get("sink")
            streams = known_streams(registry)
            for stream in route.streams:
                if stream not in streams:
                    errors.append(f"{key}.streams: unknown stream {stream!r}: neither the core nor an installed plugin "
                                  f"declares it (fix: use one of: {', '.join(sorted(streams))}; or install the "
                                  "plugin that declares it, see `hub plugins`)")
                    continue
                if source is not None and stream not in source.pulls:
                    errors.append(f"{key}.streams: {source.name} cannot be read for {stream!r} "
                                  f"(fix: remove it; {source.name} provides {', '.join(sorted(source.pulls))})")
                if sink is not None and stream not in sink.pushes:
                    errors.append(f"{key}.streams: {sink.name} cannot receive {stream!r} "
                                  f"(fix: remove it; {sink.name} accepts {', '.join(sorted(sink.pushes))})")
            errors.extend(_table_errors(route.mappings.model_extra or {}, registry, key, list(ends.values())))
            known_actions = set().union(*(p.actions for p in ends.values())) if ends else set()
            for i, rule in enumerate(route.transitions):
                for action in rule.actions:
                    if ends and action not in known_actions:
                        errors.append(f"{key}.transitions.{i}.actions: unknown action {action!r} "
                                      f"(fix: use one of: {', '.join(sorted(known_actions)) or 'none'})")
            for stream in route.replace:
                if stream not in route.streams or (sink is not None and not registry.implements(
                        sink.name, "prune_catalog")):
                    errors.append(f"{key}.replace: {stream!r} cannot be replaced on the sink (fix: list only streams "
                                  "of this route, on a sink whose plugin can delete them)")
            for stream, fields in route.updates.items():
                if stream not in route.streams:
                    errors.append(f"{key}.updates.{stream}: {stream!r} is not one of the route's streams (fix: add "
                                  "it to streams, or remove the entry)")
                    continue
                try:
                    known = set(stream_spec(stream, registry).model.model_fields)
                except Fatal:
                    continue
                for name in fields:
                    if name not in known:
                        errors.append(f"{key}.updates.{stream}: {stream} records have no field {name!r} (fix: use "
                                      f"one of: {', '.join(sorted(known - {'entity'}))})")
            if route.emit_invoices and sink is not None and (
                    "sales" not in route.streams or not registry.implements(sink.name, "emit_invoice")):
                errors.append(f"{key}.emit_invoices: {sink.name} cannot issue NF-e for this route "
                              f"(fix: remove emit_invoices, or route sales to a sink that issues invoices)")
            required = source.required_mappings if source is not None and "sales" in route.streams \
                and "sales" not in route.updates else frozenset()
            for table in sorted(required):
                if getattr(route.mappings, table, None) is None and not (route.mappings.model_extra or {}).get(table):
                    errors.append(f"{key}.mappings.{table}: {source.name if source else ''} sales need this DE-PARA "
                                  f"table (fix: add mappings.{table} mapping each {source.name if source else ''} "
                                  f"value to the sink's; `hub mappings TENANT {rname}` lists both sides)")
            if "sales" in route.streams and "sales" not in route.updates and route.mappings.payment_methods is None \
                    and "payment_methods" not in required:
                warnings.append(f"{key}.mappings.payment_methods: not set, so payment methods pass through "
                                f"unchanged (fix: add a DE-PARA table if the platforms name them differently)")
    return errors, warnings


def _table_errors(extra: dict[str, Any], registry: Registry, key: str, ends: list[Platform]) -> list[str]:
    """A DE-PARA table beyond the core's must be declared by the platform of the route's source or sink."""
    names = [p.name for p in ends]
    ours = known_tables(registry, names)
    everywhere = known_tables(registry)
    errors = []
    for name in extra:
        if name in ours:
            continue
        owners = sorted(p for p, reg in registry.platforms.items()
                        if any(t.name == name for t in reg.platform.mapping_tables))
        why = (f"it belongs to {', '.join(owners)}, which is not an end of this route" if owners
               else "neither the core nor an installed plugin declares it")
        errors.append(f"{key}.mappings.{name}: unknown DE-PARA table {name!r}: {why} (fix: rename it to one of: "
                      f"{', '.join(sorted(ours))}, or remove it; tables known anywhere: "
                      f"{', '.join(sorted(everywhere))})")
    return errors


class Applied(dict[str, int]):
    """Counts by kind, with what the operator must read: ``notices`` (connections paused by a host change) and
    ``skipped`` (tenants in the file that were not applied)."""

    def __init__(self) -> None:
        super().__init__(tenants=0, connections=0, routes=0, disabled=0, resynced=0)
        self.notices: list[str] = []
        self.skipped: list[str] = []


Scope = Collection[str] | Literal["all"] | None


def scope(config: RoutesFile, tenants: Scope) -> list[str]:
    """The tenants of the file to apply: those named, all of them when ``"all"``, or the only one there is.

    A route file is not trusted to reach every tenant it mentions: a block for another tenant (pasted, or planted
    in a shared file) would rewrite that tenant's connections."""
    named = list(config.tenants)
    if tenants == "all":
        return named
    if tenants is None:
        if len(named) == 1:
            return named
        raise ConfigError(f"{config.source}: the file names {len(named)} tenants ({', '.join(named)}); applying it "
                          "would change every one of them",
                          fix="Name each tenant to apply: `hub routes apply FILE --tenant T` (repeatable), or pass "
                              "--all-tenants to apply them all.")
    wanted = set(tenants)
    missing = sorted(wanted - set(named))
    if missing or not wanted:
        raise ConfigError(f"{config.source}: no tenant {', '.join(missing) or '(none named)'} in the file "
                          f"(it names: {', '.join(named) or 'none'})",
                          fix="Name tenants that the file has a block for, with --tenant.")
    return [t for t in named if t in wanted]


def _origin(value: Any) -> tuple[tuple[str, str, int], str] | None:
    """(scheme, host, port) of an http(s) URL, with how to show it; None for anything else."""
    if not isinstance(value, str) or "://" not in value:
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    shown = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
    return (scheme, host, port or (443 if scheme == "https" else 80)), shown


def _effective(options: dict[str, Any], model: type[BaseModel] | None) -> dict[str, Any]:
    """The options with the platform's defaults filled in: dropping base_url moves the connection too."""
    if model is None:
        return options
    try:
        return {**model.model_validate(options).model_dump(mode="json"), **options}
    except ValidationError:
        return options


def host_change(old: dict[str, Any], new: dict[str, Any], model: type[BaseModel] | None) -> tuple[str, str] | None:
    """(old host, new host) when a URL option of ``new`` points at a host none of ``old``'s did."""
    before = {key: o for key, v in _effective(old, model).items() if (o := _origin(v)) is not None}
    known = {o[0] for o in before.values()}
    if not known:
        return None
    for key, value in _effective(new, model).items():
        origin = _origin(value)
        if origin is not None and origin[0] not in known:
            previous = before.get(key) or sorted(before.values())[0]
            return previous[1], origin[1]
    return None


def _invalidate(conn: Connection, moved: tuple[str, str], fix: str, now: datetime) -> str:
    """Forget every stored secret of a connection whose host changed, and pause it until re-authorized."""
    conn.credentials = None
    conn.token_expires_at = conn.renew_by = conn.token_issued_at = None
    conn.auth_attempt_at = conn.auth_attempt_token = conn.auth_attempt_sent_at = None
    reason = f"host changed from {moved[0]} to {moved[1]}; its stored credentials were dropped"
    conn.paused_until, conn.pause_kind, conn.pause_reason = now + PAUSE_FOR_REAUTH, "auth", f"{reason} (fix: {fix})"
    return f"connection {conn.tenant_id}/{conn.name}: {reason} and it is paused (fix: {fix})"


def apply(config: RoutesFile, store: Store, vault: Vault, registry: Registry | None = None,
          tenants: Scope = None) -> Applied:
    """Write the named tenants' connections and routes; routes no longer in the file are disabled, never deleted.

    ``tenants``: the tenants to apply (others in the file are skipped), ``"all"``, or None for a file that names
    exactly one. A connection whose host changed loses its stored credentials and is paused until re-authorized,
    so nothing stored for one host is ever sent to another. A connection whose platform lists an option in
    ``resync_options`` that changed after something was written to it gets a full resync: the routes into it
    forget their cursors and what they last sent, so the next sync reads and writes everything again."""
    chosen = scope(config, tenants)
    now = utcnow()
    counts = Applied()
    counts.skipped = [t for t in config.tenants if t not in chosen]
    resync: list[int] = []
    source = Path(config.source)
    applied_from = str(source.resolve()) if source.is_file() else None
    with store.begin() as s:
        for tid in chosen:
            tenant = config.tenants[tid]
            row = s.get(Tenant, tid)
            if row is None:
                s.add(Tenant(id=tid, name=tenant.name, created_at=now))
            else:
                row.name = tenant.name
            s.flush()
            counts["tenants"] += 1
            conns: dict[str, Connection] = {}
            for cname, cc in tenant.connections.items():
                where = f"{config.source}: tenants.{tid}.connections.{cname}"
                conn = s.scalar(select(Connection).where(Connection.tenant_id == tid, Connection.name == cname))
                reg = registry.platforms.get(cc.platform) if registry is not None else None
                model = reg.platform.options if reg is not None else None
                options = expand(cc.options, f"{where}.options", cc.platform)
                clear, secret_options = split_options(cc.options, options, model)
                env_refs: dict[str, Any] = {}
                secrets: dict[str, str] = {}
                if isinstance(cc.credentials, dict):
                    for k, ref in cc.credentials.items():
                        assert not isinstance(ref, str)
                        env_refs[k] = ref.env
                        value = read_env(ref.env, cc.platform, f"{where}.credentials.{k}")
                        if value is not None:
                            secrets[k] = value
                if conn is None:
                    conn = Connection(tenant_id=tid, name=cname, platform=cc.platform, options=clear,
                                      credentials=None, credentials_env=env_refs, token_expires_at=None,
                                      secret_options=vault.encrypt(secret_options) if secret_options else None,
                                      paused_until=None, pause_reason=None, updated_at=now)
                    s.add(conn)
                else:
                    if conn.platform != cc.platform:
                        raise ConfigError(
                            f"{where}: platform changed from {conn.platform} to {cc.platform}",
                            fix="Give the new account a new connection name.")
                    old = connection_options(vault, conn)
                    watched = reg.platform.resync_options if reg is not None else frozenset()
                    if any(old.get(k) != options.get(k) for k in watched):
                        resync.append(conn.id)
                    moved = host_change(old, options, model)
                    if moved is not None:
                        several = sum(c.platform == cc.platform for c in tenant.connections.values()) > 1
                        fix = f"re-authorize with hub auth {cc.platform} {tid}" + (
                            f" --connection {cname}" if several else "")
                        counts.notices.append(_invalidate(conn, moved, fix, now))
                    stored = vault.decrypt(conn.secret_options) if conn.secret_options else {}
                    if stored != secret_options:
                        conn.secret_options = vault.encrypt(secret_options) if secret_options else None
                    conn.options, conn.credentials_env, conn.updated_at = clear, env_refs, now
                    if reinstall(conn):
                        counts.notices.append(f"connection {tid}/{cname} was uninstalled; it is reinstalled and "
                                              "its queued operations go out again")
                if secrets:
                    current = vault.decrypt(conn.credentials) if conn.credentials else {}
                    if any(current.get(k) != v for k, v in secrets.items()):
                        current.update(secrets)
                        conn.credentials = vault.encrypt(current)
                conns[cname] = conn
                counts["connections"] += 1
            s.flush()
            seen = set()
            for rname, rc in tenant.routes.items():
                seen.add(rname)
                route = s.scalar(select(Route).where(Route.tenant_id == tid, Route.name == rname))
                every = parse_duration(rc.schedule) if rc.schedule is not None else None
                cfg = rc.model_dump(mode="json", by_alias=True)
                if applied_from is not None:  # where the console writes DE-PARA edits back (hub serve)
                    cfg["applied_from"] = applied_from
                if route is None:
                    s.add(Route(tenant_id=tid, name=rname, source_id=conns[rc.source].id,
                                sink_id=conns[rc.sink].id, config=cfg, enabled=rc.enabled,
                                schedule_seconds=every, next_run_at=now if every else None, updated_at=now))
                else:
                    route.source_id, route.sink_id = conns[rc.source].id, conns[rc.sink].id
                    route.config, route.enabled, route.updated_at = cfg, rc.enabled, now
                    if route.schedule_seconds != every:
                        route.schedule_seconds, route.next_run_at = every, now if every else None
                counts["routes"] += 1
            for route in s.scalars(select(Route).where(Route.tenant_id == tid, Route.enabled.is_(True))):
                if route.name not in seen:
                    route.enabled = False
                    counts["disabled"] += 1
        for conn_id in resync:
            counts["resynced"] += full_resync(s, conn_id)
    return counts


def full_resync(s: Session, sink_id: int) -> int:
    """Make every route into ``sink_id`` read and write everything again; return how many routes. Nothing is
    done for a connection nothing was written to yet (the option simply applies from the first sync)."""
    written = s.scalar(select(Binding.id).where(Binding.connection_id == sink_id, Binding.origin == "push").limit(1))
    if written is None:
        return 0
    routes = list(s.scalars(select(Route).where(Route.sink_id == sink_id)))
    for route in routes:
        streams = list(route.config.get("streams", []))
        s.execute(update(Cursor).where(Cursor.route_id == route.id).values(position=None))
        s.execute(update(Binding).where(Binding.connection_id == route.source_id, Binding.entity.in_(streams))
                  .values(content_hash=None))
    s.execute(update(Binding).where(Binding.connection_id == sink_id).values(content_hash=None))
    # Writes already made are keyed by content: drop their finished outbox rows so the same content is sent again.
    s.execute(delete(Operation).where(Operation.route_id.in_([r.id for r in routes]),
                                      Operation.state.in_(("done", "superseded"))))
    return len(routes)
