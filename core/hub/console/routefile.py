"""The DE-PARA editor beside the route file: what differs between the store's tables and the file's, and writing
the store's values back into the file, so a console save is not undone by the next ``hub routes apply``.

``hub routes apply`` records the file it read (``routes.config["applied_from"]``, an absolute path). The file is
written with :func:`hub.cli.route_edit.write_starters` (ruamel's round trip: comments, order and quoting stay; the
result is validated before it atomically replaces the file). Entries only in the file are left there: they were
edited after the last apply and are the operator's, not the console's, to drop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.errors import ConfigError

Tables = dict[str, dict[str, str]]


@dataclass
class RouteFile:
    """The route file a route was applied from, as the console sees it."""

    path: str | None
    writable: bool = False
    why: str | None = None
    """Why it cannot be written (or read) from here."""
    tables: Tables | None = None
    """The file's DE-PARA tables for the route (None when it could not be read)."""


def _tables(raw: Any) -> Tables:
    return {str(t): {str(k): str(v) for k, v in entries.items()}
            for t, entries in (raw or {}).items() if isinstance(entries, dict)}


def store_tables(config: dict[str, Any]) -> Tables:
    """The DE-PARA tables the store holds for a route (``routes.config``); unset tables left out."""
    return _tables(config.get("mappings"))


def read(config: dict[str, Any], tenant: str, route: str) -> RouteFile:
    """The route's file and its tables, or why the console cannot use it."""
    from hub.config import routes as parsing

    applied = config.get("applied_from")
    if not applied:
        return RouteFile(None, why="unknown")
    path = Path(str(applied))
    if not path.is_file():
        return RouteFile(str(path), why="no such file on this host")
    try:
        parsed = parsing.load(path)
    except ConfigError as exc:
        return RouteFile(str(path), why=f"it does not load ({exc.message.splitlines()[0]})")
    node = parsed.tenants.get(tenant)
    declared = node.routes.get(route) if node is not None else None
    if declared is None:
        return RouteFile(str(path), why=f"it no longer declares tenants.{tenant}.routes.{route}")
    tables = _tables({**declared.mappings.model_dump(by_alias=True), **(declared.mappings.model_extra or {})})
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        return RouteFile(str(path), why="this process may not write it or its folder", tables=tables)
    return RouteFile(str(path), writable=True, tables=tables)


def diff(hub: Tables, file: Tables) -> list[dict[str, str | None]]:
    """Each entry that is not the same in both: ``differs``, ``only_in_hub`` or ``only_in_file``."""
    rows: list[dict[str, str | None]] = []
    for table in sorted(set(hub) | set(file)):
        mine, theirs = hub.get(table, {}), file.get(table, {})
        for source in sorted(set(mine) | set(theirs)):
            a, b = mine.get(source), theirs.get(source)
            if a == b:
                continue
            kind = "only_in_file" if a is None else "only_in_hub" if b is None else "differs"
            rows.append({"table": table, "source": source, "hub": a, "file": b, "kind": kind})
    return rows


def write_back(config: dict[str, Any], tenant: str, route: str) -> tuple[str, int]:
    """Write the store's tables into the route file (changed and missing entries); the path and how many
    entries were written. Raises ConfigError naming the file and the fix when it cannot be written."""
    from hub.cli.route_edit import write_starters

    found = read(config, tenant, route)
    if found.path is None or not found.writable:
        raise ConfigError(f"tenant {tenant}, route {route}: the route file {found.path or '(unknown)'} cannot be "
                          f"written from the console: {found.why}",
                          fix="Copy the values shown into the file by hand, or apply the route from a file this "
                              "console can write (hub routes apply FILE).")
    changed = diff(store_tables(config), found.tables or {})
    wanted: Tables = {}
    for row in changed:
        if row["kind"] != "only_in_file" and row["hub"] is not None:
            wanted.setdefault(str(row["table"]), {})[str(row["source"])] = row["hub"]
    if not wanted:
        return found.path, 0
    written = write_starters(found.path, tenant, route, wanted, overwrite=True)
    return found.path, sum(len(entries) for entries in written.values())
