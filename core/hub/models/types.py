"""Annotated field types shared by the canonical models.

Money is exact: ``Decimal`` in Python, a string in JSON, never a float (a float loses centavos, and SQLite
would store one). Documents are validated with python-stdnum, which knows the alphanumeric CNPJ.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer
from stdnum import ean
from stdnum.br import cnpj, cpf


def _exact_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("expected an amount, got a boolean")
    if isinstance(value, float):
        raise ValueError("amounts must be given as strings or Decimal, never float (floats lose centavos)")
    try:
        result = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise ValueError(f"{value!r} is not a number; write amounts like '10.50'") from None
    if not result.is_finite():
        raise ValueError("amounts must be finite")
    return result


def _money(value: Any) -> Decimal:
    result = _exact_decimal(value)
    if result < 0:
        raise ValueError("amounts cannot be negative")
    return result


Money = Annotated[Decimal, BeforeValidator(_money), PlainSerializer(str, return_type=str, when_used="json")]
"""A non-negative exact amount in BRL."""

Quantity = Annotated[Decimal, BeforeValidator(_exact_decimal), PlainSerializer(str, return_type=str, when_used="json")]
"""An exact quantity (stock can be negative in an ERP; fractions are allowed for weighed goods)."""


def normalize_document(value: str) -> str:
    """CPF or CNPJ without punctuation, upper-cased (alphanumeric CNPJ has letters)."""
    return "".join(ch for ch in str(value).upper() if ch.isalnum())


def _tax_id(value: Any) -> str:
    doc = normalize_document(value)
    if len(doc) == 11 and doc.isdigit():
        if not cpf.is_valid(doc):
            raise ValueError(f"CPF {value!r} has a wrong check digit; correct it on the customer's record")
        return doc
    if len(doc) == 14:
        if not cnpj.is_valid(doc):
            raise ValueError(f"CNPJ {value!r} has a wrong check digit; correct it on the customer's record")
        return doc
    raise ValueError(f"{value!r} is neither a CPF (11 digits) nor a CNPJ (14 characters)")


TaxId = Annotated[str, BeforeValidator(_tax_id)]
"""A valid CPF or CNPJ (numeric or the new alphanumeric CNPJ), stored without punctuation."""


def _gtin(value: Any) -> str:
    code = str(value).strip()
    if not (code.isdigit() and len(code) in (8, 12, 13, 14) and ean.is_valid(code)):
        raise ValueError(f"{value!r} is not a valid GTIN/EAN (8, 12, 13 or 14 digits with a check digit)")
    return code


Gtin = Annotated[str, BeforeValidator(_gtin)]


def _digits(name: str, length: int) -> Any:
    def check(value: Any) -> str:
        text = "".join(ch for ch in str(value) if ch.isdigit())
        if len(text) != length:
            raise ValueError(f"{name} must have {length} digits, got {value!r}")
        return text

    return check


Ncm = Annotated[str, BeforeValidator(_digits("NCM", 8))]
Cest = Annotated[str, BeforeValidator(_digits("CEST", 7))]
Cep = Annotated[str, BeforeValidator(_digits("CEP", 8))]


def access_key_check_digit(first43: str) -> int:
    """The NF-e access key's mod-11 check digit (weights 2..9 from the right)."""
    total = sum(int(d) * (2 + i % 8) for i, d in enumerate(reversed(first43)))
    rest = total % 11
    return 0 if rest < 2 else 11 - rest


def _access_key(value: Any) -> str:
    key = "".join(ch for ch in str(value) if ch.isdigit())
    if len(key) != 44:
        raise ValueError(f"an NF-e access key has 44 digits, got {len(key)}")
    if access_key_check_digit(key[:43]) != int(key[43]):
        raise ValueError(f"NF-e access key {key} has a wrong check digit")
    return key


AccessKey = Annotated[str, BeforeValidator(_access_key)]
