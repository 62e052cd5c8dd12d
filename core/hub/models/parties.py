"""People and companies: customers and sellers."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from hub.models.base import Canonical
from hub.models.types import Cep, TaxId

UF = Literal[
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB", "PR", "PE", "PI",
    "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO", "EX",
]


class Address(Canonical):
    street: str | None = None
    number: str | None = None
    complement: str | None = None
    district: str | None = None
    city: str | None = None
    city_ibge: str | None = None
    state: UF | None = None
    zip: Cep | None = None
    country: str = "BR"

    def missing_for_invoice(self) -> list[str]:
        """Which fields an NF-e needs that this address lacks ("Manual de integração BLING": "endereço incompleto")."""
        required = ("street", "number", "district", "city", "state", "zip")
        return [name for name in required if not getattr(self, name)]


class Customer(Canonical):
    key_field: ClassVar[str | None] = "document"
    entity: Literal["customers"] = "customers"
    name: Annotated[str, Field(min_length=1)]
    document: TaxId | None = None
    state_registration: str | None = Field(default=None, description="Inscrição Estadual (IE)")
    rg: str | None = None
    email: str | None = None
    phone: str | None = None
    addresses: list[Address] = Field(default_factory=list)
    active: bool = True

    @property
    def person_type(self) -> Literal["F", "J"] | None:
        if not self.document:
            return None
        return "F" if len(self.document) == 11 else "J"

    def natural_key(self) -> str | None:
        return self.document


class Seller(Canonical):
    """A salesperson (vendedor)."""

    entity: Literal["sellers"] = "sellers"
    name: Annotated[str, Field(min_length=1)]
    document: TaxId | None = None
    email: str | None = None
    active: bool = True
