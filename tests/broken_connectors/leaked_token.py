"""Bug: the new access token is written to the log (as a debugging line left in)."""

from __future__ import annotations

import logging

from hub import Credentials, hookimpl
from hub.sync.context import ConnectorContext
from hub_example.plugin import authenticate as lojinha_authenticate
from hub_example.plugin import (  # noqa: F401 (re-exported hooks)
    pull_catalog,
    pull_sales,
    push_catalog,
    push_sale,
    register_platforms,
)

log = logging.getLogger("hub_broken.leaked_token")


@hookimpl
def authenticate(ctx: ConnectorContext) -> Credentials:
    credentials: Credentials = lojinha_authenticate(ctx)
    log.info("lojinha connection %s got token %s", ctx.connection, credentials.values["access_token"])
    return credentials
