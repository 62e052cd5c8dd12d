"""Check digits for the synthetic records sandboxes seed, from python-stdnum: CPF, CNPJ and EAN-13."""

from __future__ import annotations

from stdnum import ean
from stdnum.br import cnpj as br_cnpj
from stdnum.br import cpf as br_cpf

__all__ = ["cnpj", "cpf", "ean13", "wrong_check_digit"]


def cpf(first9: str) -> str:
    """``first9`` with both CPF check digits (stdnum validates CPFs but computes their digits only privately, so
    the one valid pair of the hundred is taken)."""
    return next(f"{first9}{d:02d}" for d in range(100) if br_cpf.is_valid(f"{first9}{d:02d}"))


def cnpj(first12: str) -> str:
    """``first12`` with both CNPJ check digits."""
    return first12 + br_cnpj.calc_check_digits(first12)


def ean13(first12: str) -> str:
    """``first12`` with the EAN-13 check digit."""
    return first12 + ean.calc_check_digit(first12)


def wrong_check_digit(code: str) -> str:
    """The same code with its last (check) digit off by one: a typo the platform does not catch."""
    return code[:-1] + str((int(code[-1]) + 1) % 10)
