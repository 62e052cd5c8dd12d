"""Hybrid offers (Plugg.to's manual for Amazon "Enviado pela Amazon", prerequisite d): the same SKU sold through
Amazon's logistics (FBA Onsite) and also from the seller's own stock. The manual requires removing them.

Plugg.to's public material does not say how a SKU shows Amazon's logistics; the plugin reads it from the SKU's
``stock_table``: a row whose ``code`` is one of ``options.fba_warehouses`` (default ``amazon_fba``) is Amazon's FBA
Onsite stock (an assumption, README). A SKU with such a row and own stock (its ``quantity``, or an ``own`` row of
another code, above zero) is a hybrid offer.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

FIX = ("Sell SKU {sku} one way only: either leave it to Amazon's logistics (remove it from the route's stock, or "
       "map its depósito away, so its own stock stays 0 in Plugg.to) or stop the FBA Onsite offer in Plugg.to's "
       "Amazon settings; then `hub retry TENANT`.")


def _amount(value: Any) -> Decimal:
    try:
        return Decimal(str(value or 0))
    except ArithmeticError:
        return Decimal("0")


def holder(product: dict[str, Any], sku: str) -> dict[str, Any]:
    """The product or the variation that is ``sku``."""
    if str(product.get("sku")) == sku:
        return product
    return next((v for v in product.get("variations") or [] if isinstance(v, dict) and str(v.get("sku")) == sku),
                product)


def problem(sku_record: dict[str, Any], fba_codes: list[str]) -> str | None:
    """Why this SKU is a hybrid offer, or None."""
    rows = [r for r in sku_record.get("stock_table") or [] if isinstance(r, dict)]
    fba = [r for r in rows if str(r.get("code")) in fba_codes]
    if not fba:
        return None
    own = _amount(sku_record.get("quantity")) + sum(
        (_amount(r.get("quantity")) for r in rows if r not in fba and r.get("type", "own") == "own"), Decimal("0"))
    if own <= 0:
        return None
    return (f"SKU {sku_record.get('sku')} is sold through Amazon's logistics (stock_table "
            f"{', '.join(str(r.get('code')) for r in fba)}) and from own stock ({own}): a hybrid offer, which "
            "Plugg.to's manual for Amazon FBA Onsite requires removing")
