"""Sales (orders) and how they are paid."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from hub.models.base import Canonical, Ref
from hub.models.parties import Customer
from hub.models.types import Money, Quantity, TaxId

# SEFAZ tPag (NF-e 4.0, NT 2020.006 / 2023.004)
TPAG_CODES: dict[str, str] = {
    "01": "Dinheiro", "02": "Cheque", "03": "Cartão de Crédito", "04": "Cartão de Débito",
    "05": "Crédito Loja", "10": "Vale Alimentação", "11": "Vale Refeição", "12": "Vale Presente",
    "13": "Vale Combustível", "15": "Boleto Bancário", "16": "Depósito Bancário",
    "17": "Pagamento Instantâneo (PIX) - Dinâmico", "18": "Transferência bancária, Carteira Digital",
    "19": "Programa de fidelidade, Cashback, Crédito Virtual", "20": "Pagamento Instantâneo (PIX) - Estático",
    "21": "Crédito em Loja", "22": "Pagamento Eletrônico não Informado", "90": "Sem pagamento", "99": "Outros",
}

TPag = Annotated[str, Field(pattern=r"^\d{2}$")]


class PaymentMethod(Canonical):
    """A payment method as a platform defines it; ``code`` is that platform's key for it."""

    entity: Literal["payment_methods"] = "payment_methods"
    code: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    tpag: TPag | None = None
    active: bool = True

    @model_validator(mode="after")
    def _known_tpag(self) -> PaymentMethod:
        if self.tpag is not None and self.tpag not in TPAG_CODES:
            raise ValueError(f"tPag {self.tpag!r} is not a SEFAZ payment code (01-05, 10-13, 15-22, 90, 99)")
        return self


class Payment(Canonical):
    """``method`` is the source platform's payment-method key; the route's DE-PARA maps it for the sink."""

    method: Annotated[str, Field(min_length=1)]
    name: str | None = Field(default=None, description="the method's name on the source, so a sink that lacks it "
                                                       "can find it by name or create it")
    amount: Money
    installments: Annotated[int, Field(ge=1)] = 1
    tpag: TPag | None = None


class SaleItem(Canonical):
    """One line of a sale. A return is its own document (an exchange, a cancellation), never a negative line."""

    sku: Annotated[str, Field(min_length=1)]
    name: str | None = None
    quantity: Quantity
    unit_price: Money
    discount: Money = Decimal("0")

    @field_validator("quantity")
    @classmethod
    def _sold(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError(f"quantity {value} must be greater than zero (fix: correct the item's quantity on the "
                             "source; a return is recorded as an exchange or a cancellation, not a negative line)")
        return value

    @field_validator("discount")
    @classmethod
    def _within_line(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        quantity, price = info.data.get("quantity"), info.data.get("unit_price")
        if quantity is not None and price is not None and value > quantity * price:
            raise ValueError(f"discount {value} exceeds the line's value {quantity * price} (fix: correct the "
                             "item's discount on the source; it cannot be more than quantity x unit price)")
        return value

    @property
    def total(self) -> Decimal:
        return self.quantity * self.unit_price - self.discount


class Intermediary(Canonical):
    """The marketplace a sale went through: its CNPJ and the seller's id there. An NF-e of a marketplace sale names
    it (``infIntermed``, SEFAZ's NT 2020.006); Amazon's and Plugg.to's FBA Onsite manuals list a note without it
    among the causes of a refused invoice."""

    tax_id: TaxId
    seller_id: str | None = Field(default=None, max_length=60, description="the seller's id on the marketplace "
                                                                           "(NF-e idCadIntTran)")


class Sale(Canonical):
    """An order or POS sale. No customer means the final consumer (consumidor final)."""

    unique_key: ClassVar[bool] = True
    key_field: ClassVar[str | None] = "number"
    entity: Literal["sales"] = "sales"
    number: Annotated[str, Field(min_length=1)]
    channel: str | None = None
    store: str | None = Field(default=None, description="the source's store/point of sale key")
    issued_at: datetime
    customer: Customer | None = None
    seller: Ref | None = None
    items: Annotated[list[SaleItem], Field(min_length=1)]
    discount: Money = Decimal("0")
    freight: Money = Decimal("0")
    payments: list[Payment] = Field(default_factory=list)
    status: Annotated[str, Field(min_length=1)] = "open"
    replaces: str | None = Field(default=None, description="number of the original sale this exchange replaces")
    cancelled_by: str | None = Field(default=None, description="number of the exchange sale that cancelled this one")
    notes: str | None = None
    intermediary: Intermediary | None = None

    @property
    def total(self) -> Decimal:
        return sum((item.total for item in self.items), Decimal("0")) - self.discount + self.freight

    @field_validator("discount")
    @classmethod
    def _within_items(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        items: list[SaleItem] | None = info.data.get("items")
        if items:
            gross = sum((item.total for item in items), Decimal("0"))
            if value > gross:
                raise ValueError(f"discount {value} exceeds the items' total {gross} (fix: correct the sale's "
                                 "discount on the source; it cannot be more than what the items add up to)")
        return value

    @model_validator(mode="after")
    def _not_negative(self) -> Sale:
        if self.total < 0:
            raise ValueError(f"total: the sale totals {self.total}, below zero (fix: correct its items, discount "
                             "and freight on the source)")
        return self

    @model_validator(mode="after")
    def _paid_in_full(self) -> Sale:
        paid = sum((p.amount for p in self.payments), Decimal("0"))
        if self.payments and paid < self.total:
            raise ValueError(f"payments add up to {paid} but the sale totals {self.total}")
        return self

    def natural_key(self) -> str:
        return f"{self.channel or ''}:{self.number}"
