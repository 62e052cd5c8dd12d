"""Build XML documents (an NF-e's ``nfeProc``) from nested data with :mod:`xml.etree.ElementTree`, which escapes
text and attributes: an ``&`` or ``<`` in a customer's name stays well-formed.

``build("nfeProc", {"@xmlns": NS, "@versao": "4.00", "NFe": {...}, "det": [{...}, {...}]})``: keys starting with
``@`` are attributes, lists repeat the element, ``None`` leaves it out, anything else is its text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

__all__ = ["build", "element"]

Node = Mapping[str, Any] | str | int | float | None


def element(tag: str, content: Node) -> ET.Element:
    node = ET.Element(tag)
    _fill(node, content)
    return node


def _fill(node: ET.Element, content: Node) -> None:
    if isinstance(content, Mapping):
        for key, value in content.items():
            if key.startswith("@"):
                if value is not None:
                    node.set(key[1:], str(value))
                continue
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    _fill(ET.SubElement(node, key), item)
    elif content is not None:
        node.text = str(content)


def build(tag: str, content: Node, *, declaration: bool = True) -> str:
    """The document as text (UTF-8 declared), with every text and attribute escaped."""
    body = ET.tostring(element(tag, content), encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>' + body) if declaration else body
