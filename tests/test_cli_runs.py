"""`hub runs` when two runs of one route overlap (an operator's `hub sync` while `hub run`'s scheduled run of the
same route is still going): each run reports only what it did itself, never the other's operations, calls or
refused records."""

from __future__ import annotations

import contextvars
import json

from hub.runs import end_run
from hub.store.schema import ApiCall
from hub.sync.drain import drain
from hub.sync.pull import sync_route
from sqlalchemy import func, select

from tests.flows import apply_demo_routes


def test_overlapping_runs_of_one_route_each_count_only_their_own_work(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 6)
    erp.seed_invalid("products")
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})

    # Run A, as `hub run`'s worker thread runs it: it pulls, and is still open when the operator's sync starts.
    worker = contextvars.Context()
    first = worker.run(sync_route, rt, "demo", "catalog", trigger="schedule", close_run=False)
    assert first.run_id is not None and first.streams[0].counts.new == 6

    # Run B, the operator's `hub sync`, starts and ends inside A: it pushes the 6 operations A queued.
    synced = hub("sync", "demo", "catalog", "--json")
    assert synced.exit_code == 0, synced.output
    second = json.loads(synced.stdout)
    assert second["operations"] == {"done": 6}, "B reports the operations it ran"

    # A goes on: nothing is left to push; then it ends.
    worker.run(drain, rt, None)
    worker.run(end_run, rt, first.run_id, first)

    runs = {r["id"]: r for r in json.loads(hub("runs", "demo", "--json").stdout)}
    a, b = runs[first.run_id], runs[second["run"]]
    assert (a["trigger"], b["trigger"]) == ("schedule", "sync")
    assert a["streams"]["products"]["new"] == 6 and a["streams"]["products"]["quarantined"] == 1
    assert a["operations_done"] == 0 and a["operations_failed"] == 0, "B's pushes are not A's"
    assert b["operations_done"] == 6
    assert a["quarantined"] == 1, "A refused the invalid product"
    with rt.store.sessions() as s:
        calls = s.scalar(select(func.count()).select_from(ApiCall)) or 0
    assert a["api_calls"] > 0 and b["api_calls"] > 6, "B's calls include its 6 writes"
    assert a["api_calls"] + b["api_calls"] == calls, "every call counted once, by the run that made it"
    assert len(shop.records("products")) == 6

    # Back to back: a third run that finds nothing new reports nothing of the two before it.
    third = json.loads(hub("sync", "demo", "catalog", "--json").stdout)
    c = {r["id"]: r for r in json.loads(hub("runs", "demo", "--json").stdout)}[third["run"]]
    assert c["operations_done"] == 0 and c["operations_failed"] == 0
    with rt.store.sessions() as s:
        after = s.scalar(select(func.count()).select_from(ApiCall)) or 0
    assert c["api_calls"] == after - calls, "only the third run's own calls"


def test_a_running_run_shows_its_own_figures_so_far(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 4)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    worker = contextvars.Context()
    open_run = worker.run(sync_route, rt, "demo", "catalog", trigger="schedule", close_run=False)
    assert hub("sync", "demo", "catalog").exit_code == 0  # pushes the 4 operations the open run queued
    live = {r["id"]: r for r in json.loads(hub("runs", "demo", "--json").stdout)}[open_run.run_id]
    assert live["status"] == "running" and live["ended_at"] is None
    assert live["operations_done"] == 0 and live["api_calls"] > 0, "its pull's calls, not the sync's pushes"
    worker.run(end_run, rt, open_run.run_id, open_run)


def test_operations_a_worker_sends_stay_with_the_run_that_queued_them(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 5)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    scheduled = contextvars.Context()
    run = scheduled.run(sync_route, rt, "demo", "catalog", trigger="schedule", close_run=False)
    drain(rt)  # `hub run`'s workers: outside any run
    live = {r["id"]: r for r in json.loads(hub("runs", "demo", "--json").stdout)}[run.run_id]
    assert live["status"] == "running" and live["operations_done"] == 5
    scheduled.run(end_run, rt, run.run_id, run)
    ended = {r["id"]: r for r in json.loads(hub("runs", "demo", "--json").stdout)}[run.run_id]
    assert ended["status"] == "ok" and ended["operations_done"] == 5 and len(shop.records("products")) == 5
