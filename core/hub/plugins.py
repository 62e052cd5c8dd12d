"""The plugin manager: owns loading, the allowlist and tracing.

Plugins are found through entry points in the ``hub`` group, built-ins exactly like a third party's. Loading is
defensive: a plugin that fails to import is recorded with its error and the others still load
(``HUB_STRICT_PLUGINS=1`` makes that fatal, for plugin authors). ``HUB_LOAD_PLUGINS=a,b`` loads only the named
entry points or distributions ("" loads none); ``HUB_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from hub import hookspecs

GROUP = "hub"
DEFAULT_PLUGINS: tuple[str, ...] = ("hub.default_plugins.fiscal",)
"""Built-in behaviour written as plugins (registered directly: they ship inside the core)."""


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    platforms: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "platforms": self.platforms,
            "hooks": self.hooks,
            "error": self.error,
            "builtin": self.builtin,
        }


class PluginManager:
    """A pluggy manager plus the bookkeeping ``hub plugins`` shows."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}

    def register_module(self, module: ModuleType | object, name: str, **info: Any) -> None:
        self.pm.register(module, name=name)
        self.info[name] = PluginInfo(name=name, module=getattr(module, "__name__", None), **info)

    def load_defaults(self) -> None:
        for modname in DEFAULT_PLUGINS:
            self.register_module(importlib.import_module(modname), modname, builtin=True)

    def load_entry_points(self, allow: set[str] | None = None, strict: bool = False) -> None:
        for dist in md.distributions():
            for ep in dist.entry_points:
                if ep.group != GROUP:
                    continue
                dist_name = dist.metadata["Name"]
                if allow is not None and ep.name not in allow and dist_name not in allow:
                    continue
                if self.pm.get_plugin(ep.name) is not None or ep.name in self.info:
                    continue
                base: dict[str, Any] = {"distribution": dist_name, "version": dist.version}
                try:
                    plugin = ep.load()
                    self.register_module(plugin, ep.name, **base)
                except Exception as exc:
                    if strict:
                        raise
                    if self.pm.get_plugin(ep.name) is not None:
                        self.pm.unregister(name=ep.name)
                    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    self.info[ep.name] = PluginInfo(name=ep.name, module=ep.value, error=detail, **base)
        self.pm.check_pending()

    def hooks_of(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            return []
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])


def _env_allowlist() -> set[str] | None:
    raw = os.environ.get("HUB_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _trace(manager: PluginManager) -> None:
    def before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        names = [impl.plugin_name for impl in impls]
        shown = {k: type(v).__name__ for k, v in kwargs.items()}
        print(f"hub: hook {hook_name} -> {names} {shown}", file=sys.stderr)

    def after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        print(f"hub: hook {hook_name} done", file=sys.stderr)

    manager.pm.add_hookcall_monitoring(before, after)


_lock = threading.Lock()
_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, loaded on first use."""
    global _manager
    with _lock:
        if _manager is None:
            manager = PluginManager()
            manager.load_defaults()
            manager.load_entry_points(_env_allowlist(), strict=os.environ.get("HUB_STRICT_PLUGINS") == "1")
            if os.environ.get("HUB_TRACE_PLUGINS"):
                _trace(manager)
            _manager = manager
        return _manager


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (tests that change HUB_LOAD_PLUGINS use it)."""
    global _manager
    with _lock:
        _manager = None
