"""``hub demo``: the main job on the embedded default, with every platform played by its sandbox."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.config import apply as applying
from hub.config import routes as config
from hub.crypto import Vault
from hub.errors import ConfigError
from hub.registry import get_registry
from hub.sandbox import Sandbox, Served, serve
from hub.settings import Settings
from hub.status import quarantined, tenant_status
from hub.store import migrate
from hub.store.engine import Store
from hub.sync.drain import drain
from hub.sync.loading import Runtime, find_route
from hub.sync.pull import sync_route

DEFAULT_ROUTES = Path(__file__).resolve().parents[2] / "tests" / "example_plugin" / "demo-routes.yaml"


def run_demo(routes_path: str | None, *, products: int = 200, sales: int = 40,
             echo: Callable[[str], None] | None = None, home: Path | None = None) -> dict[str, Any]:
    say = echo or (lambda _line: None)
    path = Path(routes_path) if routes_path else DEFAULT_ROUTES
    parsed = config.load(path)
    registry = get_registry()
    workdir = home or Path(tempfile.mkdtemp(prefix="hub-demo-"))
    settings = Settings(home=workdir)
    store = Store.from_url(settings.resolved_database_url())
    migrate.upgrade(store)
    rt = Runtime(store=store, vault=Vault(settings), registry=registry)

    boxes: dict[tuple[str, str], Sandbox] = {}
    served: list[Served] = []
    try:
        for tid, tenant in parsed.tenants.items():
            for cname, conn in tenant.connections.items():
                factory = registry.platform(conn.platform).sandbox
                if factory is None:
                    raise ConfigError(f"{path}: platform {conn.platform} ships no sandbox; the demo needs one")
                box = factory()
                srv = serve(box.app)
                served.append(srv)
                boxes[(tid, cname)] = box
                info = box.connection(srv.base_url)
                conn.options = {**conn.options, **info["options"]}
                creds: dict[str, config.EnvSecret | str] = {}
                for key, value in info["credentials"].items():
                    var = f"HUB_DEMO_{tid}_{cname}_{key}".upper().replace("-", "_")
                    os.environ[var] = value
                    creds[key] = config.EnvSecret(env=var)
                conn.credentials = creds
                say(f"sandbox {conn.platform} for {tid}/{cname} at {srv.base_url}")
        for tid, tenant in parsed.tenants.items():
            for route in tenant.routes.values():
                box = boxes[(tid, route.source)]
                for stream in route.streams:
                    count = {"products": products, "sales": sales}.get(stream, 10)
                    box.seed(stream, count)
                if "sales" in route.streams and "payment_methods" not in route.streams:
                    box.seed("payment_methods", 3)
                if "products" in route.streams and hasattr(box, "seed_invalid"):
                    box.seed_invalid("products")
        errors, _warnings = applying.check(parsed, registry, str(path))
        if errors:
            raise ConfigError("\n".join(errors))
        applying.apply(parsed, store, rt.vault)

        report: dict[str, Any] = {"database": settings.resolved_database_url(), "tenants": {}}
        for tid, tenant in parsed.tenants.items():
            for rname in tenant.routes:
                _run(rt, tid, rname, say)
            # A second round after users change things on the platforms: status changes become transitions.
            for rname, route in tenant.routes.items():
                box = boxes[(tid, route.source)]
                if "sales" in route.streams:
                    for record in box.records("sales")[:3]:
                        box.touch("sales", str(record["id"]))
                    say(f"{tid}/{rname}: 3 sales changed status on {route.source}; syncing again")
                    _run(rt, tid, rname, say)
            status = tenant_status(rt, tid)
            refused = quarantined(rt, tid)
            sinks = {f"{r.sink}.{stream}": len(boxes[(tid, r.sink)].records(stream))
                     for r in tenant.routes.values() for stream in r.streams}
            report["tenants"][tid] = {"status": status, "quarantined": refused, "on_sinks": sinks}
            for name, count in sinks.items():
                say(f"{tid}: {name} now holds {count} records")
            for q in refused:
                say(f"{tid}: quarantined {q['entity']} {q['record']}: {q['reason']} (fix: {q['fix']})")
        say(f"done; the demo's database is {settings.resolved_database_url()}")
        say(f"try: HUB_HOME={workdir} hub status demo   /   HUB_HOME={workdir} hub logs demo --errors")
        return report
    finally:
        for srv in served:
            srv.stop()
        store.engine.dispose()
        if home is None and echo is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(rt: Runtime, tenant: str, route: str, say: Callable[[str], None]) -> None:
    result = sync_route(rt, tenant, route, full=False)
    with rt.store.sessions() as s:
        route_id = find_route(s, tenant, route).id
    states = drain(rt, route_id)
    for r in result.streams:
        line = (f"{tenant}/{route} {r.stream}: {r.counts.new} new, {r.counts.changed} changed, "
                f"{r.counts.unchanged} unchanged, {r.counts.quarantined} quarantined")
        say(line if not r.error else f"{tenant}/{route} {r.stream}: FAILED: {r.error} (fix: {r.fix})")
    say(f"{tenant}/{route} operations: " + ", ".join(f"{n} {k}" for k, n in sorted(states.items())))
