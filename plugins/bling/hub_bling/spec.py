"""Bling's published OpenAPI 3.0 spec: where to find it, and checks of requests against it.

The sandbox validates write bodies with it and the tests check every request the connector sent with it, so the
emulator and the connector both answer to Bling's own document rather than to each other's reading of it.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jsonschema

SPEC_NAME = "bling-openapi-reference.json"
API_PREFIX = "/Api/v3"
_SHARED = Path("shared") / "specs" / "bling" / SPEC_NAME
_PACKAGED = Path(__file__).parent / "data" / f"{SPEC_NAME}.gz"

_KEEP = ("type", "enum", "minimum", "maximum", "maxLength", "minLength", "pattern", "minItems", "maxItems",
         "uniqueItems", "multipleOf", "format")
"""OpenAPI schema keywords that mean the same in JSON Schema; the rest (example, description, xml...) is dropped."""

_CODES = {"required": 1, "type": 2, "enum": 3, "maxLength": 4, "minLength": 4, "format": 5, "minimum": 6,
          "maximum": 6, "pattern": 7, "minItems": 8, "maxItems": 8}
_TYPE_NAMES = {"integer": "inteiro", "number": "número", "string": "texto", "boolean": "booleano",
               "object": "objeto", "array": "lista", "null": "nulo"}
_REQUIRED = re.compile(r"^'(.*)' is a required property$")
_REQUIRED_UNDEFINED = {"valorLista": {"type": "number"}}
"""Names a schema requires without defining them that Bling does enforce: ``VendasItemDTO.valorLista``, the
item's list price (read strictly, the spec requires it on ``POST /pedidos/vendas``)."""
_INT = re.compile(r"^-?\d+$")


def spec_path() -> Path:
    """``$HUB_BLING_SPEC``; else the repo's sibling ``shared/`` folder (dev, CI); else the packaged copy."""
    env = os.environ.get("HUB_BLING_SPEC")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / _SHARED
        if candidate.is_file():
            return candidate
    return _PACKAGED


@functools.cache
def load_spec() -> dict[str, Any]:
    """The parsed spec (about 1 MB of JSON, read once per process)."""
    path = spec_path()
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    spec: dict[str, Any] = json.loads(raw)
    return spec


def relative(path: str) -> str:
    """``path`` without query string, ``/Api/v3`` prefix or trailing slash: ``/produtos/1``."""
    path = path.split("?", 1)[0]
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX):]
    return "/" + path.strip("/")


Patterns = dict[int, list[tuple[tuple[str | None, ...], str]]]
_CACHE: dict[int, tuple[dict[str, Any], Patterns, dict[tuple[str, str], Any]]] = {}


def _document(document: dict[str, Any] | None) -> dict[str, Any]:
    return load_spec() if document is None else document


def _cached(document: dict[str, Any]) -> tuple[Patterns, dict[tuple[str, str], Any]]:
    """Per spec document: its path patterns and compiled body validators (keyed by identity, the document kept
    alive alongside so the key cannot be reused)."""
    entry = _CACHE.get(id(document))
    if entry is None or entry[0] is not document:
        entry = (document, _build_patterns(document), {})
        _CACHE[id(document)] = entry
    return entry[1], entry[2]


def _build_patterns(document: dict[str, Any]) -> Patterns:
    """Templates by segment count, most literal segments first (``/contatos/consumidor-final`` before
    ``/contatos/{idContato}``)."""
    by_len: Patterns = {}
    for template in document["paths"]:
        segments = tuple(None if s.startswith("{") else s for s in template.strip("/").split("/"))
        by_len.setdefault(len(segments), []).append((segments, template))
    for rows in by_len.values():
        rows.sort(key=lambda row: -sum(s is not None for s in row[0]))
    return by_len


def _templates_for(path: str, document: dict[str, Any]) -> list[str]:
    segments = relative(path).strip("/").split("/")
    if not all(segments):
        return []
    return [template for pattern, template in _cached(document)[0].get(len(segments), [])
            if all(p is None or p == s for p, s in zip(pattern, segments, strict=True))]


def match(method: str, path: str, *, document: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]] | None:
    """``(template, operation)`` for ``method path`` (relative to ``/Api/v3``), or None if the spec has neither.
    ``document`` is another copy of the spec to check against (default: :func:`load_spec`)."""
    doc = _document(document)
    paths = doc["paths"]
    for template in _templates_for(path, doc):
        operation = paths[template].get(method.lower())
        if operation is not None:
            return template, operation
    return None


def _resolve(node: dict[str, Any], document: dict[str, Any] | None = None) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = _document(document)
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


class _Converter:
    """OpenAPI 3.0 schema -> JSON Schema (draft 7) for one request method.

    ``$ref``s are inlined, ``allOf`` of objects is merged (Bling splits one DTO over several parts, with
    ``required`` naming properties of a sibling part), ``nullable`` becomes a ``null`` type, and ``required`` drops
    what a client cannot or need not send: readOnly properties, names the spec requires but never defines
    (``atributos``; but not ``valorLista``, see ``_REQUIRED_UNDEFINED``) and ids described as "Ignorado no método
    POST" on a POST.
    """

    def __init__(self, method: str, document: dict[str, Any]) -> None:
        self.method = method.upper()
        self.document = document
        self.stack: list[str] = []

    def schema(self, node: dict[str, Any]) -> dict[str, Any]:
        return self._finish(self._convert(node))

    def _convert(self, node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            ref = node["$ref"]
            if ref in self.stack:
                return {}
            self.stack.append(ref)
            try:
                return self._convert(_resolve(node, self.document))
            finally:
                self.stack.pop()
        out: dict[str, Any] = {k: node[k] for k in _KEEP if k in node}
        if out.get("format") != "date":
            out.pop("format", None)
        if node.get("nullable"):
            kind = out.get("type")
            if isinstance(kind, str):
                out["type"] = [kind, "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        if "enum" in out and isinstance(out.get("type"), str):
            out["enum"] = _lenient_enum(out["type"], out["enum"])
        if "items" in node:
            out["items"] = self._convert(node["items"])
        for key in ("anyOf", "oneOf"):
            if key in node:
                out[key] = [self._convert(part) for part in node[key]]
        if "properties" in node or "required" in node:
            out["properties"] = {name: self._convert(sub) for name, sub in node.get("properties", {}).items()}
            for name in node.get("required", []):
                if name not in out["properties"] and name in _REQUIRED_UNDEFINED:
                    out["properties"][name] = dict(_REQUIRED_UNDEFINED[name])
            out["required"] = list(node.get("required", []))
            out["x-optional"] = {name for name, sub in node.get("properties", {}).items() if self._optional(sub)}
        if "allOf" in node:
            parts = [self._convert(part) for part in node["allOf"]]
            if all(_object_like(p) for p in parts) and _object_like(out):
                for part in parts:
                    _merge(out, part)
            else:
                out["allOf"] = parts
        return out

    def _optional(self, sub: dict[str, Any]) -> bool:
        target = _resolve(sub, self.document)
        if sub.get("readOnly") or target.get("readOnly"):
            return True
        text = f"{sub.get('description', '')} {target.get('description', '')}"
        return self.method == "POST" and "Ignorado no método POST" in text

    def _finish(self, node: dict[str, Any]) -> dict[str, Any]:
        optional = node.pop("x-optional", set())
        if "properties" in node:
            node["properties"] = {k: self._finish(v) for k, v in node["properties"].items()}
            node["required"] = [r for r in dict.fromkeys(node.get("required", []))
                                if r in node["properties"] and r not in optional]
            if not node["required"]:
                del node["required"]
            node.setdefault("type", "object")
        if "items" in node:
            node["items"] = self._finish(node["items"])
        for key in ("anyOf", "oneOf", "allOf"):
            if key in node:
                node[key] = [self._finish(part) for part in node[key]]
        return node


def _lenient_enum(kind: str, values: list[Any]) -> list[Any]:
    """The spec types some enums as integer with string members (``unidadeMedida``): accept both spellings."""
    out = list(values)
    for value in values:
        if kind == "integer" and isinstance(value, str) and _INT.match(value):
            out.append(int(value))
        elif kind == "string" and isinstance(value, int) and not isinstance(value, bool):
            out.append(str(value))
    return list(dict.fromkeys(out))


def _object_like(node: dict[str, Any]) -> bool:
    return node.get("type", "object") == "object" and not any(k in node for k in ("anyOf", "oneOf", "allOf"))


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    props = into.setdefault("properties", {})
    for name, sub in part.get("properties", {}).items():
        props[name] = {"allOf": [props[name], sub]} if name in props else sub
    into["required"] = [*into.get("required", []), *part.get("required", [])]
    into["x-optional"] = into.get("x-optional", set()) | part.get("x-optional", set())
    if "type" in part:
        into["type"] = part["type"]


def _validator(method: str, template: str, document: dict[str, Any]) -> jsonschema.Draft7Validator | None:
    validators = _cached(document)[1]
    key = (method, template)
    if key not in validators:
        validators[key] = None
        operation = document["paths"].get(template, {}).get(method.lower())
        if operation is not None and "requestBody" in operation:
            content = _resolve(operation["requestBody"], document).get("content", {})
            if "application/json" in content:
                schema = _Converter(method, document).schema(content["application/json"].get("schema", {}))
                validators[key] = jsonschema.Draft7Validator(
                    schema, format_checker=jsonschema.FormatChecker(formats=["date"]))
    validator: jsonschema.Draft7Validator | None = validators[key]
    return validator


def namespace(template: str) -> str:
    """Bling's error namespace for a resource: ``/pedidos/vendas`` -> ``VENDAS``, ``/contatos`` -> ``CONTATOS``."""
    segments = [s for s in template.strip("/").split("/") if not s.startswith("{")]
    if not segments:
        return ""
    name = segments[1] if segments[0] == "pedidos" and len(segments) > 1 else segments[0]
    return name.upper().replace("-", "_")


def _element(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _field(error: jsonschema.ValidationError, ns: str) -> dict[str, Any]:
    element = _element(error.absolute_path)
    kind = str(error.validator)
    if kind == "required":
        found = _REQUIRED.match(error.message)
        name = found.group(1) if found else error.message
        element = f"{element}.{name}" if element else name
        msg = f"O campo {element} é obrigatório"
    elif kind == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        msg = f"O campo {element} deve ser do tipo {' ou '.join(_TYPE_NAMES.get(str(t), str(t)) for t in wanted)}"
    elif kind == "enum":
        accepted = ", ".join(str(v) for v in error.validator_value if v is not None)
        msg = f"O valor informado para o campo {element} é inválido (aceitos: {accepted})"
    elif kind == "maxLength":
        msg = f"O campo {element} deve ter no máximo {error.validator_value} caracteres"
    elif kind == "format":
        msg = f"O campo {element} deve ser uma data no formato AAAA-MM-DD"
    else:
        msg = f"O campo {element or 'corpo'} é inválido: {error.message}"
    return {"code": _CODES.get(kind, 99), "msg": msg, "element": element or "body", "namespace": ns}


def body_errors(method: str, template: str, body: Any, *,
                document: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Bling-style field errors (``code, msg, element, namespace``) of ``body`` against the operation's
    requestBody schema; empty when it conforms or the operation takes no JSON body."""
    validator = _validator(method.upper(), template, _document(document))
    if validator is None:
        return []
    ns = namespace(template)
    errors = sorted(validator.iter_errors(body), key=lambda e: (_element(e.absolute_path), str(e.validator)))
    out: list[dict[str, Any]] = []
    for error in errors:
        field = _field(error, ns)
        if field not in out:
            out.append(field)
    return out


def _parameters(template: str, operation: dict[str, Any], document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    shared = document["paths"][template].get("parameters", [])
    params = [_resolve(p, document) for p in [*shared, *operation.get("parameters", [])]]
    return {p["name"]: p for p in params if p.get("in") == "query"}


def _value_problem(name: str, value: str, schema: dict[str, Any], document: dict[str, Any]) -> str | None:
    schema = _resolve(schema, document)
    if schema.get("type") == "array":
        schema = _resolve(schema.get("items", {}), document)
    kind = schema.get("type")
    if kind == "integer" and not _INT.match(value):
        return f"query parameter {name}={value!r} is not an integer"
    if kind == "number":
        try:
            float(value)
        except ValueError:
            return f"query parameter {name}={value!r} is not a number"
    if kind == "boolean" and value not in ("true", "false", "1", "0"):
        return f"query parameter {name}={value!r} is not a boolean"
    if "enum" in schema and value not in {str(v) for v in schema["enum"]}:
        return f"query parameter {name}={value!r} is not one of {schema['enum']}"
    return None


def request_problems(method: str, path: str, query: Sequence[tuple[str, str]], body: Any, *,
                     document: dict[str, Any] | None = None) -> list[str]:
    """What in a request the spec does not allow: an unknown path or method, an undeclared or ill-typed query
    parameter (arrays are named ``idsProdutos[]``), a missing required one, or a body that does not validate.
    An empty list means the request conforms."""
    doc = _document(document)
    found = match(method, path, document=doc)
    if found is None:
        if _templates_for(path, doc):
            return [f"{method.upper()} is not declared for {relative(path)}"]
        return [f"{relative(path)} is not a path of the spec"]
    template, operation = found
    where = f"{method.upper()} {template}"
    params = _parameters(template, operation, doc)
    problems: list[str] = []
    for name, value in query:
        if name not in params:
            problems.append(f"query parameter {name!r} is not declared for {where}")
            continue
        problem = _value_problem(name, value, params[name].get("schema", {}), doc)
        if problem:
            problems.append(f"{where}: {problem}")
    sent = {name for name, _ in query}
    problems += [f"{where}: required query parameter {name!r} is missing"
                 for name, p in params.items() if p.get("required") and name not in sent]
    has_body = "requestBody" in operation
    if not has_body:
        if body not in (None, {}, "", b""):
            problems.append(f"{where} takes no body")
    elif body is None:
        if _resolve(operation["requestBody"], doc).get("required"):
            problems.append(f"{where} requires a JSON body")
    else:
        problems += [f"{where} body: {f['element']}: {f['msg']}"
                     for f in body_errors(method, template, body, document=doc)]
    return problems
