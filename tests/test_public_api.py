"""Plugins use only the core's public API: ``hub`` and its public modules, each with ``__all__``.

Everything else in the core may change without notice; a plugin reaching into ``hub.sync`` or ``hub.store`` breaks
when it does. The shipped plugins, the example plugin and the template ``hub plugin new`` writes are held to it.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"hub", "hub.errors", "hub.models", "hub.testing", "hub.sandbox", "hub.sandbox.documents",
          "hub.sandbox.faults", "hub.sandbox.idempotency", "hub.sandbox.oauth", "hub.sandbox.ratelimit",
          "hub.sandbox.nfe", "hub.sandbox.xmltree"}
PLUGIN_SOURCES = sorted(
    [*ROOT.glob("plugins/*/hub_*/**/*.py"), *ROOT.glob("tests/example_plugin/hub_example/**/*.py")]
)
TEMPLATES = sorted(ROOT.glob("core/hub/templates/**/*.tmpl"))


def _core_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "hub":  # `from hub import sandbox` reaches the module hub.sandbox
                names += [f"hub.{alias.name}" for alias in node.names
                          if importlib.util.find_spec(f"hub.{alias.name}") is not None]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name == "hub" or name.startswith("hub.")]


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path: Path):
    private = [f"line {line}: {name}" for line, name in _core_imports(ast.parse(path.read_text()))
               if name not in PUBLIC]
    assert not private, (f"{path.relative_to(ROOT)} imports private core modules {private}; use `hub` or one of "
                         f"{sorted(PUBLIC - {'hub'})} (add the name to their __all__ if it is missing)")


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_plugin_template_imports_only_the_public_api(path: Path):
    modules = re.findall(r"^\s*(?:from|import)\s+(hub(?:\.[a-z_.]+)?)\b", path.read_text(), re.M)
    private = [m for m in modules if m not in PUBLIC]
    assert not private, f"{path.relative_to(ROOT)} imports private core modules {private}"


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_each_public_module_declares_all_and_every_name_in_it_exists(module: str):
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    assert names, f"{module} must say what is public with __all__"
    missing = [name for name in names if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names what it does not have: {missing}"


def test_the_sources_were_found():
    assert len(PLUGIN_SOURCES) > 20 and TEMPLATES, "the plugin sources moved; update the globs above"
