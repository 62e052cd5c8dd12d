"""``hub bench bling-pull``: a full product pull through hub from a Bling sandbox, then incremental runs, measured.

The sandbox runs in its own process (as Bling does), so the figures are the hub's alone: its wall time and CPU
time, API calls per product, 429s and peak RSS (this process's: the sandbox's memory is not counted). The same
catalog is then read by a bare httpx loop making the same requests (list pages in the three stock passes, one
detail per product) with no store, no mapping and no budget: the floor.

After the first sync, on the same store and sandbox: an incremental run with nothing changed, one after a
product changed in Bling, and one that reads a product a webhook announced (``pull_records``), each with the
calls it cost: what a catalog's steady state costs, which must not grow with the catalog.
"""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import httpx

QUIET_SECONDS = 600
"""The seeded catalog's change dates are moved this far back: the runs after the first see only the bench's
change, not a seeded product that happened to change in the last minutes."""


UNTHROTTLED = 1_000_000.0
"""The hub's request rate in the unthrottled phase: its budget is still consulted on every call, but never waits."""


def _serve(pipe: Pipe, products: int, rate: float | None) -> None:
    from hub.sandbox import serve

    from hub_bling.sandbox import BlingSandbox

    box = BlingSandbox(rate_per_second=rate, daily_limit=None)
    box.seed("categories", 12)
    box.seed("products", products)
    box.age("products", QUIET_SECONDS)
    served = serve(box.app)
    st = box.state
    with st.lock:  # from the state: box.records() copies every product's detail (a large transient at 100,000)
        listed = sum(1 for meta in st.pmeta.values() if meta.parent is None)
        simple = next(pid for pid, meta in st.pmeta.items()
                      if meta.parent is None and not meta.children and st.products[pid]["situacao"] == "A")
    pipe.send((served.base_url, box.connection(served.base_url), listed, str(simple)))
    while True:
        command, *args = pipe.recv()
        if command == "stop":
            break
        if command == "touch":
            box.touch("products", args[0])
        pipe.send(box.requests)
    pipe.send({"requests": box.requests, "throttled": box.throttled})
    served.stop()


class _Sandbox:
    """The sandbox process and what the bench asks of it."""

    def __init__(self, products: int, rate: float | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.proc = context.Process(target=_serve, args=(child, products, rate), daemon=True)
        self.proc.start()
        self.base_url, self.connection, self.listed, self.product = self.pipe.recv()
        if rate is None:  # the sandbox's default connection paces the hub at 1,000 req/s: a ceiling the bare loop lacks
            self.connection["options"].update(rate_per_second=UNTHROTTLED, daily_limit=int(UNTHROTTLED) * 100)

    def ask(self, *command: Any) -> int:
        self.pipe.send(command)
        requests: int = self.pipe.recv()
        return requests

    def stop(self) -> dict[str, int]:
        self.pipe.send(("stop",))
        stats: dict[str, int] = self.pipe.recv()
        self.proc.join(timeout=10)
        return stats

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()


def _timed(box: _Sandbox, run: Any) -> dict[str, Any]:
    """One hub run: the sandbox's requests it cost, its wall time and the hub process's CPU time."""
    before = box.ask("requests")
    wall, cpu = time.perf_counter(), time.process_time()
    report = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = report.streams[0] if report.streams else None
    return {"calls": box.ask("requests") - before, "wall_seconds": round(wall, 3), "hub_cpu_seconds": round(cpu, 3),
            "products": result.counts.new + result.counts.changed if result else 0,
            "error": result.error if result else None}


def _hub_runs(box: _Sandbox, tmp: Path, database_url: str | None) -> dict[str, Any]:
    """The first sync, then the incremental runs, on one store."""
    from hub.testing import announce, pull_route, scratch_runtime

    rt = scratch_runtime(tmp, "bling", box.connection, "products", "products", database_url=database_url)
    try:
        first = _timed(box, lambda: pull_route(rt, full=True))
        no_change = _timed(box, lambda: pull_route(rt))
        box.ask("touch", box.product)
        one_change = _timed(box, lambda: pull_route(rt))
        box.ask("touch", box.product)
        announce(rt, "products", [box.product])
        announced = _timed(box, lambda: pull_route(rt, targeted=True))
    finally:
        rt.store.engine.dispose()
    return {"first": first, "no_change": no_change, "one_change": one_change, "one_change_webhook": announced}


def _bare_pull(connection: dict[str, Any]) -> dict[str, Any]:
    """The same requests with nothing around them: token, list pages, one detail per product."""
    creds = connection["credentials"]
    started = time.perf_counter()
    with httpx.Client(base_url=connection["options"]["base_url"], timeout=30) as client:
        grant = {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"]}
        token = client.post("/oauth/token", data=grant, auth=(creds["client_id"], creds["client_secret"]),
                            headers={"enable-jwt": "1"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}", "enable-jwt": "1"}
        products = 0
        for stock_filter in (1, 0, 2):
            page = 1
            while True:
                rows = client.get("/produtos", headers=headers, params={
                    "pagina": page, "limite": 100, "criterio": 2, "tipo": "T",
                    "filtroSaldoEstoque": stock_filter}).json()["data"]
                for row in rows:
                    if not row.get("idProdutoPai"):
                        client.get(f"/produtos/{row['id']}", headers=headers).json()
                        products += 1
                if len(rows) < 100:
                    break
                page += 1
    return {"seconds": round(time.perf_counter() - started, 2), "products": products}


def _phase(products: int, rate: float | None, bare: bool, database_url: str | None = None) -> dict[str, Any]:
    from hub.testing import emptied_database

    box = _Sandbox(products, rate)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            runs = _hub_runs(box, Path(tmp), emptied_database(database_url) if database_url else None)
        stats = box.stop()
    finally:
        box.kill()
    first = runs.pop("first")
    requests, seconds = first["calls"], first["wall_seconds"]
    out: dict[str, Any] = {
        "catalog_products": box.listed,
        "products": first["products"],
        "wall_seconds": round(seconds, 2),
        "hub_cpu_seconds": round(first["hub_cpu_seconds"], 2),
        "products_per_s": round(first["products"] / seconds, 1) if seconds else None,
        "api_calls": requests,
        "api_calls_per_product": round(requests / max(first["products"], 1), 3),
        "requests_per_s": round(requests / seconds, 2) if seconds else None,
        "http_429": stats["throttled"],
        "error": first["error"],
        "incremental": runs,
    }
    if rate:
        out["rate_limit_per_s"] = rate
        out["fraction_of_ceiling"] = round(requests / seconds / rate, 3)
    if bare:
        box = _Sandbox(products, rate)
        try:
            floor = _bare_pull(box.connection)
            box.stop()
        finally:
            box.kill()
        out["bare_httpx_seconds"] = floor["seconds"]
        out["bare_httpx_products"] = floor["products"]
        out["hub_over_bare"] = round(seconds / floor["seconds"], 2) if floor["seconds"] else None
    return out


def run(products: int, throttled_products: int, database_url: str | None = None) -> dict[str, Any]:
    """``database_url``: the hub's store on that scratch PostgreSQL database (emptied first) instead of a SQLite
    file, to read the plans of a large store's queries."""
    figures: dict[str, Any] = {}
    if throttled_products:
        figures["throttled"] = _phase(throttled_products, 3.0, bare=False, database_url=database_url)
    figures["unthrottled"] = _phase(products, None, bare=True, database_url=database_url)
    # This process's peak: the hub's runs and the bare loop; the sandboxes run in their own processes.
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return figures
