"""The route config file: tenants, their connections and their routes.

Errors name the file, the key path and the fix. ``${VAR}`` in option values and ``{env: VAR}`` credentials read
the environment when the file is applied; secrets are then stored encrypted, never in the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import ConfigError
from hub.models import ENTITY_MODELS

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
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


class TransitionRule(Strict):
    from_status: str = Field(alias="from", description="'*' matches any status, including a new sale")
    to_status: str = Field(alias="to")
    actions: list[str] = Field(min_length=1)


class Mappings(Strict):
    """DE-PARA tables. A table that is present is strict: a key missing from it is an error, never a guess."""

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
    def _known_streams(cls, value: list[str]) -> list[str]:
        for stream in value:
            if stream not in ENTITY_MODELS:
                raise ValueError(f"unknown stream {stream!r}; streams are: {', '.join(ENTITY_MODELS)}")
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
        return RoutesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_errors(str(path), exc))) from None


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(value: Any, where: str) -> Any:
    """Replace ``${VAR}`` in strings (recursively) with the environment's value."""
    if isinstance(value, str):
        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set",
                                  fix=f"export {name}=... before applying the routes")
            return os.environ[name]

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, where) for v in value]
    return value
