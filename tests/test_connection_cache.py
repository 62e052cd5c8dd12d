"""ctx.cache: shared by a connection's contexts, per entry TTL, bounded, and gone when the connection changes."""

from __future__ import annotations

import threading
import time
from typing import Any

from hub.sync.context import ConnectionCache, ConnectorContext

SECRET = "s3cr3t-client-secret"


def ctx(**options: Any) -> ConnectorContext:
    return ConnectorContext(tenant="loja-cache", connection="erp", platform="bling",
                            options={"base_url": "https://api.example", **options},
                            credentials={"client_secret": SECRET, "access_token": "t1"})


def test_contexts_of_one_connection_share_it_and_a_changed_option_or_credential_starts_afresh() -> None:
    first = ctx()
    first.cache.set("deposits", ["Geral"])
    assert ctx().cache.get("deposits") == ["Geral"], "a later operation of the same connection sees the lookup"
    renewed = ConnectorContext(tenant="loja-cache", connection="erp", platform="bling",
                               options={"base_url": "https://api.example"},
                               credentials={"client_secret": SECRET, "access_token": "t2"})
    assert renewed.cache.get("deposits") == ["Geral"], "a renewed token is the same account"
    assert ctx(base_url="https://other.example").cache.get("deposits") is None, "new options: nothing carried over"
    ctx(base_url="https://other.example").cache.set("deposits", ["Depósito da outra conta"])
    assert ctx().cache.get("deposits") == ["Geral"], "another account's lookups never leak into this one"
    rotated = ConnectorContext(tenant="loja-cache", connection="erp", platform="bling",
                               options={"base_url": "https://api.example"},
                               credentials={"client_secret": "another", "access_token": "t1"})
    assert rotated.cache.get("deposits") is None, "a new client secret: nothing carried over"
    assert SECRET not in first.cache.fingerprint and "api.example" not in first.cache.fingerprint
    other = ConnectorContext(tenant="outra-cache", connection="erp", platform="bling", options={}, credentials={})
    assert other.cache.get("deposits") is None, "tenants never share"
    assert first.scratch == {} and first.scratch is not ctx().scratch, "scratch lives one context"


def test_entries_expire_the_cache_is_bounded_and_a_missing_key_loads_once() -> None:
    cache = ConnectionCache("fp", max_entries=3)
    cache.set("short", 1, ttl=0.05)
    time.sleep(0.06)
    assert cache.get("short") is None, "an entry past its TTL is gone"
    for i in range(5):
        cache.set(f"k{i}", i)
    assert len(cache) == 3 and cache.get("k0") is None and cache.get("k4") == 4, "least recently used go first"

    loads: list[int] = []

    def load() -> list[str]:
        loads.append(1)
        time.sleep(0.05)
        return ["UN", "KG"]

    threads = [threading.Thread(target=cache.get_or_set, args=("units", load)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1, f"8 threads missing together load once, loaded {len(loads)} times"


def test_find_reads_again_once_when_the_value_lacks_what_is_asked() -> None:
    cache = ConnectionCache("fp")
    lists = iter([["Geral"], ["Geral", "Loja Nova"], ["Geral", "Loja Nova"]])
    reads: list[int] = []

    def load() -> list[str]:
        reads.append(1)
        return next(lists)

    assert cache.find("deposits", load, lambda names: "Geral" if "Geral" in names else None) == "Geral"
    assert cache.find("deposits", load, lambda names: "Loja Nova" if "Loja Nova" in names else None) == "Loja Nova"
    assert len(reads) == 2, "the miss read the list again once"
    assert cache.find("deposits", load, lambda names: "Loja Lua" if "Loja Lua" in names else None) is None
    assert len(reads) == 3, "a name that is not there either is looked for once more, not in a loop"


def test_a_loader_may_read_other_keys_of_the_cache_without_deadlocking():
    """Found hanging a Bling test: a nested load of a second key waited on a lock the first load held (the two keys
    shared a lock stripe, depending on the process's hash seed)."""
    import threading

    from hub.sync.context import ConnectionCache

    cache = ConnectionCache("fingerprint")
    keys = [f"key-{i}" for i in range(64)]  # enough keys that any striping would put two on one lock

    def load_all() -> None:
        for outer, inner in zip(keys, reversed(keys), strict=True):
            cache.forget()
            cache.get_or_set(outer, lambda inner=inner: cache.get_or_set(inner, lambda: 1) + 1)

    worker = threading.Thread(target=load_all, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "nested loads of two keys deadlocked"
