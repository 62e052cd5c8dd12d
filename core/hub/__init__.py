"""hub: an integration hub for Brazilian commerce.

This module is the public API for plugin authors, with four public modules beside it: :mod:`hub.errors` (the
error taxonomy), :mod:`hub.models` (the canonical model), :mod:`hub.sandbox` (what emulators are built from) and
:mod:`hub.testing` (the conformance kit). A plugin imports nothing else from the core (a test enforces it for the
plugins in this repository); everything else is internal and may change. See docs/plugins.md.

What is here: ``hookimpl``; what a plugin registers and returns (:class:`Platform`, :class:`Page`,
:class:`Incoming`, :class:`Rejected`, :class:`PushResult`, :class:`Credentials`, :class:`WebhookEvent`); the
context every targeted hook is given (:class:`ConnectorContext`, :class:`RouteView`, :class:`ConnectionCache`); the
HTTP client base (:class:`ApiClient` and its error tables, auth and budgets); the paginators and
:func:`read_each` (a page's detail reads, a few in flight); and the helpers a
plugin's own commands use (:class:`Authorization`, :func:`friendly_errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub import errors, models
from hub.hookspecs import hookimpl
from hub.http import (
    DEFAULT_ERRORS,
    READS,
    ApiClient,
    Auth,
    BearerAuth,
    Budget,
    ErrorRule,
    ErrorTable,
    HeaderAuth,
    body_code,
    body_detail,
    body_field,
    retry_after,
)
from hub.paging import (
    Fetched,
    LinkHeaderPaginator,
    NextTokenPaginator,
    OffsetPaginator,
    Paged,
    PageNumberPaginator,
    Paginator,
    check_page,
    paginate,
)
from hub.platform import Credentials, Incoming, Page, Platform, PushResult, Rejected, WebhookEvent
from hub.ratelimit import next_midnight
from hub.reads import READS_AT_ONCE, read_each
from hub.sync.context import ConnectionCache, ConnectorContext, RouteView
from hub.sync.ingest import FUTURE_TOLERANCE

if TYPE_CHECKING:
    from hub.auth import Authorization
    from hub.cli.common import friendly_errors

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_ERRORS", "FUTURE_TOLERANCE", "READS", "READS_AT_ONCE", "ApiClient", "Auth", "Authorization",
    "BearerAuth", "Budget", "ConnectionCache", "ConnectorContext", "Credentials", "ErrorRule", "ErrorTable",
    "Fetched", "HeaderAuth", "Incoming", "LinkHeaderPaginator", "NextTokenPaginator", "OffsetPaginator", "Page",
    "PageNumberPaginator", "Paged", "Paginator", "Platform", "PushResult", "Rejected", "RouteView", "WebhookEvent",
    "__version__", "body_code", "body_detail", "body_field", "check_page", "errors", "friendly_errors", "hookimpl",
    "models", "next_midnight", "paginate", "read_each", "retry_after",
]

_LAZY = {"Authorization": "hub.auth", "friendly_errors": "hub.cli.common"}
"""Names whose modules pull in the runtime (settings, store, CLI): imported on first use, not with ``hub``."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hub' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
