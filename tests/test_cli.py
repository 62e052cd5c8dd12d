"""The README's first command and the operator's screens, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner
from hub.cli import cli
from hub.sync.pull import sync_route

from tests.flows import apply_demo_routes


def test_hub_demo_runs_the_main_job_on_the_embedded_default(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "hub")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    scenario = os.path.join(os.path.dirname(__file__), "example_plugin", "demo.yaml")
    result = subprocess.run([exe, "demo", "--scenario", scenario], capture_output=True, text=True,
                            env={**env, "HUB_HOME": str(tmp_path)}, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "shop after: products 30" in out
    assert "erp after: products 31, categories 10, customers" in out and "sales 6" in out
    assert "quarantined products" in out


def test_status_and_logs_show_sync_times_failures_and_fixes(rt, settings, tmp_path, lojinha_pair, monkeypatch):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 5)
    erp.seed_invalid("products")
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    sync_route(rt, "demo", "catalog")
    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    from hub.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        status = runner.invoke(cli, ["status", "demo", "--json"])
        assert status.exit_code == 0, status.output
        data = json.loads(status.output)
        (catalog,) = [r for r in data["routes"] if r["name"] == "catalog"]
        (products,) = catalog["streams"]
        assert products["last_success_at"] and products["records"] == 5 and products["pending"] == 5
        assert data["quarantined"] == 1
        text = runner.invoke(cli, ["status", "demo"]).output
        assert "last successful sync" in text and "products" in text
        logs = runner.invoke(cli, ["logs", "demo"]).output
        assert "GET /products" in logs and "quarantined:" in logs and "fix:" in logs
    finally:
        get_settings.cache_clear()


def test_routes_validate_and_sync_commands(rt, settings, tmp_path, lojinha_pair, monkeypatch):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 12)
    path = apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    from hub.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        valid = runner.invoke(cli, ["routes", "validate", str(path)])
        assert valid.exit_code == 0 and "valid" in valid.output
        result = runner.invoke(cli, ["sync", "demo", "catalog", "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output[result.output.index("{"):])
        assert data["streams"][0]["new"] == 12 and data["operations"] == {"done": 12}
        assert len(shop.records("products")) == 12
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 1\ntenants:\n  Demo!: {name: x}\n")
        refused = runner.invoke(cli, ["routes", "validate", str(bad)])
        assert refused.exit_code == 1 and "tenants.Demo!" in refused.output and "fix:" in refused.output
    finally:
        get_settings.cache_clear()


def test_credentials_never_print():
    from hub.sync.context import ConnectorContext

    ctx = ConnectorContext(tenant="t", connection="c", platform="p", options={},
                           credentials={"client_secret": "hunter2"})
    assert "hunter2" not in repr(ctx) and "hunter2" not in str(ctx.credentials)
