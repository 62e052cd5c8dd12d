"""Catalog entities: what a product, its category, its stock and its price are, platform-neutral."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from hub.models.base import Canonical, Ref
from hub.models.types import Cest, Gtin, Money, Ncm, Quantity

Origin = Annotated[int, Field(ge=0, le=8, description="origem da mercadoria (0-8, table A of the ICMS)")]


class ProductFiscal(Canonical):
    """The fiscal attributes an NF-e needs per item. NBM is asked by Plugg.to/Amazon flows."""

    ncm: Ncm | None = None
    cest: Cest | None = None
    origin: Origin | None = None
    nbm: str | None = None


class Variation(Canonical):
    """One cell of a product grid (e.g. Cor=Azul, Tamanho=M); it belongs to its parent product."""

    sku: Annotated[str, Field(min_length=1)]
    gtin: Gtin | None = None
    price: Money | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    active: bool = True


class Product(Canonical):
    unique_key: ClassVar[bool] = True
    key_field: ClassVar[str | None] = "sku"
    entity: Literal["products"] = "products"
    sku: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    gtin: Gtin | None = None
    price: Money | None = None
    cost: Money | None = None
    active: bool = True
    unit: str = "UN"
    category_path: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict)
    variations: list[Variation] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)
    fiscal: ProductFiscal = Field(default_factory=ProductFiscal)

    def natural_key(self) -> str:
        return self.sku


class Category(Canonical):
    key_field: ClassVar[str | None] = "path"
    entity: Literal["categories"] = "categories"
    path: Annotated[list[str], Field(min_length=1)]

    @property
    def name(self) -> str:
        return self.path[-1]

    def natural_key(self) -> str:
        return " > ".join(self.path)


class StockLevel(Canonical):
    """The balance of one SKU in one warehouse (Bling: depósito). It may be negative: ERPs allow it."""

    unique_key: ClassVar[bool] = True
    key_field: ClassVar[str | None] = "sku"

    entity: Literal["stock"] = "stock"
    sku: Annotated[str, Field(min_length=1)]
    warehouse: str = "default"
    quantity: Quantity
    updated_at: datetime | None = None

    def natural_key(self) -> str:
        return f"{self.sku}@{self.warehouse}"


class Price(Canonical):
    unique_key: ClassVar[bool] = True
    key_field: ClassVar[str | None] = "sku"
    entity: Literal["prices"] = "prices"
    sku: Annotated[str, Field(min_length=1)]
    price: Money
    list_price: Money | None = None
    price_list: str = "default"
    product: Ref | None = None

    def natural_key(self) -> str:
        return f"{self.sku}@{self.price_list}"
