"""A typed facade over the plugin manager: platforms by name, and the two ways of calling a hook.

Both ways go through pluggy, so ``HUB_TRACE_PLUGINS`` traces every call and other plugins' wrappers
(``hookwrapper=True`` / ``wrapper=True``) run around it:

* :meth:`Registry.call` (targeted) calls a hook through a subset caller that leaves out every other plugin's
  implementation (their wrappers stay): exactly the owning plugin answers, and its single answer is returned.
* :meth:`Registry.broadcast` calls each answering plugin in pluggy's own order (``tryfirst``/``trylast``
  honoured, the last registered first), one subset caller per plugin, so every answer comes back paired with the
  plugin that gave it. A wrapper around a broadcast hook therefore runs once per answering plugin.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pluggy import HookCaller, HookImpl

from hub.errors import Fatal
from hub.platform import Platform
from hub.plugins import PluginManager, get_plugin_manager

__all__ = ["RegisteredPlatform", "Registry", "get_registry"]


@dataclass(frozen=True)
class RegisteredPlatform:
    platform: Platform
    plugin: str


def _is_wrapper(impl: HookImpl) -> bool:
    return bool(impl.hookwrapper or impl.wrapper)


class Registry:
    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        self.platforms: dict[str, RegisteredPlatform] = {}
        self.conflicts: list[str] = []
        self._callers: dict[tuple[str, str], tuple[frozenset[str], HookCaller]] = {}
        self._callers_lock = threading.Lock()
        for plugin in self._answering("register_platforms"):
            self._caller("register_platforms", plugin)(register=self._registrar(plugin))
        for reg in self.platforms.values():
            info = manager.info.get(reg.plugin)
            if info is not None and reg.platform.name not in info.platforms:
                info.platforms.append(reg.platform.name)

    def _registrar(self, plugin_name: str) -> Callable[[Platform], None]:
        def register(platform: Platform) -> None:
            existing = self.platforms.get(platform.name)
            if existing is not None and existing.plugin != plugin_name:
                self.conflicts.append(
                    f"platform {platform.name!r} is registered by both {existing.plugin} and {plugin_name}; "
                    f"keeping {existing.plugin}"
                )
                return
            self.platforms[platform.name] = RegisteredPlatform(platform, plugin_name)

        return register

    def platform(self, name: str) -> Platform:
        return self.get(name).platform

    def get(self, name: str) -> RegisteredPlatform:
        try:
            return self.platforms[name]
        except KeyError:
            known = ", ".join(sorted(self.platforms)) or "none"
            raise Fatal(
                f"no installed plugin provides platform {name!r} (installed: {known})",
                fix=f"Install the plugin for {name!r} (pip install ...) and check `hub plugins`.",
            ) from None

    def _hook(self, hook: str) -> HookCaller:
        caller: HookCaller | None = getattr(self.manager.pm.hook, hook, None)
        if caller is None:
            raise Fatal(f"there is no hook named {hook!r}", fix="Check the hook name against hub.hookspecs.")
        return caller

    def _answering(self, hook: str) -> list[str]:
        """The plugins with a (non-wrapper) implementation of ``hook``, in the order pluggy calls them."""
        return [impl.plugin_name for impl in reversed(self._hook(hook).get_hookimpls()) if not _is_wrapper(impl)]

    def _caller(self, hook: str, plugin: str) -> HookCaller:
        """A caller of ``hook`` where only ``plugin`` answers; cached until the set of plugins changes."""
        names = frozenset(name for name, _ in self.manager.pm.list_name_plugin())
        with self._callers_lock:
            cached = self._callers.get((hook, plugin))
            if cached is not None and cached[0] == names:
                return cached[1]
            others = [impl.plugin for impl in self._hook(hook).get_hookimpls()
                      if impl.plugin_name != plugin and not _is_wrapper(impl)]
            caller = self.manager.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[(hook, plugin)] = (names, caller)
            return caller

    def implements(self, platform: str, hook: str) -> bool:
        return self.get(platform).plugin in self._answering(hook)

    def call(self, platform: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on the one plugin that owns ``platform`` (targeted dispatch); return its answer.

        The implementation may accept fewer arguments than ``kwargs`` (pluggy passes the ones it names)."""
        plugin = self.get(platform).plugin
        if plugin not in self._answering(hook):
            raise Fatal(
                f"platform {platform!r} (plugin {plugin}) does not implement {hook}",
                fix=f"Remove the stream that needs {hook} from the route, or upgrade the plugin.",
            )
        answers = self._caller(hook, plugin)(**kwargs)
        return answers[0] if answers else None

    def broadcast(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call ``hook`` on every plugin; return (plugin name, answer) for each answer that is not None, in the
        order pluggy calls them (``tryfirst`` first, then the last registered first)."""
        answers = []
        for plugin in self._answering(hook):
            for result in self._caller(hook, plugin)(**kwargs):
                answers.append((plugin, result))
        return answers

    def plugin_platforms(self, plugin: str) -> list[str]:
        return [name for name, reg in self.platforms.items() if reg.plugin == plugin]


_registry: Registry | None = None


def get_registry() -> Registry:
    global _registry
    manager = get_plugin_manager()
    if _registry is None or _registry.manager is not manager:
        _registry = Registry(manager)
    return _registry
