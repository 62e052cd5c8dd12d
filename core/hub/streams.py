"""The route vocabulary: streams and DE-PARA tables, the core's own plus those the installed plugins declare.

Every lookup of a stream's model or hooks goes through :func:`stream_spec`, so a stream a plugin declares in
``Platform.streams`` (e.g. Zydon's price tables) is pulled, stored and pushed like a built-in one. Route files are
parsed without the plugins (:mod:`hub.config.routes` checks only the shape of names); ``hub routes validate``
checks the names against :func:`known_streams` and :func:`known_tables`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.errors import Fatal
from hub.models import ENTITY_MODELS
from hub.platform import MappingTable, StreamSpec

if TYPE_CHECKING:
    from hub.registry import Registry

_PUSH_HOOKS = {"stock": "push_stock", "prices": "push_price", "sales": "push_sale", "invoices": "push_invoice"}
_PULL_HOOKS = {"sales": "pull_sales", "invoices": "pull_invoices"}

BUILTIN_STREAMS: dict[str, StreamSpec] = {
    name: StreamSpec(name=name, model=model, pull_hook=_PULL_HOOKS.get(name, "pull_catalog"),
                     push_hook=_PUSH_HOOKS.get(name, "push_catalog"))
    for name, model in ENTITY_MODELS.items()
}
"""The core's streams (:data:`hub.models.ENTITY_MODELS`) with the hooks that read and write them."""

BUILTIN_TABLES: dict[str, MappingTable] = {
    "payment_methods": MappingTable("payment_methods", "payment method of each payment of a sale", "sales",
                                    "payments.method"),
    "statuses": MappingTable("statuses", "status of a sale (also what transition rules name)", "sales", "status"),
    "stores": MappingTable("stores", "store of a sale and warehouse of a stock level (Bling: depósito)", "sales",
                           "store"),
}
"""The core's DE-PARA tables; :func:`hub.sync.operations.apply_mappings` applies them (``stores`` to stock too)."""

KEEP_STATUS = "keep"
"""A ``statuses`` entry that means "this status says nothing to the other side". On a route that only updates a
sale's status (``updates: {sales: [status]}``) the record keeps the status it has; a sink plugin may honour it on
other routes too (Plugg.to leaves an existing order's status alone)."""


def declared_streams(registry: Registry) -> dict[str, tuple[StreamSpec, str]]:
    """Streams the installed plugins add, with the platform that declares each (the first one wins a name)."""
    found: dict[str, tuple[StreamSpec, str]] = {}
    for name, reg in sorted(registry.platforms.items()):
        for spec in reg.platform.streams:
            found.setdefault(spec.name, (spec, name))
    return found


def known_streams(registry: Registry | None) -> dict[str, StreamSpec]:
    """Every stream a route may list: the core's, then those the installed plugins declare."""
    extra = {} if registry is None else {n: spec for n, (spec, _) in declared_streams(registry).items()}
    return {**extra, **BUILTIN_STREAMS}


def stream_spec(stream: str, registry: Registry | None = None) -> StreamSpec:
    """The model and hooks of ``stream``; a stream no installed plugin declares is a Fatal with the fix."""
    spec = BUILTIN_STREAMS.get(stream)
    if spec is None and registry is not None:
        declared = declared_streams(registry).get(stream)
        spec = declared[0] if declared else None
    if spec is None:
        raise Fatal(f"no installed plugin declares stream {stream!r} (streams: "
                    f"{', '.join(sorted(known_streams(registry)))})",
                    fix=f"Install the plugin that declares {stream!r} (see `hub plugins`), or remove it from the "
                        "route's streams and re-apply.")
    return spec


def known_tables(registry: Registry | None, platforms: list[str] | None = None) -> dict[str, MappingTable]:
    """Every DE-PARA table a route may use: the core's, then those declared by ``platforms`` (every installed
    platform when None)."""
    tables: dict[str, MappingTable] = {}
    if registry is not None:
        for name, reg in sorted(registry.platforms.items()):
            if platforms is None or name in platforms:
                for table in reg.platform.mapping_tables:
                    tables.setdefault(table.name, table)
    return {**tables, **BUILTIN_TABLES}
