"""``hub bench bling-pull``: a full product pull through hub from a Bling sandbox, measured.

The sandbox runs in its own process (as Bling does), so the figures are the hub's alone: its wall time, API calls
per product, 429s and peak RSS. The same catalog is then read by a bare httpx loop making the same requests (list
pages in the three stock passes, one detail per product) with no store, no mapping and no budget: the floor.
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


def _serve(pipe: Pipe, products: int, rate: float | None) -> None:
    from hub.sandbox import serve

    from hub_bling.sandbox import BlingSandbox

    box = BlingSandbox(rate_per_second=rate, daily_limit=None)
    box.seed("categories", 12)
    box.seed("products", products)
    served = serve(box.app)
    pipe.send((served.base_url, box.connection(served.base_url), len(box.records("products"))))
    pipe.recv()
    pipe.send({"requests": box.requests, "throttled": box.throttled})
    served.stop()


def _start(products: int, rate: float | None) -> tuple[Any, Pipe, str, dict[str, Any], int]:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, products, rate), daemon=True)
    proc.start()
    base_url, connection, listed = parent.recv()
    return proc, parent, base_url, connection, listed


def _stop(proc: Any, pipe: Pipe) -> dict[str, int]:
    pipe.send("stop")
    stats: dict[str, int] = pipe.recv()
    proc.join(timeout=10)
    return stats


def _hub_pull(connection: dict[str, Any], tmp: Path) -> dict[str, Any]:
    from hub.testing import pull_once

    started = time.perf_counter()
    report = pull_once(tmp, "bling", connection, "products")
    seconds = time.perf_counter() - started
    result = report.streams[0]
    return {"seconds": round(seconds, 2), "products": result.counts.new + result.counts.changed,
            "quarantined": result.counts.quarantined, "error": result.error}


def _bare_pull(base_url: str, connection: dict[str, Any]) -> dict[str, Any]:
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


def _phase(products: int, rate: float | None, bare: bool) -> dict[str, Any]:
    proc, pipe, base_url, connection, listed = _start(products, rate)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            hub = _hub_pull(connection, Path(tmp))
        stats = _stop(proc, pipe)
    finally:
        if proc.is_alive():
            proc.kill()
    requests = stats["requests"]
    out: dict[str, Any] = {
        "catalog_products": listed,
        "products": hub["products"],
        "wall_seconds": hub["seconds"],
        "products_per_s": round(hub["products"] / hub["seconds"], 1) if hub["seconds"] else None,
        "api_calls": requests,
        "api_calls_per_product": round(requests / max(hub["products"], 1), 3),
        "requests_per_s": round(requests / hub["seconds"], 2) if hub["seconds"] else None,
        "http_429": stats["throttled"],
        "error": hub["error"],
    }
    if rate:
        out["rate_limit_per_s"] = rate
        out["fraction_of_ceiling"] = round(requests / hub["seconds"] / rate, 3)
    if bare:
        proc, pipe, base_url, connection, _ = _start(products, rate)
        try:
            floor = _bare_pull(base_url, connection)
            _stop(proc, pipe)
        finally:
            if proc.is_alive():
                proc.kill()
        out["bare_httpx_seconds"] = floor["seconds"]
        out["bare_httpx_products"] = floor["products"]
        out["hub_over_bare"] = round(hub["seconds"] / floor["seconds"], 2) if floor["seconds"] else None
    return out


def run(products: int, throttled_products: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if throttled_products:
        figures["throttled"] = _phase(throttled_products, 3.0, bare=False)
    figures["unthrottled"] = _phase(products, None, bare=True)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return figures
