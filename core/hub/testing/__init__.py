"""The connector conformance kit: one pytest suite every plugin runs against its own sandbox.

Subclass :class:`ConnectorConformance` in a plugin's tests and name the platform::

    from hub.testing import ConnectorConformance

    class TestLojinha(ConnectorConformance):
        platform = "lojinha"
        pull_stream = "products"
        push_stream = "sales"

        def make_record(self, i):  # a canonical record the sink should accept
            return Sale(...)

It checks, through real HTTP to the sandbox and the real store: authentication, paging to the end, the
repeated-page loop guard, incremental cursors, idempotent pushes (a retried write creates nothing twice),
the error taxonomy (5xx, 429, expired token) and quarantine of bad input.
"""

from hub.testing.conformance import ConnectorConformance, Harness, fresh_database_url

__all__ = ["ConnectorConformance", "Harness", "fresh_database_url"]
