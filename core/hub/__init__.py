"""hub: an integration hub for Brazilian commerce.

The public API for plugin authors: ``hookimpl``, the :mod:`hub.models` canonical model, :mod:`hub.errors`,
and :class:`hub.platform.Platform` with its page and result types.
"""

from hub import errors
from hub.hookspecs import hookimpl
from hub.platform import Credentials, Incoming, Page, Platform, PushResult, Rejected
from hub.sync.context import ConnectorContext, RouteView

__version__ = "0.1.0"
__all__ = [
    "ConnectorContext", "Credentials", "Incoming", "Page", "Platform", "PushResult", "Rejected", "RouteView",
    "__version__", "errors", "hookimpl",
]
