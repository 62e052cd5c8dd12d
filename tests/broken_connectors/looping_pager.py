"""Bug: the pager never sends the page number, so it reads the first page again and again."""

from __future__ import annotations

from collections.abc import Iterator

from hub import Incoming, Page, hookimpl
from hub.sync.context import ConnectorContext
from hub_example.client import request
from hub_example.plugin import (  # noqa: F401 (re-exported hooks)
    PATHS,
    _to_canonical,
    authenticate,
    push_catalog,
    push_sale,
    register_platforms,
)


@hookimpl
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterator[Page]:
    params = {"per_page": int(ctx.options.get("page_size", 100)), **({"updated_since": since} if since else {})}
    while True:
        body = request(ctx, "GET", PATHS[stream], params=params).json()
        yield Page(records=[Incoming(external_id=str(raw["id"]), data=_to_canonical(stream, raw))
                            for raw in body["data"]])
        if not body["meta"]["has_more"]:
            return
