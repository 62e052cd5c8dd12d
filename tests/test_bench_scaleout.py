"""``hub bench scaleout`` at CI size: 6 tenants' Bling -> Zydon catalogs drained by 1 then 2 `hub run` processes on
PostgreSQL + Redis, each tenant on accounts of its own served by the sandboxes over real HTTP. Counts only, never
times (the CI machine's speed is not the hub's): every operation done exactly once, each tenant's Zydon account
holding each of its Bling products once, nothing failed, both processes running."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from hub.cli import with_plugins

DATABASE_URL = os.environ.get("HUB_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "")
TENANTS, RECORDS = 6, 3

shared_backends = pytest.mark.skipif(
    not DATABASE_URL.startswith("postgresql") or not REDIS_URL,
    reason="the scale-out bench runs several `hub run` processes: it needs HUB_TEST_DATABASE_URL (PostgreSQL) and "
           "HUB_TEST_REDIS_URL")


@pytest.mark.slow
@shared_backends
def test_scaleout_bench_does_every_operation_once_with_one_and_two_workers() -> None:
    result = CliRunner().invoke(with_plugins(), [
        "bench", "scaleout", "--tenants", str(TENANTS), "--workers", "1,2", "--records", str(RECORDS),
        "--timeout", "60", "--database-url", DATABASE_URL, "--redis-url", REDIS_URL, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["clean"], figures
    assert [row["workers"] for row in figures["rows"]] == [1, 2]
    expected = TENANTS * RECORDS
    for row in figures["rows"]:
        summary = {k: row[k] for k in ("workers", "operations", "runs", "remote_records", "remote_creates",
                                       "tenants_with_wrong_counts", "worker_log_tail")}
        assert row["finished"], summary
        assert row["operations"] == {"done": expected, "failed": 0, "pending": 0, "superseded": 0,
                                     "done_twice": 0}, summary
        assert row["runs"] == {"ok": TENANTS}, "each tenant's route ran once, by one of the workers"
        assert row["remote_records"] == row["remote_records_expected"] == expected, summary
        assert row["remote_creates"] == expected, "each product created once on Zydon: nothing done twice"
        assert row["remote_duplicates"] == 0 and row["tenants_with_wrong_counts"] == [], summary
        assert row["worker_exit_codes"] == [0] * row["workers"], "every `hub run` stopped gracefully"
        assert row["operation_messages_run"] == row["operations_done"], \
            "each operation handed to the broker once, by one of the relays (they used to race for the same rows)"
        assert len(row["cpu"]["workers_cores"]) == row["workers"], row["cpu"]
    assert "stops_scaling_at" in figures and figures["explanation"], figures


def test_scaleout_bench_refuses_sqlite_with_the_fix() -> None:
    result = CliRunner().invoke(with_plugins(), ["bench", "scaleout", "--tenants", "2", "--database-url",
                                                 "sqlite:///hub.db", "--redis-url", "redis://127.0.0.1:6379/0"])
    assert result.exit_code == 1, result.output
    assert "needs PostgreSQL" in result.output and "HUB_DATABASE_URL" in result.output, result.output


def test_scaleout_bench_refuses_a_missing_redis_with_the_fix() -> None:
    result = CliRunner(env={"HUB_REDIS_URL": None}).invoke(with_plugins(), [
        "bench", "scaleout", "--tenants", "2", "--database-url", "postgresql+psycopg://postgres@127.0.0.1/x"])
    assert result.exit_code == 1, result.output
    assert "needs Redis" in result.output and "HUB_REDIS_URL" in result.output, result.output
