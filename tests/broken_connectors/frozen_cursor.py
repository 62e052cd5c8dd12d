"""Bug: every page carries the same cursor (the first sync's start), so every incremental pull reads it all again."""

from __future__ import annotations

from collections.abc import Iterator

from hub import Page, hookimpl
from hub.sync.context import ConnectorContext
from hub_example.plugin import (  # noqa: F401 (re-exported hooks)
    _pull,
    authenticate,
    pull_sales,
    push_catalog,
    push_sale,
    register_platforms,
)

EPOCH = "2000-01-01T00:00:00.000000Z"


@hookimpl
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterator[Page]:
    for page in _pull(ctx, stream, since):
        yield Page(records=page.records, cursor=since or EPOCH)
