"""The first hour's traps, run as a new user runs the commands: an unmigrated or missing store, bad sandbox
arguments, a busy port, and `hub run`'s log lines; every one a message and a fix, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hub.cli import cli

from tests.flows import apply_demo_routes

EXE = os.path.join(os.path.dirname(sys.executable), "hub")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return {**env, **extra}


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A HUB_HOME whose database was never migrated."""
    from hub.settings import get_settings

    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.mark.parametrize("args", [["status", "demo"], ["logs", "demo"], ["retry", "demo"], ["runs", "demo"],
                                  ["sync", "demo", "catalog"], ["pause", "demo", "shop"]])
def test_commands_on_a_never_migrated_store_say_run_db_upgrade(fresh, args):
    result = fresh.invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "never migrated" in result.stderr and "run `hub db upgrade`" in result.stderr.lower()
    assert "Traceback" not in result.output and "sqlalchemy" not in result.output.lower()


def test_db_status_and_upgrade_report_as_json(fresh):
    before = fresh.invoke(cli, ["db", "status", "--json"])
    assert before.exit_code == 1 and json.loads(before.stdout)["up_to_date"] is False
    up = fresh.invoke(cli, ["db", "upgrade", "--json"])
    assert up.exit_code == 0 and json.loads(up.stdout)["current"] == json.loads(up.stdout)["head"]
    after = fresh.invoke(cli, ["db", "status"])
    assert after.exit_code == 0 and "run `hub db upgrade`" not in after.output
    assert fresh.invoke(cli, ["status", "nobody"]).exit_code == 1, "migrated: now the tenant is what is missing"


def test_without_hub_home_a_folder_with_no_store_says_where_it_looked(tmp_path):
    result = subprocess.run([EXE, "status", "demo"], capture_output=True, text=True, env=clean_env(), cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{tmp_path}/.hub does not exist" in result.stderr and "HUB_HOME" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".hub").exists(), "no empty store made in the wrong folder"


def test_sandbox_arguments_and_a_busy_port_are_clear_errors():
    runner = CliRunner()
    wrong_stream = runner.invoke(cli, ["sandbox", "lojinha", "--seed", "produtos=5", "--for", "0"])
    assert wrong_stream.exit_code == 2 and "lojinha has no stream 'produtos'" in wrong_stream.output
    assert "products" in wrong_stream.output
    not_a_number = runner.invoke(cli, ["sandbox", "lojinha", "--seed", "products=abc", "--for", "0"])
    assert not_a_number.exit_code == 2 and "STREAM=N with N a whole number" in not_a_number.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        taken = runner.invoke(cli, ["sandbox", "lojinha", "--port", str(port), "--for", "0"])
    assert taken.exit_code == 1 and f"on port {port}" in taken.stderr and "--port" in taken.stderr
    for result in (wrong_stream, not_a_number, taken):
        assert "Traceback" not in result.output


def test_hub_run_logs_one_json_line_per_operation_and_no_dramatiq_warnings(rt, settings, tmp_path, lojinha_pair):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 4)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    from hub.sync.pull import sync_route

    sync_route(rt, "demo", "catalog")  # pulled: 4 operations wait for a worker
    env = clean_env(HUB_DATABASE_URL=settings.resolved_database_url(), HUB_HOME=str(tmp_path),
                    HUB_LOG_FORMAT="json", HUB_SCHEDULER_INTERVAL_SECONDS="600")
    result = subprocess.run([EXE, "run", "--for", "4"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "returned a value that is not None" not in result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    ops = [line for line in lines if line.get("operation") == "push_catalog"]
    assert len(ops) == 4, result.stderr
    assert all(line.startswith("{") for line in result.stderr.splitlines()), "JSON lines only"
    assert {(o["tenant"], o["route"], o["outcome"]) for o in ops} == {("demo", "catalog", "done")}
    assert all(isinstance(o["duration_ms"], int) for o in ops)
    assert len(shop.records("products")) == 4


def test_demo_uses_hub_home_and_its_hint_names_the_command_to_type(tmp_path):
    home = tmp_path / "home"
    scenario = os.path.join(os.path.dirname(__file__), "example_plugin", "demo.yaml")
    result = subprocess.run([EXE, "demo", "--scenario", scenario], capture_output=True, text=True,
                            env=clean_env(HUB_HOME=str(home)), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (home / "hub.db").exists(), "the demo's store is where HUB_HOME says"
    import shutil

    on_path = shutil.which("hub", path=clean_env().get("PATH"))
    hub = "hub" if on_path and os.path.realpath(on_path) == os.path.realpath(EXE) else EXE
    assert f"HUB_HOME={home} {hub} status demo" in result.stdout
    runs = subprocess.run([EXE, "runs", "demo", "--json"], capture_output=True, text=True,
                          env=clean_env(HUB_HOME=str(home)), cwd=tmp_path, timeout=120)
    assert runs.returncode == 0 and len(json.loads(runs.stdout)) == 3, "the demo's three syncs are in the history"
