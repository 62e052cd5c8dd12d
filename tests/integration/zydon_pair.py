"""The shipped Zydon <-> Bling route file, applied to a Bling sandbox and a Zydon sandbox served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hub import webhooks
from hub.sandbox import Served, serve
from hub.store.schema import Binding, Connection, Operation, Quarantine, Record
from hub.sync.drain import drain
from hub.sync.loading import Runtime
from hub.sync.pull import SyncReport, sync_route
from hub_bling.sandbox import BlingSandbox
from hub_zydon.sandbox import ZydonSandbox
from sqlalchemy import func, select

from tests.flows import apply_shipped

ROUTE_FILE = Path(__file__).resolve().parents[2] / "plugins/zydon/hub_zydon/routes/bling.yaml"
DEMO_FILE = ROUTE_FILE.with_name("bling-demo.yaml")
TENANT = "distribuidora"


@dataclass
class ZydonPair:
    rt: Runtime
    bling: BlingSandbox
    zydon: ZydonSandbox
    servers: list[Served]
    path: Path

    def apply(self, **changes: Any) -> dict[str, int]:
        """Apply the shipped route file (with ``changes``: dotted keys under the tenant) to the sandboxes."""
        return apply_shipped(self.rt, ROUTE_FILE, TENANT, {"bling": (self.bling, self.servers[0].base_url),
                                                           "zydon": (self.zydon, self.servers[1].base_url)},
                             self.path, **changes)

    def sync(self, route: str, full: bool = False) -> SyncReport:
        report = sync_route(self.rt, TENANT, route, full=full)
        drain(self.rt, max_wait=5)
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
            return list(s.scalars(select(Quarantine).where(Quarantine.tenant_id == TENANT,
                                                           Quarantine.resolved_at.is_(None))))

    def stored(self, entity: str) -> list[Record]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Record).where(Record.tenant_id == TENANT, Record.entity == entity)))

    def bound(self, connection: str, entity: str) -> int:
        with self.rt.store.sessions() as s:
            conn = s.scalar(select(Connection.id).where(Connection.tenant_id == TENANT,
                                                        Connection.name == connection))
            return s.scalar(select(func.count()).select_from(Binding).where(
                Binding.connection_id == conn, Binding.entity == entity)) or 0

    def overrides(self) -> list[dict[str, Any]]:
        """Zydon's stock override calls, as its request log shows them."""
        return [r for r in self.zydon.request_log if r["path"].endswith("/stock/override")]

    def bling_webhooks(self) -> Served:
        """The hub's webhook receiver, with Bling's sandbox sending its events to it (stop it when done)."""
        receiver = serve(webhooks.app(self.rt))
        self.bling.webhook_url = f"{receiver.base_url}/webhooks/{TENANT}/bling"
        return receiver


@pytest.fixture(name="zpair")
def zpair_fixture(rt: Runtime, tmp_path: Path) -> Iterator[ZydonPair]:
    bling = BlingSandbox(rate_per_second=60, nfe_delay_seconds=0.1, deposits=("Geral",))
    zydon = ZydonSandbox(rate_per_second=None, page_size=50)
    servers = [serve(bling.app), serve(zydon.app)]
    yield ZydonPair(rt, bling, zydon, servers, tmp_path / "routes.yaml")
    for server in servers:
        server.stop()
