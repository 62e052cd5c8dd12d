"""Helpers for flow tests: route files applied to served sandboxes (the lojinha demo's, a plugin's shipped ones),
and the pair of platforms the rule tests drive."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import yaml
from hub.config import apply as applying
from hub.config import routes as config
from hub.store.schema import Binding, Connection, Operation, Quarantine, Record
from hub.sync.drain import drain
from hub.sync.loading import Runtime
from hub.sync.pull import SyncReport, sync_route
from sqlalchemy import func, select

DEMO_ROUTES = Path(__file__).parent / "example_plugin" / "demo-routes.yaml"


def apply_demo_routes(rt: Runtime, tmp: Path, erp_url: str, shop_url: str, **overrides: object) -> Path:
    """The shipped demo route file, pointed at the given sandboxes; ``overrides`` replace route keys."""
    env = {"LOJINHA_ERP_URL": erp_url, "LOJINHA_SHOP_URL": shop_url, "LOJINHA_ERP_CLIENT_ID": "demo",
           "LOJINHA_ERP_CLIENT_SECRET": "demo-secret", "LOJINHA_SHOP_CLIENT_ID": "demo",
           "LOJINHA_SHOP_CLIENT_SECRET": "demo-secret"}
    os.environ.update(env)
    data = yaml.safe_load(DEMO_ROUTES.read_text())
    for dotted, value in overrides.items():
        node = data["tenants"]["demo"]["routes"]
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp / "routes.yaml"
    path.write_text(yaml.safe_dump(data))
    parsed = config.load(path)
    errors, _ = applying.check(parsed, rt.registry, str(path))
    assert not errors, errors
    applying.apply(parsed, rt.store, rt.vault)
    return path


def apply_shipped(rt: Runtime, route_file: Path, tenant_id: str, ends: dict[str, tuple[Any, str]], path: Path,
                  **changes: object) -> dict[str, int]:
    """A plugin's shipped route file applied to served sandboxes: each connection named in ``ends`` (name -> sandbox,
    base URL) gets the sandbox's options and credentials (through environment variables, as a user's file reads
    them); ``changes`` replace dotted keys under the tenant."""
    data = yaml.safe_load(route_file.read_text())
    tenant = data["tenants"][tenant_id]
    for name, (box, base_url) in ends.items():
        info = box.connection(base_url)
        conn = tenant["connections"][name]
        conn["options"] = {**(conn.get("options") or {}), **info["options"]}
        creds = {}
        for key, value in info["credentials"].items():
            var = f"{conn['platform']}_HUB_TEST_{key}".upper()
            os.environ[var] = str(value)
            creds[key] = {"env": var}
        conn["credentials"] = creds
    for dotted, value in changes.items():
        node = tenant
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    parsed = config.load(path)
    errors, _ = applying.check(parsed, rt.registry, str(path))
    assert not errors, errors
    return applying.apply(parsed, rt.store, rt.vault, rt.registry)


class ShippedPair:
    """Two platforms' sandboxes served on loopback with a plugin's shipped route file applied, and what the rule
    tests read back from the store. A pair is a dataclass with ``rt``, ``servers`` and ``path``, and says which
    route file and tenant it plays and which sandbox stands for each connection of the file (``ends``)."""

    rt: Runtime
    path: Path
    route_file: ClassVar[Path]
    tenant: ClassVar[str]

    def ends(self) -> dict[str, tuple[Any, str]]:
        raise NotImplementedError

    def apply(self, **changes: Any) -> dict[str, int]:
        """Apply the shipped route file (with ``changes``: dotted keys under the tenant) to the sandboxes."""
        return apply_shipped(self.rt, self.route_file, self.tenant, self.ends(), self.path, **changes)

    def sync(self, route: str, full: bool = False, wait: float = 5) -> SyncReport:
        report = sync_route(self.rt, self.tenant, route, full=full)
        drain(self.rt, max_wait=wait)
        return report

    def ops(self, **where: Any) -> list[Operation]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Operation).where(*(getattr(Operation, k) == v for k, v in where.items()))
                                  .order_by(Operation.id)))

    def op_count(self) -> int:
        with self.rt.store.sessions() as s:
            return s.scalar(select(func.count()).select_from(Operation)) or 0

    def quarantined(self) -> list[Quarantine]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Quarantine).where(Quarantine.tenant_id == self.tenant,
                                                           Quarantine.resolved_at.is_(None))))

    def stored(self, entity: str) -> list[Record]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Record).where(Record.tenant_id == self.tenant, Record.entity == entity)))

    def bound(self, connection: str, entity: str) -> int:
        with self.rt.store.sessions() as s:
            conn = s.scalar(select(Connection.id).where(Connection.tenant_id == self.tenant,
                                                        Connection.name == connection))
            return s.scalar(select(func.count()).select_from(Binding).where(
                Binding.connection_id == conn, Binding.entity == entity)) or 0
