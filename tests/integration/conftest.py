"""The shipped CPlug <-> Bling route file, applied to a Bling sandbox and a CPlug sandbox served on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hub.bench.chaos import seed_catalog
from hub.config import apply as applying
from hub.config import routes as config
from hub.sandbox import Served, serve
from hub.store.schema import ApiCall, Binding, Connection, Operation, Quarantine
from hub.sync.drain import drain
from hub.sync.loading import Runtime
from hub.sync.pull import SyncReport, sync_route
from hub_bling.sandbox import BlingSandbox
from hub_cplug.plugin import ROUTES
from hub_cplug.sandbox import CPlugSandbox
from sqlalchemy import func, select

ROUTE_FILE = ROUTES / "bling.yaml"
TENANT = "loja"


@dataclass
class Pair:
    rt: Runtime
    bling: BlingSandbox
    cplug: CPlugSandbox
    servers: list[Served]
    path: Path

    def apply(self, **changes: Any) -> dict[str, int]:
        """Apply the shipped route file (with ``changes``: dotted keys under the tenant) to the sandboxes."""
        data = yaml.safe_load(ROUTE_FILE.read_text())
        tenant = data["tenants"][TENANT]
        for name, box, served in (("bling", self.bling, self.servers[0]), ("cplug", self.cplug, self.servers[1])):
            info = box.connection(served.base_url)
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
        self.path.write_text(yaml.safe_dump(data, allow_unicode=True))
        parsed = config.load(self.path)
        errors, _ = applying.check(parsed, self.rt.registry, str(self.path))
        assert not errors, errors
        return applying.apply(parsed, self.rt.store, self.rt.vault, self.rt.registry)

    def sync(self, route: str, full: bool = False) -> SyncReport:
        report = sync_route(self.rt, TENANT, route, full=full)
        drain(self.rt, max_wait=5)
        return report

    def ops(self, **where: Any) -> list[Operation]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Operation).where(*(getattr(Operation, k) == v for k, v in where.items()))
                                  .order_by(Operation.id)))

    def quarantined(self) -> list[Quarantine]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Quarantine).where(Quarantine.tenant_id == TENANT,
                                                           Quarantine.resolved_at.is_(None))))

    def api_log(self) -> list[ApiCall]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(ApiCall).where(ApiCall.tenant_id == TENANT)))

    def bound(self, connection: str, entity: str) -> int:
        with self.rt.store.sessions() as s:
            conn = s.scalar(select(Connection.id).where(Connection.name == connection))
            return s.scalar(select(func.count()).select_from(Binding).where(
                Binding.connection_id == conn, Binding.entity == entity)) or 0

    def bling_orders(self) -> dict[str, dict[str, Any]]:
        return {str(o["numeroLoja"]): o for o in self.bling.records("sales")}

    def catalog(self, products: int = 12) -> None:
        """Bling's catalog, synced to CPlug (as the first sync does)."""
        seed_catalog(self.bling.seed, products)


@pytest.fixture
def pair(rt: Runtime, tmp_path: Path) -> Iterator[Pair]:
    bling, cplug = BlingSandbox(rate_per_second=60, nfe_delay_seconds=0.1), CPlugSandbox(rate_per_second=60)
    servers = [serve(bling.app), serve(cplug.app)]
    yield Pair(rt, bling, cplug, servers, tmp_path / "routes.yaml")
    for server in servers:
        server.stop()
