"""The shipped Plugg.to <-> Bling route file, applied to a Bling sandbox and a Plugg.to sandbox served on loopback."""

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
from hub_pluggto.plugin import ROUTES
from hub_pluggto.sandbox import PluggtoSandbox

from tests.flows import ShippedPair

ROUTE_FILE = ROUTES / "bling.yaml"
DEMO_FILE = ROUTES / "bling-demo.yaml"
TENANT = "loja"
DEPOSITS = ("Geral", "CD Sul")


@dataclass
class PluggtoPair(ShippedPair):
    rt: Runtime
    bling: BlingSandbox
    pluggto: PluggtoSandbox
    servers: list[Served]
    path: Path
    route_file: ClassVar[Path] = ROUTE_FILE
    tenant: ClassVar[str] = TENANT

    def ends(self) -> dict[str, tuple[Any, str]]:
        return {"bling": (self.bling, self.servers[0].base_url),
                "pluggto": (self.pluggto, self.servers[1].base_url)}

    def writes(self, box: Any, since: int = 0) -> list[dict[str, Any]]:
        """A sandbox's write requests (not token calls) from position ``since`` of its request log."""
        return [r for r in box.request_log[since:] if r["method"] != "GET" and "oauth" not in r["path"]]

    def bling_order(self, pluggto_id: str) -> dict[str, Any]:
        return next(o for o in self.bling.records("sales") if str(o.get("numeroLoja")) == pluggto_id)

    def simple_products(self) -> list[dict[str, Any]]:
        """Bling's active products without variations (each its own stock holder)."""
        return [p for p in self.bling.records("products")
                if p["situacao"] == "A" and not p.get("variacao") and not p.get("variacoes")]

    def receiver(self) -> Served:
        """The hub's webhook receiver, with Plugg.to's sandbox notifying the URL registered for the connection
        (its token in the query string). Stop it when done."""
        served = serve(webhooks.app(self.rt))
        self.pluggto.notify_url = (f"{served.base_url}/webhooks/{TENANT}/pluggto?token="
                                   f"{self.pluggto.webhook_token}")
        return served


@pytest.fixture(name="ppair")
def ppair_fixture(rt: Runtime, tmp_path: Path) -> Iterator[PluggtoPair]:
    bling = BlingSandbox(rate_per_second=60, nfe_delay_seconds=0.1, deposits=DEPOSITS)
    pluggto = PluggtoSandbox(rate_per_second=None)
    servers = [serve(bling.app), serve(pluggto.app)]
    yield PluggtoPair(rt, bling, pluggto, servers, tmp_path / "routes.yaml")
    for server in servers:
        server.stop()
