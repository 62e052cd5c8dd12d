"""The shipped Zydon <-> Bling route file, applied to a Bling sandbox and a Zydon sandbox served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hub import webhooks
from hub.sandbox import Served, serve
from hub.sync.loading import Runtime
from hub_bling.sandbox import BlingSandbox
from hub_zydon.sandbox import ZydonSandbox

from tests.flows import ShippedPair

ROUTE_FILE = Path(__file__).resolve().parents[2] / "plugins/zydon/hub_zydon/routes/bling.yaml"
DEMO_FILE = ROUTE_FILE.with_name("bling-demo.yaml")
TENANT = "distribuidora"


@dataclass
class ZydonPair(ShippedPair):
    rt: Runtime
    bling: BlingSandbox
    zydon: ZydonSandbox
    servers: list[Served]
    path: Path
    route_file: ClassVar[Path] = ROUTE_FILE
    tenant: ClassVar[str] = TENANT

    def ends(self) -> dict[str, tuple[Any, str]]:
        return {"bling": (self.bling, self.servers[0].base_url), "zydon": (self.zydon, self.servers[1].base_url)}

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
