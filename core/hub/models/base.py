"""The base of every canonical model, and references between records."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Canonical(BaseModel):
    """Immutable, strict about unknown fields: a typo in a plugin's mapper fails loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    unique_key: ClassVar[bool] = False
    """True when the natural key names one record per source connection (a sale number, a SKU): a second record of
    the same source with that key is quarantined by the core, never merged into the first."""
    key_field: ClassVar[str | None] = None
    """The field the natural key is made of, named when the core refuses a key."""

    def natural_key(self) -> str | None:
        """A key that identifies the same thing on every platform (SKU, CPF/CNPJ), if there is one."""
        return None

    def canonical_json(self) -> str:
        """The record as the content hash sees it: keys sorted, no empty (None) fields, ASCII only."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        """Stable over field order and platforms: change detection and idempotency keys use it."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class Ref(BaseModel):
    """A pointer to another record as the source platform names it.

    The core resolves it through the bindings table: ``ctx.resolve(entity, ref)`` gives the sink's id, or None
    when the record is not bound on the sink (e.g. "the seller only when already bound on both sides").
    """

    model_config = ConfigDict(frozen=True)

    external_id: str
    name: str | None = None
