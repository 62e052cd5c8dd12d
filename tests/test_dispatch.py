"""Targeted and broadcast hook calls go through pluggy: tracing, other plugins' wrappers and tryfirst all apply."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from typing import Any

import pytest
from hub import hookimpl
from hub.errors import Fatal
from hub.models import Action, Category, StatusTransition
from hub.platform import Platform, PushResult
from hub.plugins import PluginManager, get_plugin_manager, reset_plugin_manager
from hub.registry import Registry
from hub.sync.context import Endpoint, RouteView

ROUTE = RouteView(tenant="loja", name="pdv-erp", source=Endpoint(connection="pdv", platform="shop"),
                  sink=Endpoint(connection="erp", platform="rival"), streams=["sales"])
TRANSITION = StatusTransition(canonical_id="V-1", from_status="aberto", to_status="pago", at=datetime(2026, 1, 5))


class Shop:
    """Owns platform "shop"; answers push_catalog with fewer arguments than the spec lists."""

    def __init__(self) -> None:
        self.pushed: list[str] = []

    @hookimpl
    def register_platforms(self, register: Callable[[Platform], None]) -> None:
        register(Platform(name="shop", title="Shop"))

    @hookimpl
    def push_catalog(self, record: Category, idempotency_key: str) -> PushResult:
        self.pushed.append(idempotency_key)
        return PushResult(external_id=f"shop-{record.name}")

    @hookimpl
    def on_status_transition(self, transition: StatusTransition) -> list[Action]:
        return [Action(name="shop-first")]


class Rival:
    """Owns platform "rival" and implements push_catalog too: it must never answer for "shop"."""

    def __init__(self) -> None:
        self.pushed: list[str] = []

    @hookimpl
    def register_platforms(self, register: Callable[[Platform], None]) -> None:
        register(Platform(name="rival", title="Rival"))

    @hookimpl
    def push_catalog(self, idempotency_key: str) -> PushResult:
        self.pushed.append(idempotency_key)
        return PushResult(external_id="rival")

    @hookimpl(tryfirst=True)
    def on_status_transition(self, transition: StatusTransition) -> list[Action]:
        return [Action(name="rival-first")]


class Audit:
    """Implements no platform: only wrappers around every push, old and new style."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def push_catalog(self, stream: str) -> Generator[None, list[PushResult], list[PushResult]]:
        answers = yield
        self.seen.append(f"{stream}: {[a.external_id for a in answers]}")
        return answers


class Stopwatch:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(hookwrapper=True)
    def push_catalog(self) -> Generator[None, Any, None]:
        self.calls += 1
        yield


def manager_with(**plugins: object) -> PluginManager:
    manager = PluginManager()
    for name, plugin in plugins.items():
        manager.register_module(plugin, name)
    return manager


def push(registry: Registry, platform: str, name: str = "Roupas") -> Any:
    return registry.call(platform, "push_catalog", ctx=None, stream="categories", record=Category(path=[name]),
                         external_id=None, idempotency_key=f"op-{name}")


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginManager]:
    monkeypatch.setenv("HUB_TRACE_PLUGINS", "1")
    monkeypatch.setenv("HUB_LOAD_PLUGINS", "")
    reset_plugin_manager()
    try:
        yield get_plugin_manager()
    finally:
        reset_plugin_manager()


def test_hub_trace_plugins_prints_targeted_calls(traced: PluginManager, capsys: pytest.CaptureFixture[str]) -> None:
    shop, rival = Shop(), Rival()
    traced.register_module(shop, "shop")
    traced.register_module(rival, "rival")
    registry = Registry(traced)
    capsys.readouterr()
    assert push(registry, "shop").external_id == "shop-Roupas"
    err = capsys.readouterr().err
    assert "hub: hook push_catalog -> ['shop']" in err, f"the targeted call should be traced with its plugin: {err!r}"
    assert "hub: hook push_catalog done" in err, err


def test_a_wrapper_of_another_plugin_runs_around_a_targeted_call_and_only_the_owner_answers() -> None:
    shop, rival, audit, stopwatch = Shop(), Rival(), Audit(), Stopwatch()
    registry = Registry(manager_with(shop=shop, rival=rival, audit=audit, stopwatch=stopwatch))
    result = push(registry, "shop")
    assert result.external_id == "shop-Roupas", "the owning plugin's single answer is returned"
    assert shop.pushed == ["op-Roupas"] and rival.pushed == [], "only the owning plugin is called"
    assert audit.seen == ["categories: ['shop-Roupas']"], "audit's wrapper=True implementation wraps the call"
    assert stopwatch.calls == 1, "stopwatch's hookwrapper=True implementation wraps the call"
    assert push(registry, "rival", "Calçados").external_id == "rival"
    assert rival.pushed == ["op-Calçados"] and shop.pushed == ["op-Roupas"]
    assert audit.seen[-1] == "categories: ['rival']" and stopwatch.calls == 2


def test_a_plugin_registered_later_is_left_out_of_cached_targeted_calls() -> None:
    shop = Shop()
    manager = manager_with(shop=shop)
    registry = Registry(manager)
    push(registry, "shop")
    rival = Rival()
    manager.register_module(rival, "rival")
    assert push(registry, "shop", "Calçados").external_id == "shop-Calçados"
    assert rival.pushed == [], "a plugin registered after the first call must not answer for shop"


def test_broadcast_pairs_each_answer_with_its_plugin_and_honours_tryfirst() -> None:
    # Pluggy calls the last registered first; rival's tryfirst must put it ahead although it was registered first.
    registry = Registry(manager_with(rival=Rival(), shop=Shop()))
    answers = registry.broadcast("on_status_transition", transition=TRANSITION, route=ROUTE, actions=[])
    assert [(plugin, [a.name for a in actions]) for plugin, actions in answers] == [
        ("rival", ["rival-first"]), ("shop", ["shop-first"])], f"tryfirst first, each with its plugin: {answers}"
    assert sorted(registry.platforms) == ["rival", "shop"], "register_platforms is broadcast through pluggy too"


def test_broadcast_keeps_pluggys_order_without_tryfirst() -> None:
    class Late(Shop):
        @hookimpl
        def on_status_transition(self, transition: StatusTransition) -> list[Action]:
            return [Action(name="late")]

    class Quiet:
        @hookimpl
        def on_status_transition(self) -> None:
            return None

    registry = Registry(manager_with(quiet=Quiet(), shop=Shop(), late=Late()))
    answers = registry.broadcast("on_status_transition", transition=TRANSITION, route=ROUTE, actions=[])
    assert [plugin for plugin, _ in answers] == ["late", "shop"], "the last registered first; None is left out"


def test_a_platform_without_the_hook_gets_a_fatal_with_the_fix() -> None:
    registry = Registry(manager_with(shop=Shop(), audit=Audit()))
    with pytest.raises(Fatal) as missing:
        registry.call("shop", "pull_sales", ctx=None, since=None)
    assert "platform 'shop' (plugin shop) does not implement pull_sales" in missing.value.message
    assert "Remove the stream that needs pull_sales from the route" in missing.value.fix
    assert not registry.implements("shop", "pull_sales") and registry.implements("shop", "push_catalog")
