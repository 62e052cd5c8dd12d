"""`hub sync` progress as an operator sees it: on a terminal, a live table of the streams and an operations bar
(stderr); in a pipe, plain lines; with --json, nothing but the JSON. The exit code says whether work failed, whatever
the display."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub.cli import cli

from tests.flows import apply_demo_routes

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120", "TERM": "xterm-256color"}
"""Rich's own switches: what a terminal looks like to it (CliRunner's streams are not terminals)."""


@pytest.fixture
def hub(settings, tmp_path, monkeypatch):
    """Invoke `hub ...` on the test's store; ``terminal=True`` makes stderr look like an interactive terminal."""
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("HUB_MAX_BACKOFF_SECONDS", "0.05")
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args, terminal=False: runner.invoke(cli, list(args), env=TERMINAL if terminal else None)
    get_settings.cache_clear()


def row(text: str, stream: str) -> list[str]:
    """The cells of ``stream``'s last drawn row in the live table (drawing codes removed)."""
    rows = [line for line in ANSI.sub("", text).splitlines() if re.match(rf"\W*{stream}\s*│", line)]
    assert rows, f"no row for {stream} in:\n{ANSI.sub('', text)}"
    return [cell.strip() for cell in rows[-1].strip("│┃ ").split("│")]


def test_terminal_shows_a_live_table_per_stream_and_an_operations_bar(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("categories", 3)
    erp.seed("products", 12)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["categories", "products"]})
    result = hub("sync", "demo", "catalog", terminal=True)
    assert result.exit_code == 0, result.output
    shown = ANSI.sub("", result.stderr)
    assert "sync demo/catalog: reading categories, products" in shown
    assert re.search(r"stream\s*┃\s*state\s*┃\s*pages\s*┃\s*read\s*┃\s*new\s*┃\s*changed\s*┃\s*quarantined", shown)
    assert row(result.stderr, "categories")[1:] == ["done", "1", "3", "3", "0", "0"]
    assert row(result.stderr, "products")[1:] == ["done", "1", "12", "12", "0", "0"]
    bar = [line for line in shown.splitlines() if line.startswith("pushing")][-1]
    assert "15/15" in bar and "ops/s" in bar and "ETA" in bar and "15 done" in bar, bar
    assert "\x1b[" in result.stderr, "drawn with terminal codes"
    assert "operations: 15 done" in result.stdout and "\x1b[" not in result.stdout, "the summary stays plain"
    assert len(shop.records("products")) == 12


def test_terminal_view_keeps_exit_1_when_operations_fail_and_shows_the_failure(rt, tmp_path, lojinha_pair, hub):
    (_erp, erp_url), (shop, shop_url) = lojinha_pair
    shop.seed("payment_methods", 3)
    shop.seed("sales", 4)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"sales.mappings.statuses": {"nenhum": "nenhum"}})
    result = hub("sync", "demo", "sales", terminal=True)
    assert result.exit_code == 1, result.output
    assert row(result.stderr, "sales")[1:3] == ["done", "1"] and row(result.stderr, "sales")[3] == "4"
    bar = [line for line in ANSI.sub("", result.stderr).splitlines() if line.startswith("pushing")][-1]
    assert "4/4" in bar and "4 failed" in bar, bar
    assert "operations: 4 failed" in result.stdout


def test_terminal_with_json_prints_only_the_json(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 5)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    result = hub("sync", "demo", "catalog", "--json", terminal=True)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["operations"] == {"done": 5}
    assert result.stderr == "", "no live view with --json"


def test_a_pipe_gets_plain_lines_without_terminal_codes(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 5)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    result = hub("sync", "demo", "catalog")
    assert result.exit_code == 0, result.output
    assert "  products: +5 new, 0 changed, 0 unchanged, 0 quarantined" in result.stderr
    assert "pushing: 5/5 operations (5 done)" in result.stderr
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr and "┃" not in result.stderr


def test_hub_sync_in_a_real_terminal_draws_the_table(settings, rt, tmp_path, lojinha_pair):
    """The installed `hub` command under a pseudo-terminal, as an operator's shell runs it."""
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    erp.seed("products", 7)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    env = {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR")}
    env.update(HUB_DATABASE_URL=settings.resolved_database_url(), HUB_HOME=str(tmp_path), TERM="xterm-256color",
               COLUMNS="120", LINES="40")
    main, child = pty.openpty()
    hub_bin = Path(sys.executable).with_name("hub")
    proc = subprocess.Popen([str(hub_bin), "sync", "demo", "catalog"], stdin=child, stdout=child, stderr=child,
                            env=env, close_fds=True)
    os.close(child)
    seen = bytearray()
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert row(text, "products")[1:] == ["done", "1", "7", "7", "0", "0"]
    assert "7/7" in ANSI.sub("", text) and "operations: 7 done" in text
    assert len(shop.records("products")) == 7


def test_terminal_view_names_a_failed_stream_and_its_error(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 3)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    erp.set_fault_rates({"500": 1.0})
    result = hub("sync", "demo", "catalog", terminal=True)
    assert result.exit_code == 1, result.output
    assert row(result.stderr, "products")[1:3] == ["FAILED", "0"]
    shown = ANSI.sub("", result.stderr)
    assert "products: lojinha GET /products (tenant demo, connection erp): 500 injected internal error" in shown
    assert "pushing" not in shown, "no operations bar when there is nothing to send"
    assert "products: FAILED:" in result.stdout and "(fix: " in result.stdout
