"""POS sales and a Bling catalog sync sharing one Bling account's budget: the sales go first, the catalog goes on.

CPlug -> Bling (the shipped route file, both platforms played by their sandboxes on loopback): the catalog route
reads Bling page by page and product by product while the sales route writes orders to Bling, on the same
account. What is checked is the order of the requests Bling received (its request log), never how long they took.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub.bench.chaos import seed_catalog
from hub.ratelimit import BULK_SHARE
from hub.sandbox import serve
from hub.sync.drain import drain
from hub.sync.loading import Runtime
from hub.sync.pull import sync_route
from hub_bling.sandbox import BlingSandbox
from hub_cplug.sandbox import CPlugSandbox

from tests.integration.conftest import TENANT, Pair

SALES = 4


@pytest.fixture
def shared(rt: Runtime, tmp_path: Path) -> Iterator[Pair]:
    bling, cplug = BlingSandbox(rate_per_second=5, nfe_delay_seconds=0.1), CPlugSandbox(rate_per_second=200)
    servers = [serve(bling.app), serve(cplug.app)]
    yield Pair(rt, bling, cplug, servers, tmp_path / "routes.yaml")
    for server in servers:
        server.stop()


def _sale_call(entry: dict) -> bool:
    return not any(entry["path"].startswith(p) for p in ("/produtos", "/categorias", "/vendedores", "/depositos",
                                                        "/estoques", "/oauth"))


def test_sales_written_during_a_catalog_sync_go_before_the_rest_of_the_catalog(shared: Pair) -> None:
    pair = shared
    pair.catalog(4)
    pair.apply(**{"connections.bling.options.page_size": 4})  # many catalog pages: a long read of the account
    assert pair.sync("catalog").ok
    cplug_skus = {p["sku"] for p in pair.cplug.records("products")}
    skus = [p["codigo"] for p in pair.bling.records("products")
            if p["situacao"] == "A" and not p.get("variacoes") and p["codigo"] in cplug_skus]
    seed_catalog(pair.bling.seed, 12)  # the rest of the catalog, read again in full
    for i in range(SALES):
        pair.cplug.sale(items=[{"sku": skus[i % len(skus)], "amount": 1}], store_id=1)
    assert sync_route(pair.rt, TENANT, "sales").ok  # read from CPlug: queued, not yet written to Bling
    pair.bling.stats(clear_log=True)

    catalog = threading.Thread(target=sync_route, args=(pair.rt, TENANT, "catalog"), kwargs={"full": True},
                               daemon=True)
    catalog.start()
    while catalog.is_alive() and len(pair.bling.request_log) < 5:  # the catalog is under way on the account
        threading.Event().wait(0.02)
    drain(pair.rt, threads=1, max_wait=5)  # one worker, one call after another: the hardest case for the catalog
    catalog.join(120)
    assert not catalog.is_alive()

    log = [_sale_call(e) for e in pair.bling.request_log]
    assert len(pair.bling_orders()) == SALES
    first, last = log.index(True), len(log) - 1 - log[::-1].index(True)
    sale_calls = sum(log[first:last + 1])
    catalog_between = (last + 1 - first) - sale_calls
    assert log[:first].count(False) >= 1 and log[last + 1:].count(False) > 0, "the catalog read on both sides"
    # Each urgent call waiting lets a catalog call in after BULK_SHARE - 1 of them; with one worker, the store work
    # between two sale calls is a gap no throttle can see, where the catalog takes a slot too (more of them on a
    # slow PostgreSQL, as CI once found: 9 among 16). First come, first served, the whole read went before the sales.
    assert catalog_between <= sale_calls // 2 + 2, (
        f"{catalog_between} catalog calls among {sale_calls} sale calls: the catalog yields to the sales")
    assert catalog_between >= 1 or sale_calls < BULK_SHARE, "and still gets its share while they go"

