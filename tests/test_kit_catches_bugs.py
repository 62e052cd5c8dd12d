"""The conformance kit fails a plugin with a known bug, and says which: each broken copy of the lojinha plugin
(tests/broken_connectors) runs the kit test that must catch it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hub.models import Customer, Product, ProductFiscal
from hub.registry import Registry
from hub.testing import ConnectorConformance, Harness

from tests import test_conformance_lojinha as lojinha_kit
from tests.broken_connectors import (
    duplicate_on_redelivery,
    frozen_cursor,
    leaked_token,
    looping_pager,
    rate_limit_as_error,
    registry_with,
    static_credentials,
)


def kit_for(module: ModuleType) -> ConnectorConformance:
    """The lojinha kit, its platform provided by ``module`` instead of the installed example plugin."""

    def registry() -> Registry:
        return registry_with(module)

    class Broken(lojinha_kit.TestLojinha):
        __test__ = False
        pull_streams = ("products",)
        push_streams = {"customers": _customer}

    Broken.registry = staticmethod(registry)  # type: ignore[assignment]
    return Broken()


def _customer(i: int) -> Customer:
    return Customer(name=f"Cliente {i}", document=["52998224725", "11144477735", "39053344705"][i % 3])


def run(kit: ConnectorConformance, test: Callable[[Harness, str], None], tmp: Path, stream: str, side: str) -> None:
    harness = kit.start(tmp, stream, side)
    try:
        test(harness, stream)
    finally:
        harness.stop()


def test_a_duplicate_on_redelivery_fails_the_kit(tmp_path: Path) -> None:
    kit = kit_for(duplicate_on_redelivery)
    with pytest.raises(AssertionError, match=r"should write nothing twice.*duplicate on redelivery"):
        run(kit, kit.test_push_is_idempotent, tmp_path, "customers", "push")


def test_a_cursor_that_never_moves_fails_the_kit(tmp_path: Path) -> None:
    kit = kit_for(frozen_cursor)
    with pytest.raises(AssertionError, match=r"cursor of products should advance.*read 30 .*never moves"):
        run(kit, kit.test_cursor_advances, tmp_path, "products", "pull")


def test_a_leaked_token_fails_the_kit(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    kit = kit_for(leaked_token)
    with pytest.raises(AssertionError, match=r"credentials should never be written in clear.*access_token in logs"):
        kit.test_credentials_never_leak(tmp_path, caplog, capfd)


def test_a_429_raised_as_an_error_fails_the_kit_on_pulls_and_pushes(tmp_path: Path) -> None:
    kit = kit_for(rate_limit_as_error)
    with pytest.raises(AssertionError, match=r"a 429 in the middle of a pull of products should be retried.*Fatal"):
        kit.test_pull_waits_out_faults(tmp_path / "pull", "products", "429")
    with pytest.raises(AssertionError, match=r"a 429 on a push to customers should wait .RateLimited., .* failed"):
        run(kit, kit.test_rate_limit_waits_without_burning_attempts, tmp_path / "push", "customers", "push")


def test_a_pager_that_loops_fails_the_kit(tmp_path: Path) -> None:
    kit = kit_for(looping_pager)
    with pytest.raises(AssertionError, match=r"full pull of products should succeed.*same page twice"):
        run(kit, kit.test_pull_paginates_to_the_end, tmp_path, "products", "pull")


def test_the_unbroken_plugin_passes_the_same_checks(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """The control: the same kit, with lojinha as shipped, passes every check the broken copies fail."""
    import hub_example.plugin

    kit = kit_for(hub_example.plugin)
    run(kit, kit.test_push_is_idempotent, tmp_path / "push", "customers", "push")
    run(kit, kit.test_cursor_advances, tmp_path / "cursor", "products", "pull")
    run(kit, kit.test_pull_paginates_to_the_end, tmp_path / "pages", "products", "pull")
    run(kit, kit.test_rate_limit_waits_without_burning_attempts, tmp_path / "wait", "customers", "push")
    kit.test_pull_waits_out_faults(tmp_path / "fault", "products", "429")
    kit.test_credentials_never_leak(tmp_path / "leak", caplog, capfd)


def test_products_refused_for_a_missing_price_name_the_field() -> None:
    """The lojinha kit's refused record is one the canonical model accepts (the platform is what refuses it)."""
    refused = lojinha_kit.TestLojinha().make_refused("products")
    assert refused is not None and isinstance(refused[0], Product) and refused[1] == "preco", \
        f"lojinha's refused product should be a valid canonical Product refused on preco, got {refused}"
    assert ProductFiscal() is not None


def test_authentication_is_skipped_for_a_platform_without_authenticate(tmp_path: Path) -> None:
    kit = kit_for(static_credentials)
    harness = kit.start(tmp_path, "products", "pull")
    try:
        with pytest.raises(pytest.skip.Exception, match="no authenticate hook"):
            kit.test_authenticate(harness)
    finally:
        harness.stop()
