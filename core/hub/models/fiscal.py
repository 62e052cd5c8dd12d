"""Invoices (NF-e), status transitions and fiscal problems."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.models.base import Canonical, Ref
from hub.models.types import AccessKey, Money

InvoiceStatus = Literal["pending", "authorized", "rejected", "cancelled"]


class Invoice(Canonical):
    unique_key: ClassVar[bool] = True
    key_field: ClassVar[str | None] = "access_key"
    entity: Literal["invoices"] = "invoices"
    kind: Literal["sale", "return"] = "sale"
    number: str | None = None
    series: str | None = None
    access_key: AccessKey | None = None
    status: InvoiceStatus = "pending"
    issued_at: datetime | None = None
    total: Money | None = None
    sale: Ref | None = None
    xml: str | None = None
    rejection_reason: str | None = None

    def natural_key(self) -> str | None:
        return self.access_key


class StatusTransition(BaseModel):
    """A sale moved from one status to another (names as the route's status table canonicalizes them)."""

    model_config = ConfigDict(frozen=True)

    entity: str = "sales"
    canonical_id: str
    from_status: str | None
    to_status: str
    at: datetime

    @property
    def key(self) -> str:
        return f"{self.entity}:{self.canonical_id}:{self.from_status}->{self.to_status}"


class FiscalProblem(BaseModel):
    """One reason an NF-e would be rejected, found before trying: names the record, the field and the fix."""

    model_config = ConfigDict(frozen=True)

    record: str
    field: str
    problem: str
    fix: str
    platform: str | None = None

    def __str__(self) -> str:
        return f"{self.record}: {self.field}: {self.problem} — fix: {self.fix}"


class Action(BaseModel):
    """A remote action a plugin asks for in answer to a status transition (e.g. Bling's lancar-estoque)."""

    model_config = ConfigDict(frozen=True)

    name: Annotated[str, Field(min_length=1)]
    params: dict[str, str] = Field(default_factory=dict)
