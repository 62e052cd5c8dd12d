"""The connector conformance kit: one pytest suite every plugin runs against its own sandbox, stream by stream.

Subclass :class:`ConnectorConformance` in a plugin's tests, name the platform and the streams::

    from hub.testing import ConnectorConformance

    class TestLojinha(ConnectorConformance):
        platform = "lojinha"
        pull_streams = ("products", "sales")
        push_streams = {"products": make_product, "sales": make_sale}   # f(i) -> a record the platform accepts

        def make_refused(self, stream):   # optional: a record the platform refuses, and the field it names
            return (Product(sku="X", name="No price"), "preco") if stream == "products" else None

Each test runs once per pulled or pushed stream (``test_pull_paginates_to_the_end[products]``), through real HTTP
to the sandbox and the real store: authentication (skipped without an ``authenticate`` hook), paging to the end,
the repeated-page guard, a cursor that advances (a second incremental pull with nothing changed reads nothing),
500/timeout/429 in the middle of a pull waited out with nothing skipped, idempotent pushes (a redelivered write
creates nothing twice; ``update_only`` streams such as stock write nothing twice), the push-side error taxonomy
(5xx, 429, expired token, a refused record quarantined with its field), quarantine of bad input, and that no
credential value ever reaches the API log, operations, quarantine, cursors, records or the output. The older
one-stream form (``pull_stream``, ``push_stream``, ``make_record(i)``) still works. tests/broken_connectors holds
plugins with one known bug each, which the kit must fail.
"""

from hub.testing.conformance import (
    ConnectorConformance,
    Harness,
    announce,
    emptied_database,
    fresh_database_url,
    pull_once,
    pull_route,
    scratch_runtime,
)

__all__ = ["ConnectorConformance", "Harness", "announce", "emptied_database", "fresh_database_url", "pull_once",
           "pull_route", "scratch_runtime"]
