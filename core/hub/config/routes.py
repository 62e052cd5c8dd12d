"""The route config file: tenants, their connections and their routes.

Errors name the file, the key path and the fix. ``${VAR}`` in option values and ``{env: VAR}`` credentials read
the environment when the file is applied; secrets are then stored encrypted, never in the file. A route file may
read only variables meant for it (see ``env_refusal``): never the hub's own settings such as HUB_SECRET_KEY.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from hub.errors import ConfigError
from hub.models import ENTITY_MODELS

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
_STREAM = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int) -> int:
    if isinstance(text, int):
        return text
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 1h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EnvSecret(Strict):
    env: str


class ConnectionConfig(Strict):
    platform: Name
    options: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, EnvSecret | str] | Literal["stored"] = Field(default_factory=dict)

    @field_validator("credentials")
    @classmethod
    def _no_plain_secrets(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, secret in value.items():
                if isinstance(secret, str):
                    raise ValueError(
                        f"credential {key!r} is written in clear; use {{env: VARIABLE}} or `credentials: stored`"
                    )
        return value


def same_status(a: str, b: str) -> bool:
    """Status names compare without case, accents or repeated spaces: "Em aberto" is "em  Aberto"."""
    def fold(text: str) -> str:
        plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return " ".join(plain.casefold().split())

    return fold(a) == fold(b)


class TransitionRule(Strict):
    """One row of a route's transition table: on a change ``from`` -> ``to`` (names as the route's ``statuses``
    table gives them), run ``actions`` on the route's platform that declares each."""

    model_config = ConfigDict(frozen=True)

    from_status: str = Field(alias="from", description="'*' matches any status, including a new sale")
    to_status: str = Field(alias="to", description="'*' matches any status")
    actions: list[str] = Field(min_length=1)

    def matches(self, from_status: str | None, to_status: str) -> bool:
        """Whether a change from ``from_status`` (None: a new sale) to ``to_status`` calls for this rule."""
        if self.from_status != "*" and (from_status is None or not same_status(self.from_status, from_status)):
            return False
        return self.to_status == "*" or same_status(self.to_status, to_status)


TableName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class Mappings(Strict):
    """DE-PARA tables. A table that is present is strict: a key missing from it is an error, never a guess.

    Besides the core's three, a route may use any table an installed plugin declares (``Platform.mapping_tables``);
    the file is parsed without the plugins, so ``hub routes validate`` checks those names."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    __pydantic_extra__: dict[TableName, dict[str, str] | None] = Field(init=False)

    payment_methods: dict[str, str] | None = None
    statuses: dict[str, str] | None = None
    stores: dict[str, str] | None = None


class RouteConfig(Strict):
    source: Name
    sink: Name
    streams: list[str] = Field(min_length=1)
    schedule: str | int | None = None
    mappings: Mappings = Field(default_factory=Mappings)
    transitions: list[TransitionRule] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    emit_invoices: bool = Field(default=False, description="issue each sale's NF-e on the sink once it is there")
    cancel_replaced: str | None = Field(
        default=None, description="when a sale replaces another (an exchange), give the original this status of the "
                                  "source (e.g. 'canceled'): its cancellation and reversals then run on the sink")
    replace: list[str] = Field(
        default_factory=list, description="streams whose records on the sink are replaced by the source's: after a "
                                          "full sync, the sink's other records of that stream are deleted")
    updates: dict[str, list[str]] = Field(
        default_factory=dict, description="streams this route only updates, with the fields it carries: a record of "
                                          "the source changes those fields of the record the store already has (e.g. "
                                          "an order's status coming back from the ERP), never creates one, and is "
                                          "pushed only when one of them changed")
    enabled: bool = True

    @field_validator("updates")
    @classmethod
    def _update_fields(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for stream, fields in value.items():
            if not fields:
                raise ValueError(f"updates.{stream} lists no field; name the fields this route carries (e.g. "
                                 "[status]) or remove the entry")
        return value

    @field_validator("streams")
    @classmethod
    def _stream_names(cls, value: list[str]) -> list[str]:
        """Only the shape: a plugin may declare streams (``Platform.streams``), checked by ``hub routes validate``."""
        for stream in value:
            if not _STREAM.match(stream):
                raise ValueError(f"{stream!r} is not a stream name; the core's streams are: "
                                 f"{', '.join(ENTITY_MODELS)} (plugins may declare others)")
        return value

    @field_validator("schedule")
    @classmethod
    def _duration(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_duration(value)
        return value


class TenantConfig(Strict):
    name: str
    connections: dict[Name, ConnectionConfig] = Field(default_factory=dict)
    routes: dict[Name, RouteConfig] = Field(default_factory=dict)


class RoutesFile(Strict):
    version: Literal[1] = 1
    tenants: dict[Name, TenantConfig]
    _source: str = PrivateAttr(default="the route file")
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    @property
    def lines(self) -> dict[tuple[str | int, ...], int]:
        """The line of each key in the file it was read from (for error messages)."""
        return self._lines

    @property
    def source(self) -> str:
        """The file it was read from, for error messages."""
        return self._source


_FIXES = {
    "missing": "add this key",
    "extra_forbidden": "remove this key or check its spelling",
    "string_pattern_mismatch": "use lower-case letters, digits, '-' and '_' only",
    "literal_error": "use one of the allowed values",
}
CLOSING = "Correct the keys listed above, then run `hub routes validate FILE` again."
"""The one closing line of every route-file error."""

Lines = dict[tuple[str | int, ...], int]


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys and drops the first silently (a second ``sales:`` route would
    replace the first): this loader refuses them, naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise ConfigError(f"line {line}: key {key!r} appears twice in the same block (first at line {first}); "
                                  "YAML would keep only the last one",
                                  fix="Remove or rename one of them, then run `hub routes validate FILE` again.")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _lines(node: yaml.Node | None, path: tuple[str | int, ...] = (), out: Lines | None = None) -> Lines:
    """The line (1-based) of every key and list item of the document, by its path."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key: str | int = key_node.value
            if key_node.tag.endswith(":int"):
                try:
                    key = int(key_node.value)
                except ValueError:
                    pass
            out[(*path, key)] = key_node.start_mark.line + 1
            _lines(value, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _lines(item, (*path, i), out)
    return out


def line_of(lines: Lines, path: tuple[str | int, ...]) -> int | None:
    """The line of ``path``, or of its nearest parent the file has."""
    for n in range(len(path), 0, -1):
        found = lines.get(tuple(path[:n])) or lines.get(tuple(str(p) for p in path[:n]))
        if found:
            return found
    return None


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for model in (RoutesFile, TenantConfig, ConnectionConfig, RouteConfig, Mappings, TransitionRule, EnvSecret):
        for name, info in model.model_fields.items():
            keys.add(info.alias or name)
    return keys


def suggest(word: str | int, choices: Any) -> str:
    """`` (did you mean `x`?)`` for a near miss among ``choices``, else nothing."""
    import difflib

    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.7)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _clean_loc(raw: Any, loc: tuple[Any, ...]) -> tuple[tuple[str | int, ...], bool]:
    """The error's path in the file, without pydantic's type tags (``schedule.str``, ``function-after[...]``);
    and whether it points at a mapping's key rather than its value."""
    path: list[str | int] = []
    node = raw
    at_key = False
    for part in loc:
        if part == "[key]":
            at_key = True
            continue
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and str(part) in {str(k) for k in node}:
            match = next(k for k in node if str(k) == str(part))
            path.append(match)
            node = node[match]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and not isinstance(part, int) and ("[" in str(part) or part in _TYPE_TAGS):
            continue  # a union member's tag, not a key
        elif not isinstance(node, dict | list):
            continue  # a tag under a scalar value
        else:
            path.append(part)  # a missing or unknown key: name it
            node = None
    return tuple(path), at_key


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "EnvSecret", "Mappings", "TransitionRule"}


def _format_errors(path: str, exc: ValidationError, raw: Any = None, lines: Lines | None = None) -> list[str]:
    known = _known_keys()
    grouped: dict[tuple[str | int, ...], list[tuple[str, str, str]]] = {}
    for err in exc.errors():
        loc, at_key = _clean_loc(raw, tuple(err["loc"]))
        msg = str(err["msg"]).removeprefix("Value error, ")
        fix = _FIXES.get(err["type"], "correct the value")
        if err["type"] == "extra_forbidden" and loc:
            msg = "unknown key"
            hint = suggest(loc[-1], known)
            if hint:
                fix = f"rename it to `{hint.split('`')[1]}`, or remove this key"
                msg += hint
        if isinstance(err.get("input"), int | float) and not isinstance(err.get("input"), bool) and (
                err["type"] in ("string_type",) or at_key):
            fix = (f"quote it: YAML reads {err['input']} as a number; write '{err['input']}'"
                   + (" (a DE-PARA code or a name must be text)" if not at_key else " as the key"))
        if at_key and loc and isinstance(loc[-1], int | float):
            fix = f"quote the key: write '{loc[-1]}': ... (YAML reads {loc[-1]} as a number)"
        grouped.setdefault(loc, []).append((err["type"], msg, fix))
    out = []
    for loc, found in grouped.items():
        custom = [f for f in found if f[0] == "value_error"] or found
        seen: dict[str, str] = {}
        for _type, msg, fix in custom:
            seen.setdefault(msg, fix)
        msg = " or ".join(seen)
        fix = next(iter(seen.values()))
        key = ".".join(str(part) for part in loc) or "(top level)"
        line = line_of(lines or {}, loc) if loc else None
        out.append(f"{path}:{f' line {line}:' if line else ''} {key}: {msg} (fix: {fix})")
    return out


def load(path: str | Path) -> RoutesFile:
    """Parse and validate the structure of a route file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", fix="Give the path of a route config YAML file.") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
        lines = _lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}", fix=exc.fix) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", fix="Fix the YAML syntax at the line shown.") from None
    try:
        parsed = RoutesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_errors(str(path), exc, raw, lines)), fix=CLOSING) from None
    parsed._source = str(path)
    parsed._lines = lines
    return parsed


_KEY = re.compile(r"^(?P<file>.*?): (?P<key>tenants\.[^\s:]+)")


def with_line(parsed: RoutesFile, message: str) -> str:
    """``FILE: tenants.x.y: ...`` as ``FILE: line N: tenants.x.y: ...`` when the file has that key."""
    match = _KEY.match(message)
    if not match or " line " in message[:match.end("file") + 7]:
        return message
    path = tuple(match.group("key").split("."))
    line = line_of(parsed.lines, tuple(int(p) if p.isdigit() else p for p in path))
    if line is None:
        return message
    return f"{match.group('file')}: line {line}: {message[match.start('key'):]}"


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ENV_PREFIX = "HUB_ENV_"


def platform_prefix(platform: str) -> str:
    return platform.upper().replace("-", "_") + "_"


def env_refusal(name: str, platform: str) -> str | None:
    """Why a route file may not read ``name`` for a connection on ``platform``; None when it may.

    Allowed: ``HUB_ENV_*``, the platform's own ``PLATFORM_*`` and the names listed in ``HUB_ENV_ALLOW``
    (comma-separated). Other ``HUB_*`` names are the hub's settings (its key, its database) and never allowed."""
    prefix = platform_prefix(platform)
    allow = {n.strip() for n in os.environ.get("HUB_ENV_ALLOW", "").split(",") if n.strip()}
    if name.startswith(ENV_PREFIX) or (not name.startswith("HUB_") and (name.startswith(prefix) or name in allow)):
        return None
    why = "is one of the hub's own settings" if name.startswith("HUB_") else "is not meant for route files"
    return (f"environment variable {name} {why}; a {platform} connection may read only {ENV_PREFIX}*, {prefix}* "
            f"or the names listed in HUB_ENV_ALLOW")


def env_fix(name: str, platform: str) -> str:
    fix = f"Rename the variable to {ENV_PREFIX}... or {platform_prefix(platform)}..."
    if not name.startswith("HUB_"):
        fix += f", or add {name} to HUB_ENV_ALLOW (comma-separated names)"
    return fix + "; HUB_* settings such as HUB_SECRET_KEY are never readable from a route file."


def read_env(name: str, platform: str, where: str) -> str | None:
    """The variable's value (None when unset), after refusing one this connection may not read."""
    refusal = env_refusal(name, platform)
    if refusal is not None:
        raise ConfigError(f"{where}: {refusal}", fix=env_fix(name, platform))
    return os.environ.get(name)


def references(value: Any) -> bool:
    """Whether ``value`` (recursively) holds a ``${VAR}`` reference."""
    if isinstance(value, str):
        return _VAR.search(value) is not None
    if isinstance(value, dict):
        return any(references(v) for v in value.values())
    if isinstance(value, list):
        return any(references(v) for v in value)
    return False


def expand(value: Any, where: str, platform: str) -> Any:
    """Replace ``${VAR}`` in strings (recursively) with the environment's value, reading only allowed names."""
    if isinstance(value, str):
        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            found = read_env(name, platform, where)
            if found is None:
                raise ConfigError(f"{where}: environment variable {name} is not set",
                                  fix=f"export {name}=... before applying the routes")
            return found

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: expand(v, f"{where}.{k}", platform) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, where, platform) for v in value]
    return value
