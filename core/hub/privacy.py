"""Personal data in what an operator reads (LGPD): CPF and CNPJ are masked in logs, quarantine reasons, errors and
command output. The full value stays only in the record itself (the canonical payload), where a sync needs it.

Only numbers that are valid documents (check digits, via python-stdnum) are masked, punctuated or bare, so order
numbers, GTINs and prices stay readable.
"""

from __future__ import annotations

import re
from typing import Any, overload

from stdnum.br import cnpj, cpf

__all__ = ["mask_document", "mask_documents", "mask_value"]

_CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z])("
    r"[0-9A-Z]{2}\.?[0-9A-Z]{3}\.?[0-9A-Z]{3}/?[0-9A-Z]{4}-?[0-9]{2}"  # CNPJ, numeric or alphanumeric
    r"|[0-9]{3}\.?[0-9]{3}\.?[0-9]{3}-?[0-9]{2}"  # CPF
    r")(?![0-9A-Za-z])"
)


def mask_document(value: str) -> str:
    """``***.456.789-**`` for a CPF, ``**.345.678/0001-**`` for a CNPJ; anything else is returned unchanged."""
    bare = "".join(ch for ch in value.upper() if ch.isalnum())
    if len(bare) == 11 and bare.isdigit() and cpf.is_valid(bare):
        return f"***.{bare[3:6]}.{bare[6:9]}-**"
    if len(bare) == 14 and cnpj.is_valid(bare):
        return f"**.{bare[2:5]}.{bare[5:8]}/{bare[8:12]}-**"
    return value


@overload
def mask_documents(text: str) -> str: ...
@overload
def mask_documents(text: None) -> None: ...
def mask_documents(text: str | None) -> str | None:
    """Mask every valid CPF/CNPJ inside free text (a log line, an error, a label)."""
    if not text:
        return text
    return _CANDIDATE.sub(lambda m: mask_document(m.group(1)), text)


def mask_value(value: Any) -> Any:
    """:func:`mask_documents` over strings inside nested lists and dicts (e.g. a JSON error body)."""
    if isinstance(value, str):
        return mask_documents(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    return value
