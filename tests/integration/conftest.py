"""The shipped CPlug <-> Bling route file, applied to a Bling sandbox and a CPlug sandbox served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hub.bench.chaos import seed_catalog
from hub.sandbox import Served, serve
from hub.store.schema import ApiCall, Binding, Connection, Operation, Quarantine
from hub.sync.drain import drain
from hub.sync.loading import Runtime
from hub.sync.pull import SyncReport, sync_route
from hub_bling.sandbox import BlingSandbox
from hub_cplug.plugin import ROUTES
from hub_cplug.sandbox import CPlugSandbox
from sqlalchemy import func, select

from tests.flows import apply_shipped

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
        return apply_shipped(self.rt, ROUTE_FILE, TENANT, {"bling": (self.bling, self.servers[0].base_url),
                                                           "cplug": (self.cplug, self.servers[1].base_url)},
                             self.path, **changes)

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
