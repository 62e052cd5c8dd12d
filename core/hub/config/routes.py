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
    enabled: bool = True

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


def _format_errors(path: str, exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        fix = _FIXES.get(err["type"], "correct the value")
        lines.append(f"{path}: {key}: {err['msg']} (fix: {fix})")
    return lines


def load(path: str | Path) -> RoutesFile:
    """Parse and validate the structure of a route file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", fix="Give the path of a route config YAML file.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", fix="Fix the YAML syntax at the line shown.") from None
    try:
        parsed = RoutesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_errors(str(path), exc))) from None
    parsed._source = str(path)
    return parsed


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
