"""The shipped CPlug <-> Bling route file, applied to a Bling sandbox and a CPlug sandbox served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hub.bench.chaos import seed_catalog
from hub.sandbox import Served, serve
from hub.store.schema import ApiCall
from hub.sync.loading import Runtime
from hub_bling.sandbox import BlingSandbox
from hub_cplug.plugin import ROUTES
from hub_cplug.sandbox import CPlugSandbox
from sqlalchemy import select

from tests.flows import ShippedPair

ROUTE_FILE = ROUTES / "bling.yaml"
TENANT = "loja"


@dataclass
class Pair(ShippedPair):
    rt: Runtime
    bling: BlingSandbox
    cplug: CPlugSandbox
    servers: list[Served]
    path: Path
    route_file: ClassVar[Path] = ROUTE_FILE
    tenant: ClassVar[str] = TENANT

    def ends(self) -> dict[str, tuple[Any, str]]:
        return {"bling": (self.bling, self.servers[0].base_url), "cplug": (self.cplug, self.servers[1].base_url)}

    def api_log(self) -> list[ApiCall]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(ApiCall).where(ApiCall.tenant_id == TENANT)))

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
