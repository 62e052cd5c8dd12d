"""A typed facade over the plugin manager: platforms by name, and the two ways of calling a hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.errors import Fatal
from hub.platform import Platform
from hub.plugins import PluginManager, get_plugin_manager


@dataclass(frozen=True)
class RegisteredPlatform:
    platform: Platform
    plugin: str


class Registry:
    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        self.platforms: dict[str, RegisteredPlatform] = {}
        self.conflicts: list[str] = []
        for impl in manager.pm.hook.register_platforms.get_hookimpls():
            impl.function(register=self._registrar(impl.plugin_name))
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

    def implements(self, platform: str, hook: str) -> bool:
        plugin = self.get(platform).plugin
        return any(impl.plugin_name == plugin for impl in getattr(self.manager.pm.hook, hook).get_hookimpls())

    def call(self, platform: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on the one plugin that owns ``platform`` (targeted dispatch)."""
        plugin = self.get(platform).plugin
        for impl in getattr(self.manager.pm.hook, hook).get_hookimpls():
            if impl.plugin_name == plugin:
                return impl.function(*(kwargs[name] for name in impl.argnames))
        raise Fatal(
            f"platform {platform!r} (plugin {plugin}) does not implement {hook}",
            fix=f"Remove the stream that needs {hook} from the route, or upgrade the plugin.",
        )

    def broadcast(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call ``hook`` on every plugin; return (plugin name, answer) for each answer that is not None."""
        answers = []
        for impl in reversed(getattr(self.manager.pm.hook, hook).get_hookimpls()):
            result = impl.function(*(kwargs[name] for name in impl.argnames))
            if result is not None:
                answers.append((impl.plugin_name, result))
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
