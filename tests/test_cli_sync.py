"""`hub sync`, `hub runs` and `hub state` as an operator runs them: JSON that parses, exit codes that say when work
failed, progress that moves, and the run history."""

from __future__ import annotations

import json

from tests.flows import apply_demo_routes


def test_sync_json_prints_only_json_and_progress_goes_to_stderr_as_plain_lines(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 12)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    result = hub("sync", "demo", "catalog", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the whole of stdout: nothing printed before or after
    assert data["ok"] is True and data["operations"] == {"done": 12} and data["quarantined"] == 0
    assert data["streams"][0]["new"] == 12 and data["api_calls"] > 0
    assert result.stderr == "", "--json prints no progress"

    erp.seed("products", 3)
    text = hub("sync", "demo", "catalog")
    assert text.exit_code == 0, text.output
    err = text.stderr
    assert err.startswith("sync demo/catalog: reading products"), "the pull says what it does at once"
    assert "products: reading..." in err
    assert "pushing: 3 operations to send" in err and "pushing: 3/3 operations (3 done)" in err
    assert "\r" not in err, "no carriage-return bar when stderr is not a terminal"
    assert "operations: 3 done" in text.stdout and "quarantined: 0 records" in text.stdout
    assert len(shop.records("products")) == 15


def test_sync_exits_1_and_counts_records_refused_at_push_time(rt, tmp_path, lojinha_pair, hub):
    (_erp, erp_url), (shop, shop_url) = lojinha_pair
    shop.seed("payment_methods", 3)
    shop.seed("sales", 4)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"sales.mappings.statuses": {"nenhum": "nenhum"}})
    result = hub("sync", "demo", "sales", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["operations"] == {"failed": 4}
    assert data["streams"][0]["quarantined"] == 0, "the pull accepted them"
    assert data["quarantined"] == 4, "refused at push time, and counted"
    retried = hub("retry", "demo", "--json")
    assert retried.exit_code == 0 and json.loads(retried.stdout)["due_again"] == 4
    text = hub("sync", "demo", "sales")
    assert text.exit_code == 1, text.output
    assert "operations: 4 failed" in text.stdout
    assert "4 operations failed: `hub logs demo --errors` shows why" in text.stderr


def test_runs_lists_each_sync_with_streams_operations_and_calls(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("categories", 2)
    erp.seed("products", 5)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["categories", "products"]})
    assert hub("sync", "demo", "catalog", "--stream", "products").exit_code == 0
    assert hub("sync", "demo", "catalog").exit_code == 0
    runs = json.loads(hub("runs", "demo", "--json").stdout)
    assert [r["trigger"] for r in runs] == ["sync", "sync"] and all(r["status"] == "ok" for r in runs)
    latest, first = runs
    assert list(first["streams"]) == ["products"], "--stream read only that stream"
    assert first["streams"]["products"]["new"] == 5 and first["operations_done"] == 5
    assert latest["streams"]["categories"]["new"] == 2 and latest["streams"]["products"]["new"] == 0
    assert first["api_calls"] > 0 and first["ended_at"] and first["rate_limited"] == 0
    text = hub("runs", "demo", "--route", "catalog")
    assert text.exit_code == 0 and "(sync) OK" in text.output and "products: 5 read, 5 new" in text.output
    unknown = hub("sync", "demo", "catalog", "--stream", "produtos")
    assert unknown.exit_code == 1 and "no stream produtos" in unknown.stderr and "Traceback" not in unknown.output


def test_state_shows_and_resets_a_streams_cursor(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 4)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert hub("sync", "demo", "catalog").exit_code == 0
    shown = json.loads(hub("state", "demo", "catalog", "--json").stdout)
    (products,) = shown["streams"]
    assert products["position"] and products["last_success_at"]
    again = json.loads(hub("sync", "demo", "catalog", "--json").stdout)
    assert again["streams"][0]["unchanged"] < 4, "incremental: only the re-read window"
    reset = hub("state", "demo", "catalog", "--stream", "products", "--reset")
    assert reset.exit_code == 0 and "reads products from the start" in reset.output
    assert json.loads(hub("state", "demo", "catalog", "--json").stdout)["streams"][0]["position"] is None
    full = json.loads(hub("sync", "demo", "catalog", "--json").stdout)
    assert full["streams"][0]["unchanged"] == 4 and full["operations"] == {}, "read again, nothing re-sent"


def test_json_failures_are_a_json_object_on_stdout_with_exit_1(rt, tmp_path, lojinha_pair, hub):
    (_erp, erp_url), (_shop, shop_url) = lojinha_pair
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    unknown = hub("sync", "demo", "catalog", "--stream", "produtos", "--json")
    assert unknown.exit_code == 1 and unknown.stderr == ""
    error = json.loads(unknown.stdout)
    assert error["ok"] is False and "no stream produtos" in error["error"] and error["fix"]
    nobody = json.loads(hub("status", "nobody", "--json").stdout)
    assert nobody == {"ok": False, "error": "no tenant 'nobody'",
                      "fix": "Apply a route file that declares it: hub routes apply FILE"}
