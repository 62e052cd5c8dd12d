"""The Selling Partner API models (Swagger 2.0, from amzn/selling-partner-api-models) and checks against them.

The sandbox refuses a request its model refuses (with the SP-API ``InvalidInput`` body) and the tests check every
request the connector sent and every answer the sandbox gave, so the emulator and the connector both answer to
Amazon's published models rather than to each other's reading of them. The models are read from the repository's
sibling ``shared/specs/amazon`` folder when it is there (development, CI), else from the gzipped copies packaged in
``data/`` (unmodified files; provenance in ``shared/specs/amazon/SOURCE.md``).
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jsonschema

MODELS = ("orders_2026-01-01.json", "shipmentInvoicingV0.json", "listingsItems_2021-08-01.json",
          "tokens_2021-03-01.json", "notifications.json")
NOTIFICATIONS = ("OrderChangeNotification.json", "FBAOutboundShipmentStatusNotification.json")
_SHARED = Path("shared") / "specs" / "amazon"
_PACKAGED = Path(__file__).parent / "data"


def model_path(name: str) -> Path:
    """The shared copy of a model (``notification-schemas/`` for a notification schema), else the packaged one."""
    sub = f"notification-schemas/{name}" if name in NOTIFICATIONS else name
    for parent in Path(__file__).resolve().parents:
        candidate = parent / _SHARED / sub
        if candidate.is_file():
            return candidate
    return _PACKAGED / f"{sub}.gz"


@functools.cache
def load(name: str) -> dict[str, Any]:
    path = model_path(name)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    document: dict[str, Any] = json.loads(raw)
    return document


@functools.cache
def _operations() -> list[tuple[re.Pattern[str], str, str, str]]:
    """(path regex, method, template, model) for every operation of the models, literal paths first."""
    found = []
    for name in MODELS:
        for template, ops in load(name)["paths"].items():
            regex = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            for method in ops:
                if method != "parameters" and not method.startswith("x-"):  # x-amzn-api-sandbox: examples
                    found.append((regex, method.upper(), template, name))
    found.sort(key=lambda row: row[2].count("{"))
    return found


def match(method: str, path: str) -> tuple[str, str, dict[str, Any]] | None:
    """(template, model file, operation object) of a request, or None when no model has it."""
    for regex, verb, template, name in _operations():
        if verb == method.upper() and regex.match(path):
            return template, name, load(name)["paths"][template][method.lower()]
    return None


def operation_id(method: str, path: str) -> str | None:
    found = match(method, path)
    return str(found[2].get("operationId")) if found else None


def _validator(name: str, schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    root = {**schema, "definitions": load(name).get("definitions", {})}
    return jsonschema.Draft4Validator(root)


def schema_problems(name: str, schema: dict[str, Any], instance: Any, where: str = "body") -> list[str]:
    """What ``instance`` breaks in ``schema`` (a node of model ``name``), each as "where.path: message"."""
    problems = []
    for error in sorted(_validator(name, schema).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        place = ".".join(str(p) for p in error.absolute_path)
        problems.append(f"{where}{'.' + place if place else ''}: {error.message}")
    return problems


def _value_problems(name: str, param: dict[str, Any], raw: str) -> list[str]:
    values: list[str] = raw.split(",") if param.get("type") == "array" else [raw]
    problems = []
    items = param.get("items", {}) if param.get("type") == "array" else param
    if param.get("type") == "array":
        if "maxItems" in param and len(values) > int(param["maxItems"]):
            problems.append(f"query {param['name']}: at most {param['maxItems']} values, got {len(values)}")
        if "minItems" in param and len(values) < int(param["minItems"]):
            problems.append(f"query {param['name']}: at least {param['minItems']} values")
    for value in values:
        if "enum" in items and value not in items["enum"]:
            problems.append(f"query {param['name']}: {value!r} is not one of {items['enum']}")
        if items.get("type") == "integer":
            if not re.fullmatch(r"-?\d+", value):
                problems.append(f"query {param['name']}: {value!r} is not an integer")
                continue
            if "minimum" in items and int(value) < items["minimum"]:
                problems.append(f"query {param['name']}: {value} is below {items['minimum']}")
            if "maximum" in items and int(value) > items["maximum"]:
                problems.append(f"query {param['name']}: {value} is above {items['maximum']}")
    return problems


def request_problems(method: str, path: str, query: Sequence[tuple[str, str]] | Iterable[tuple[str, str]],
                     body: Any = None) -> list[str]:
    """Everything the model of ``method path`` says is wrong with the request: an unknown operation, a missing or
    unknown query parameter, a value outside its enum or bounds, a body breaking its schema."""
    found = match(method, path)
    if found is None:
        return [f"{method} {path}: no operation in the SP-API models"]
    template, name, op = found
    params = list(op.get("parameters", [])) + list(load(name)["paths"][template].get("parameters", []))
    declared = {p["name"]: p for p in params if p.get("in") == "query"}
    given: dict[str, str] = {}
    problems = []
    for key, value in query:
        if key in given:
            problems.append(f"query {key}: given twice (arrays are comma-separated)")
        given[key] = value
    for key, value in given.items():
        if key not in declared:
            problems.append(f"query {key}: not a parameter of {op.get('operationId')}")
        else:
            problems += _value_problems(name, declared[key], value)
    problems += [f"query {k}: required" for k, p in declared.items() if p.get("required") and k not in given]
    body_param = next((p for p in params if p.get("in") == "body"), None)
    if body_param is not None:
        if body is None:
            problems.append("body: required")
        else:
            problems += schema_problems(name, body_param["schema"], body)
    return problems


def response_problems(method: str, path: str, status: int, body: Any) -> list[str]:
    """What an answer breaks in the model's schema for its status (an answer the model has no schema for: none)."""
    found = match(method, path)
    if found is None:
        return [f"{method} {path}: no operation in the SP-API models"]
    _, name, op = found
    schema = (op.get("responses", {}).get(str(status)) or {}).get("schema")
    return schema_problems(name, schema, body, where="response") if schema else []


def notification_problems(notification: dict[str, Any]) -> list[str]:
    kind = {"ORDER_CHANGE": "OrderChangeNotification.json",
            "FBA_OUTBOUND_SHIPMENT_STATUS": "FBAOutboundShipmentStatusNotification.json"}.get(
        str(notification.get("NotificationType")))
    if kind is None:
        return [f"NotificationType {notification.get('NotificationType')!r}: no schema"]
    schema = load(kind)
    return [f"notification{'.' + '.'.join(map(str, e.absolute_path)) if e.absolute_path else ''}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(notification)]


__all__ = ["MODELS", "load", "match", "model_path", "notification_problems", "operation_id", "request_problems",
           "response_problems", "schema_problems"]
