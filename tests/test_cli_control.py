"""`hub pause`, `hub resume`, `hub uninstall`, `hub logs` filters and `hub status` times, run as an operator does;
nothing queued is lost on the way."""

from __future__ import annotations

import json
import re

from hub.runner.service import relay_once, schedule_once
from hub.store.schema import Operation
from sqlalchemy import func, select

from tests.flows import apply_demo_routes


def pending(rt) -> int:
    with rt.store.sessions() as s:
        return s.scalar(select(func.count()).select_from(Operation).where(Operation.state == "pending")) or 0


def test_pause_resume_and_uninstall_keep_every_queued_operation(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 6)
    path = apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert hub("sync", "demo", "catalog", "--no-push").exit_code == 0
    assert pending(rt) == 6

    paused = hub("pause", "demo", "shop", "--json")
    assert paused.exit_code == 0, paused.output
    assert json.loads(paused.stdout) == {"connection": "shop", "state": "operator", "routes": ["catalog", "sales"],
                                         "queued_operations": 6}
    sent: list[int] = []
    assert relay_once(rt, sent.append) == 0 and schedule_once(rt, lambda *_: None) == 0, "nothing runs"
    refused = hub("sync", "demo", "catalog")
    assert refused.exit_code == 1 and "paused by the operator" in refused.stderr and "hub resume" in refused.stderr
    assert "PAUSED (hub pause)" in hub("status", "demo").output

    assert hub("resume", "demo", "shop").exit_code == 0
    assert hub("pause", "demo", "--route", "catalog").exit_code == 0
    assert relay_once(rt, sent.append) == 0, "a paused route's operations wait too"
    assert "(PAUSED: hub resume)" in hub("status", "demo").output
    assert hub("resume", "demo", "--route", "catalog").exit_code == 0

    gone = hub("uninstall", "demo", "shop")
    assert gone.exit_code == 0 and "6 queued operations are kept" in gone.output
    assert relay_once(rt, sent.append) == 0 and pending(rt) == 6
    status = json.loads(hub("status", "demo", "--json").stdout)
    assert not any(r["enabled"] for r in status["routes"]), "its routes are stopped"
    again = hub("resume", "demo", "shop")
    assert again.exit_code == 1 and "`hub routes apply FILE` reinstalls it" in again.stderr

    applied = hub("routes", "apply", str(path), "--json")
    assert applied.exit_code == 0, applied.output
    report = json.loads(applied.stdout)
    assert report["applied"]["routes"] == 2 and report["applied"]["disabled"] == 0
    assert any("demo/shop was uninstalled; it is reinstalled" in n for n in report["notices"])
    pushed = json.loads(hub("sync", "demo", "catalog", "--json").stdout)
    assert pushed["operations"] == {"done": 6} and pending(rt) == 0
    assert len(shop.records("products")) == 6, "every operation queued before the pause reached the shop"
    assert not sent


def test_logs_errors_show_full_actions_connections_and_filters(rt, tmp_path, lojinha_pair, hub):
    (_erp, erp_url), (shop, shop_url) = lojinha_pair
    shop.seed("payment_methods", 3)
    shop.seed("sales", 2)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"sales.mappings.statuses": {"nenhum": "nenhum"}})
    assert hub("sync", "demo", "sales").exit_code == 1
    everything = json.loads(hub("logs", "demo", "--json").stdout)["api_log"]
    assert {c["connection"] for c in everything} >= {"shop"}
    errors = hub("logs", "demo", "--errors", "--connection", "erp")
    assert errors.exit_code == 0, errors.output
    assert "times in UTC" in errors.output
    assert not re.search(r"\bshop\b  ", errors.output), "--connection keeps one connection's calls"
    only_shop = json.loads(hub("logs", "demo", "--connection", "shop", "--json").stdout)["api_log"]
    assert only_shop and all(c["connection"] == "shop" for c in only_shop)
    gets = json.loads(hub("logs", "demo", "--action", "GET", "--status", "200", "--since", "1h", "--json").stdout)
    assert gets["api_log"] and all("GET" in c["action"] and c["status"] == 200 for c in gets["api_log"])
    long_action = max((c["action"] for c in everything), key=len)
    assert long_action in hub("logs", "demo").output, "the action is printed in full"
    bad = hub("logs", "demo", "--since", "yesterday")
    assert bad.exit_code == 2 and "neither a duration" in bad.output
    nobody = hub("logs", "demo", "--connection", "nope")
    assert nobody.exit_code == 1 and "no connection 'nope'" in nobody.stderr


def test_status_labels_its_times(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 2)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert hub("sync", "demo", "catalog").exit_code == 0
    utc = hub("status", "demo").output
    assert utc.startswith("times in UTC") and "last successful sync (UTC)" in utc
    local = hub("status", "demo", "--local").output
    first = local.splitlines()[0]
    assert first.startswith("times in ") and "--local" not in first, "the machine's zone, named"


def test_readme_command_table_matches_hub_help():
    from pathlib import Path

    from hub.cli import with_plugins

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("```", 2)[1]
    listed = {line.split()[1] for line in table.splitlines() if line.startswith("hub ")}
    commands = set(with_plugins().commands)
    assert commands == listed, f"missing from the README: {commands - listed}; gone: {listed - commands}"
