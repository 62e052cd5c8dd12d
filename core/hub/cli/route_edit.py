"""``hub mappings --write``: DE-PARA starter tables inserted into the operator's route file in place.

The file is edited with ruamel.yaml's round trip, so its comments, key order, quoting, flow mappings, ``${VAR}``
references and indentation survive; only the missing entries are added, an entry already there is never changed.
The result is parsed and validated before it replaces the file (atomically), so a failed write leaves it as it was.
"""

from __future__ import annotations

import os
import tempfile
from io import StringIO
from pathlib import Path
from typing import Any

from hub.errors import ConfigError


def write_starters(path: str | Path, tenant: str, route: str, tables: dict[str, dict[str, str]],
                   overwrite: bool = False) -> dict[str, dict[str, str]]:
    """Add each table's entries under ``tenants.TENANT.routes.ROUTE.mappings`` in the file at ``path``; return,
    per table, the entries added (source value -> sink value, ``TODO`` where the sink has no same-named value).
    ``overwrite`` (the console's "write to the route file") also changes entries whose value differs, in place."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.util import load_yaml_guess_indent

    from hub.config import routes as config

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", fix="Give the route file this route was applied from.") from None
    try:
        _, sequence, offset = load_yaml_guess_indent(text)
        yaml = YAML()  # round trip
        yaml.preserve_quotes = True
        yaml.width = 4096  # never re-wrap the operator's long lines
        yaml.indent(mapping=_mapping_indent(text), sequence=sequence or 2, offset=offset or 0)
        data = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", fix="Fix the YAML syntax at the line shown.") from None
    node = _route_node(data, path, tenant, route)
    mappings = node.get("mappings")
    if mappings is None:
        mappings = CommentedMap()
        node.insert(_after(node, ("schedule", "streams", "sink")), "mappings", mappings)
    added: dict[str, dict[str, str]] = {}
    for table, entries in tables.items():
        present = mappings.get(table)
        if present is None:
            present = mappings[table] = CommentedMap()
        elif not isinstance(present, dict):
            raise ConfigError(f"{path}: tenants.{tenant}.routes.{route}.mappings.{table} is not a table",
                              fix="Make it a mapping of source value -> sink value, or remove it, and run again.")
        new = {source: sink for source, sink in sorted(entries.items())
               if source not in present or (overwrite and str(present[source]) != sink)}
        for source, sink in new.items():
            present[source] = sink
        if new:
            added[table] = new
    if not added:
        return added
    out = StringIO()
    yaml.dump(data, out)
    _replace(path, out.getvalue(), config.load)
    return added


def _mapping_indent(text: str) -> int:
    """The file's mapping indent: the smallest indentation of a key line (ruamel guesses only sequences')."""
    found = [len(line) - len(line.lstrip(" ")) for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith(("#", "-"))]
    return min((n for n in found if n > 0), default=2)


def _route_node(data: Any, path: Path, tenant: str, route: str) -> Any:
    try:
        node = data["tenants"][tenant]["routes"][route]
    except (KeyError, TypeError):
        node = None
    if not isinstance(node, dict):
        raise ConfigError(f"{path} does not declare route {route} of tenant {tenant} (tenants.{tenant}.routes.{route})",
                          fix="Give the route file this route was applied from (`hub routes apply FILE`).")
    return node


def _after(node: Any, keys: tuple[str, ...]) -> int:
    """Where a new ``mappings:`` goes: after the first of ``keys`` the route has, else at its end."""
    order = list(node)
    for key in keys:
        if key in order:
            return order.index(key) + 1
    return len(order)


def _replace(path: Path, text: str, validate: Any) -> None:
    """Write ``text`` beside ``path``, validate it as a route file, then move it over ``path`` (same mode)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        validate(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
