"""Checks that need the installed plugins, and writing an applied config into the store."""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hub.config.routes import RoutesFile, expand, parse_duration
from hub.crypto import Vault
from hub.errors import ConfigError
from hub.registry import Registry
from hub.store.engine import Store, utcnow
from hub.store.schema import Binding, Connection, Cursor, Operation, Route, Tenant


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
            if platform.options is not None:
                try:
                    platform.options.model_validate(expand(conn.options, f"{key}.options"))
                except ValidationError as exc:
                    for err in exc.errors():
                        loc = ".".join(str(p) for p in err["loc"])
                        errors.append(f"{key}.options.{loc}: {err['msg']} (fix: see `hub plugins` docs for "
                                      f"{conn.platform})")
                except ConfigError as exc:
                    errors.append(f"{exc.message} (fix: {exc.fix})")
            if isinstance(conn.credentials, dict):
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
            for stream in route.streams:
                if source is not None and stream not in source.pulls:
                    errors.append(f"{key}.streams: {source.name} cannot be read for {stream!r} "
                                  f"(fix: remove it; {source.name} provides {', '.join(sorted(source.pulls))})")
                if sink is not None and stream not in sink.pushes:
                    errors.append(f"{key}.streams: {sink.name} cannot receive {stream!r} "
                                  f"(fix: remove it; {sink.name} accepts {', '.join(sorted(sink.pushes))})")
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
            if route.emit_invoices and sink is not None and (
                    "sales" not in route.streams or not registry.implements(sink.name, "emit_invoice")):
                errors.append(f"{key}.emit_invoices: {sink.name} cannot issue NF-e for this route "
                              f"(fix: remove emit_invoices, or route sales to a sink that issues invoices)")
            if "sales" in route.streams and route.mappings.payment_methods is None:
                warnings.append(f"{key}.mappings.payment_methods: not set, so payment methods pass through "
                                f"unchanged (fix: add a DE-PARA table if the platforms name them differently)")
    return errors, warnings


def apply(config: RoutesFile, store: Store, vault: Vault, registry: Registry | None = None) -> dict[str, int]:
    """Write tenants, connections and routes; routes no longer in the file are disabled, never deleted.

    A connection whose platform lists an option in ``resync_options`` that changed after something was written
    to it gets a full resync: the routes into it forget their cursors and what they last sent, so the next sync
    reads and writes everything again with the new option."""
    now = utcnow()
    counts = {"tenants": 0, "connections": 0, "routes": 0, "disabled": 0, "resynced": 0}
    resync: list[int] = []
    with store.begin() as s:
        for tid, tenant in config.tenants.items():
            row = s.get(Tenant, tid)
            if row is None:
                s.add(Tenant(id=tid, name=tenant.name, created_at=now))
            else:
                row.name = tenant.name
            s.flush()
            counts["tenants"] += 1
            conns: dict[str, Connection] = {}
            for cname, cc in tenant.connections.items():
                conn = s.scalar(select(Connection).where(Connection.tenant_id == tid, Connection.name == cname))
                options = expand(cc.options, f"tenants.{tid}.connections.{cname}.options")
                env_refs: dict[str, Any] = {}
                secrets: dict[str, str] = {}
                if isinstance(cc.credentials, dict):
                    for k, ref in cc.credentials.items():
                        assert not isinstance(ref, str)
                        env_refs[k] = ref.env
                        if ref.env in os.environ:
                            secrets[k] = os.environ[ref.env]
                if conn is None:
                    conn = Connection(tenant_id=tid, name=cname, platform=cc.platform, options=options,
                                      credentials=None, credentials_env=env_refs, token_expires_at=None,
                                      paused_until=None, pause_reason=None, updated_at=now)
                    s.add(conn)
                else:
                    if conn.platform != cc.platform:
                        raise ConfigError(
                            f"tenants.{tid}.connections.{cname}: platform changed from {conn.platform} to "
                            f"{cc.platform}", fix="Give the new account a new connection name.")
                    watched = registry.platforms[cc.platform].platform.resync_options if (
                        registry is not None and cc.platform in registry.platforms) else frozenset()
                    if any(conn.options.get(k) != options.get(k) for k in watched):
                        resync.append(conn.id)
                    conn.options, conn.credentials_env, conn.updated_at = options, env_refs, now
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
