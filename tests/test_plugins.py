"""Plugins load through entry points, defensively; `hub plugins` shows them with their hooks and errors."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

from hub import hookspecs
from hub.plugins import PluginManager


def hub(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "hub")
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=60)


def test_hub_plugins_lists_the_example_plugin_with_its_hooks():
    result = hub("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    lojinha = plugins["lojinha"]
    assert lojinha["distribution"] == "hub-example-lojinha" and lojinha["version"]
    assert lojinha["platforms"] == ["lojinha"]
    assert {"authenticate", "pull_catalog", "push_sale", "on_status_transition"} <= set(lojinha["hooks"])


def test_a_plugin_that_fails_to_import_is_shown_and_the_others_still_load():
    result = hub("plugins", "--json")
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert "hub_dependency_that_is_not_installed" in plugins["broken"]["error"]
    assert plugins["lojinha"]["error"] is None
    text = hub("plugins")
    assert "broken" in text.stdout and "FAILED TO LOAD" in text.stdout


def test_the_allowlist_loads_only_the_named_plugins():
    plugins = json.loads(hub("plugins", "--json", HUB_LOAD_PLUGINS="lojinha").stdout)
    assert [p["name"] for p in plugins] == ["lojinha"]
    assert json.loads(hub("plugins", "--json", HUB_LOAD_PLUGINS="").stdout) == []


def test_strict_mode_fails_on_a_broken_plugin():
    manager = PluginManager()
    try:
        manager.load_entry_points(strict=True)
    except ModuleNotFoundError as exc:
        assert "hub_dependency_that_is_not_installed" in str(exc)
    else:
        raise AssertionError("strict loading should have raised")


def test_every_hookspec_is_documented():
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "hub_spec")]
    assert len(specs) >= 14
    for spec in specs:
        assert spec.__doc__ and len(spec.__doc__.strip()) > 20, f"{spec.__name__} needs a docstring"
        assert spec.__name__ in hookspecs.__doc__ or spec.__name__.startswith("register_"), spec.__name__
