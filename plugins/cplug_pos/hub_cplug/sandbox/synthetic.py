"""Valid Brazilian identifiers and the fixed catalogue a new sandbox company starts with."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from hub.models.types import access_key_check_digit

PAYMENT_METHODS: list[tuple[str, str]] = [
    ("Dinheiro", "01"), ("Cartão de Crédito", "03"), ("Cartão de Débito", "04"), ("PIX", "17"),
    ("Crédito em Loja", "05"), ("Boleto", "15"), ("Pontos de Fidelidade", "19"), ("Vale Presente", "12"),
    ("Cheque", "02"),
]
"""(name, NFC-e tPag). The first six are the common ones; the rest are the names CPlug's Bling screen lists."""

STORES = ["Loja Centro", "Loja Shopping"]
UNITS = [("UN", "Unidade"), ("KG", "Quilograma"), ("CX", "Caixa"), ("PC", "Peça"), ("L", "Litro"), ("M", "Metro")]
STREETS = [("Av. Paulista", "Bela Vista", "São Paulo", "SP", "01310100"),
           ("Rua XV de Novembro", "Centro", "Curitiba", "PR", "80020310"),
           ("Rua da Bahia", "Centro", "Belo Horizonte", "MG", "30160011")]


def cents(value: Decimal) -> float:
    """The wire form of an amount: a JSON number with at most two decimals."""
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def ean13(first12: str) -> str:
    """Append the EAN-13 check digit (weights 1,3 from the left)."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return first12 + str((10 - total % 10) % 10)


def cpf(first9: str) -> str:
    """Append both CPF check digits (mod 11)."""
    digits = [int(d) for d in first9]
    for weight in (10, 11):
        total = sum(d * (weight - i) for i, d in enumerate(digits))
        rest = total * 10 % 11
        digits.append(0 if rest == 10 else rest)
    return "".join(map(str, digits))


def cnpj(first12: str) -> str:
    """Append both CNPJ check digits (numeric CNPJ)."""
    digits = [int(d) for d in first12]
    for weights in ([5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]):
        rest = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
        digits.append(0 if rest < 2 else 11 - rest)
    return "".join(map(str, digits))


def wrong_check_digit(code: str) -> str:
    """The same code with its last digit off by one (a typo the platform does not catch)."""
    return code[:-1] + str((int(code[-1]) + 1) % 10)


def access_key(*, issuer_cnpj: str, number: int, series: int, when: datetime, state_code: str = "35",
               model: str = "55") -> str:
    """A 44-digit NF-e access key with a valid check digit (cUF AAMM CNPJ mod série nNF tpEmis cNF DV)."""
    first43 = (f"{state_code}{when:%y%m}{issuer_cnpj}{model}{series:03d}{number:09d}1"
               f"{(number * 7919 + 13) % 10**8:08d}")
    return first43 + str(access_key_check_digit(first43))
