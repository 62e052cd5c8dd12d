"""Valid Brazilian identifiers and the fixed catalogue a new sandbox company starts with."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from hub.models import access_key_check_digit
from hub.sandbox.documents import cnpj, cpf, ean13, wrong_check_digit

__all__ = ["PAYMENT_METHODS", "STORES", "STREETS", "UNITS", "access_key", "cents", "cnpj", "cpf", "ean13",
           "wrong_check_digit"]

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


def access_key(*, issuer_cnpj: str, number: int, series: int, when: datetime, state_code: str = "35",
               model: str = "55") -> str:
    """A 44-digit NF-e access key with a valid check digit (cUF AAMM CNPJ mod série nNF tpEmis cNF DV)."""
    first43 = (f"{state_code}{when:%y%m}{issuer_cnpj}{model}{series:03d}{number:09d}1"
               f"{(number * 7919 + 13) % 10**8:08d}")
    return first43 + str(access_key_check_digit(first43))
