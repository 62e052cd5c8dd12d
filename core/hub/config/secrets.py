"""Secrets among a connection's options: which they are, kept encrypted apart, merged back for the connector.

An option is a secret when its value came from ``${VAR}`` (the operator kept it out of the file) or when the
platform's options model marks the field secret (pydantic ``SecretStr``/``SecretBytes``, or
``json_schema_extra={"secret": True}``). The ``options`` column then keeps the ``${VAR}`` template or nothing, and
``secret_options`` holds the values encrypted by the Vault.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr
from sqlalchemy import select

from hub.config.routes import references
from hub.crypto import Vault
from hub.store.engine import Store
from hub.store.schema import Connection


def _secret_type(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_secret_type(arg) for arg in typing.get_args(annotation))


def secret_fields(model: type[BaseModel] | None) -> set[str]:
    """Names and aliases of the fields ``model`` marks secret."""
    found: set[str] = set()
    for name, field in (model.model_fields.items() if model is not None else ()):
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if _secret_type(field.annotation) or extra.get("secret") is True:
            found |= {name, *(a for a in (field.alias, field.validation_alias) if isinstance(a, str))}
    return found


def split_options(raw: dict[str, Any], expanded: dict[str, Any],
                  model: type[BaseModel] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the ``options`` column keeps, what is stored encrypted) for options written ``raw`` in the file."""
    marked = secret_fields(model)
    clear: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for key, value in expanded.items():
        templated = references(raw.get(key))
        if templated or key in marked:
            secret[key] = value
            if templated:
                clear[key] = raw[key]
        else:
            clear[key] = value
    return clear, secret


def connection_options(vault: Vault, conn: Connection) -> dict[str, Any]:
    """The options a connector sees: the stored ones with the decrypted secrets over them."""
    options = dict(conn.options or {})
    if conn.secret_options:
        options.update(vault.decrypt(conn.secret_options))
    return options


def rotate_all(store: Store, vault: Vault) -> int:
    """Re-encrypt every connection's credentials and secret options with the newest key; return how many rows.

    Rows are locked as token renewal locks them, so a token renewed meanwhile is never overwritten."""
    rotated = 0
    with store.begin() as s:
        for conn in s.scalars(select(Connection).order_by(Connection.id).with_for_update()):
            if conn.credentials:
                conn.credentials = vault.rotate(conn.credentials)
            if conn.secret_options:
                conn.secret_options = vault.rotate(conn.secret_options)
            rotated += bool(conn.credentials or conn.secret_options)
    return rotated
