"""Bug: a create neither looks the record up first nor sends the idempotency key, so a redelivered push (the worker
died after the write) creates the record a second time."""

from __future__ import annotations

from typing import Any

from hub import PushResult, hookimpl
from hub.models import Canonical
from hub.sync.context import ConnectorContext
from hub_example.client import request
from hub_example.plugin import (  # noqa: F401 (re-exported hooks)
    PATHS,
    _payload,
    authenticate,
    pull_catalog,
    pull_sales,
    push_sale,
    register_platforms,
)
from hub_example.plugin import push_catalog as lojinha_push_catalog


@hookimpl
def push_catalog(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None,
                 idempotency_key: str) -> Any:
    if external_id is not None:
        return lojinha_push_catalog(ctx, stream, record, external_id, idempotency_key)
    created = str(request(ctx, "POST", PATHS[stream], json=_payload(stream, record)).json()["id"])
    return PushResult(external_id=created)
