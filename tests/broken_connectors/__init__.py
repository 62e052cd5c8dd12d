"""Copies of the lojinha example plugin with one known bug each: the conformance kit must fail every one of them.

Each module re-exports lojinha's hooks and replaces the one it breaks. They are test fixtures only: no entry point,
so neither ``make demo`` nor ``hub plugins`` ever sees them; :func:`registry_with` registers one on a plugin
manager of its own, as the platform ``lojinha``.
"""

from __future__ import annotations

from types import ModuleType

from hub.plugins import PluginManager
from hub.registry import Registry


def registry_with(module: ModuleType) -> Registry:
    """A registry of the built-in plugins plus ``module`` (providing ``lojinha``), and nothing installed."""
    manager = PluginManager()
    manager.load_defaults()
    manager.register_module(module, module.__name__.rsplit(".", 1)[-1])
    return Registry(manager)
