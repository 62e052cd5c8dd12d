"""Helpers for flow tests: write a route file for two served lojinha sandboxes and apply it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hub.config import apply as applying
from hub.config import routes as config
from hub.sync.loading import Runtime

DEMO_ROUTES = Path(__file__).parent / "example_plugin" / "demo-routes.yaml"


def apply_demo_routes(rt: Runtime, tmp: Path, erp_url: str, shop_url: str, **overrides: object) -> Path:
    """The shipped demo route file, pointed at the given sandboxes; ``overrides`` replace route keys."""
    env = {"LOJINHA_ERP_URL": erp_url, "LOJINHA_SHOP_URL": shop_url, "LOJINHA_ERP_CLIENT_ID": "demo",
           "LOJINHA_ERP_CLIENT_SECRET": "demo-secret", "LOJINHA_SHOP_CLIENT_ID": "demo",
           "LOJINHA_SHOP_CLIENT_SECRET": "demo-secret"}
    os.environ.update(env)
    data = yaml.safe_load(DEMO_ROUTES.read_text())
    for dotted, value in overrides.items():
        node = data["tenants"]["demo"]["routes"]
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp / "routes.yaml"
    path.write_text(yaml.safe_dump(data))
    parsed = config.load(path)
    errors, _ = applying.check(parsed, rt.registry, str(path))
    assert not errors, errors
    applying.apply(parsed, rt.store, rt.vault)
    return path


def apply_shipped(rt: Runtime, route_file: Path, tenant_id: str, ends: dict[str, tuple[Any, str]], path: Path,
                  **changes: object) -> dict[str, int]:
    """A plugin's shipped route file applied to served sandboxes: each connection named in ``ends`` (name -> sandbox,
    base URL) gets the sandbox's options and credentials (through environment variables, as a user's file reads
    them); ``changes`` replace dotted keys under the tenant."""
    data = yaml.safe_load(route_file.read_text())
    tenant = data["tenants"][tenant_id]
    for name, (box, base_url) in ends.items():
        info = box.connection(base_url)
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
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    parsed = config.load(path)
    errors, _ = applying.check(parsed, rt.registry, str(path))
    assert not errors, errors
    return applying.apply(parsed, rt.store, rt.vault, rt.registry)
