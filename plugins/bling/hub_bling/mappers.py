"""Bling's JSON <-> hub's canonical models. Bling's own field names stay in this module."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hub.models import (
    TPAG_CODES,
    Address,
    Customer,
    Payment,
    PaymentMethod,
    Price,
    Product,
    ProductFiscal,
    Ref,
    Sale,
    SaleItem,
    Seller,
    StockLevel,
    Variation,
)

from hub_bling.options import TIME_ZONE

SALE_CHANNEL = "bling"
"""The channel of a sale read from Bling: its natural key is ``bling:<numero>``."""


class FieldError(ValueError):
    """A Bling field of the wrong shape (a string where an object belongs), named for the quarantine."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _object(raw: Any, name: str, where: str | None = None) -> dict[str, Any]:
    """``raw[name]`` as an object (absent is empty); any other shape names the field."""
    value = raw.get(name) if isinstance(raw, dict) else None
    if not value:
        return {}
    if not isinstance(value, dict):
        raise FieldError(where or name, f"expected an object, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def attributes(name: str | None) -> dict[str, str]:
    """``"Cor:Azul;Tamanho:M"`` -> ``{"Cor": "Azul", "Tamanho": "M"}`` (Bling's variation name)."""
    out: dict[str, str] = {}
    for part in (name or "").split(";"):
        key, sep, value = part.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def images(raw: dict[str, Any]) -> list[str]:
    pictures = _object(_object(raw, "midia"), "imagens", "midia.imagens")
    links = [i.get("link") for kind in ("imagensURL", "externas", "internas") for i in pictures.get(kind) or []]
    found = list(dict.fromkeys(link for link in links if link))
    if not found and raw.get("imagemURL"):
        found = [raw["imagemURL"]]
    return found


def product(raw: dict[str, Any], category_paths: dict[int, list[str]]) -> Product:
    """A product from ``GET /produtos/{id}`` (the list lacks GTIN, fiscal data and variations)."""
    tax = _object(raw, "tributacao")
    category = _object(raw, "categoria").get("id")
    variations = [
        Variation(sku=str(v.get("codigo") or ""), gtin=_text(v.get("gtin")), price=v.get("preco"),
                  attributes=attributes((v.get("variacao") or {}).get("nome")), active=v.get("situacao", "A") == "A")
        for v in raw.get("variacoes") or []
    ]
    origin = tax.get("origem")
    return Product(
        sku=str(raw.get("codigo") or ""), name=str(raw.get("nome") or ""), gtin=_text(raw.get("gtin")),
        price=raw.get("preco"), active=raw.get("situacao", "A") == "A", unit=_text(raw.get("unidade")) or "UN",
        category_path=category_paths.get(int(category), []) if category else [],
        variations=variations, images=images(raw),
        fiscal=ProductFiscal(ncm=_text(tax.get("ncm")), cest=_text(tax.get("cest")),
                             origin=int(origin) if origin not in (None, "") else None),
    )


def category_paths(rows: list[dict[str, Any]]) -> dict[int, list[str]]:
    """Each category's path from the root (Bling lists parents by id only). Some accounts give a top-level
    category itself (or 0) as ``categoriaPai``; the climb stops there, at an unknown parent, and where a cycle
    closes, so no path names a category twice."""
    by_id = {int(r["id"]): r for r in rows}

    def path(cid: int) -> list[str]:
        chain: list[int] = []
        current = cid
        while current in by_id and current not in chain:
            chain.append(current)
            current = int((by_id[current].get("categoriaPai") or {}).get("id") or 0)
        return [str(by_id[c].get("descricao") or c) for c in reversed(chain)]

    return {cid: path(cid) for cid in by_id}


def customer(raw: dict[str, Any]) -> Customer:
    address = _object(_object(raw, "endereco"), "geral", "endereco.geral")
    addresses = []
    if any(address.get(k) for k in ("endereco", "municipio", "cep")):
        addresses = [Address(street=_text(address.get("endereco")), number=_text(address.get("numero")),
                             complement=_text(address.get("complemento")), district=_text(address.get("bairro")),
                             city=_text(address.get("municipio")), state=_text(address.get("uf")),  # type: ignore[arg-type]
                             zip=_text(address.get("cep")))]
    return Customer(name=str(raw.get("nome") or ""), document=_text(raw.get("numeroDocumento")),
                    state_registration=_text(raw.get("ie")), rg=_text(raw.get("rg")), email=_text(raw.get("email")),
                    phone=_text(raw.get("celular")) or _text(raw.get("telefone")), addresses=addresses,
                    active=raw.get("situacao", "A") == "A")


def contact_body(c: Customer) -> dict[str, Any]:
    """``POST/PUT /contatos``: a customer as Bling files it (``geral`` address, IE indicator)."""
    body: dict[str, Any] = {"nome": c.name, "situacao": "A", "tipo": c.person_type or "F"}
    if c.document:
        body["numeroDocumento"] = c.document
    if c.state_registration:
        body["ie"], body["indicadorIe"] = c.state_registration, 1
    else:
        body["indicadorIe"] = 9
    for key, value in (("rg", c.rg), ("email", c.email), ("celular", c.phone)):
        if value:
            body[key] = value
    if c.addresses:
        a = c.addresses[0]
        geral = {"endereco": a.street, "numero": a.number, "complemento": a.complement, "bairro": a.district,
                 "municipio": a.city, "uf": a.state, "cep": a.zip}
        body["endereco"] = {"geral": {k: v for k, v in geral.items() if v}}
    return body


def seller(raw: dict[str, Any]) -> Seller:
    contact = raw.get("contato") or {}
    return Seller(name=str(contact.get("nome") or f"Vendedor {raw.get('id')}"),
                  active=contact.get("situacao", "A") == "A")


def payment_method(raw: dict[str, Any]) -> PaymentMethod:
    kind = raw.get("tipoPagamento")
    return PaymentMethod(code=str(raw["id"]), name=str(raw.get("descricao") or raw["id"]),
                         tpag=f"{int(kind):02d}" if kind not in (None, "") else None,
                         active=int(raw.get("situacao", 1)) == 1)


def stock_levels(row: dict[str, Any], deposits: dict[int, str]) -> list[tuple[str, StockLevel]]:
    """(external id, level) per depósito of one ``/estoques/saldos`` row; the warehouse is the depósito's name."""
    produto = row.get("produto") or {}
    sku = str(produto.get("codigo") or "")
    out = []
    for dep in row.get("depositos") or []:
        dep_id = int(dep["id"])
        quantity = dep.get("saldoFisico", Decimal("0"))
        out.append((f"{produto.get('id')}@{dep_id}",
                    StockLevel(sku=sku, warehouse=deposits.get(dep_id, str(dep_id)), quantity=Decimal(str(quantity)))))
    return out


def price(row: dict[str, Any]) -> Price:
    """A product's price from a ``GET /produtos`` list row (``preco``: the price Bling sells it for)."""
    return Price.model_validate({"sku": str(row.get("codigo") or ""), "price": row.get("preco"),
                                 "price_list": "default"})


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _decimal(value: Any, where: str) -> Decimal:
    try:
        return Decimal(str(value if value not in (None, "") else 0))
    except ArithmeticError:
        raise FieldError(where, f"expected a number, got {str(value)[:40]!r}") from None


def sale_item(raw: dict[str, Any], index: int) -> SaleItem:
    """``itens[]``: ``desconto`` is a percentage off quantity x valor and Bling rounds the line to the cent; the
    canonical discount is the amount that gives the same line total."""
    quantity = _decimal(raw.get("quantidade"), f"itens[{index}].quantidade")
    unit = _decimal(raw.get("valor"), f"itens[{index}].valor")
    percent = _decimal(raw.get("desconto"), f"itens[{index}].desconto")
    gross = quantity * unit
    discount = gross - _cents(gross * (1 - percent / 100)) if percent else Decimal("0")
    sku = _text(raw.get("codigo"))
    if not sku:
        raise FieldError(f"items.{index}.sku", f"item {index + 1} ({raw.get('descricao') or ''}) has no código "
                                                "(SKU) in Bling")
    return SaleItem(sku=sku, name=_text(raw.get("descricao")), quantity=quantity, unit_price=unit,
                    discount=max(discount, Decimal("0")))


def sale_payments(parcelas: list[dict[str, Any]], methods: dict[str, dict[str, Any]]) -> list[Payment]:
    """``parcelas[]`` grouped by forma de pagamento, in order: one Payment per method, its parcelas as
    installments; ``name`` is the method's description so a sink without it can find or create it."""
    grouped: dict[str, list[Decimal]] = {}
    for index, parcela in enumerate(parcelas):
        method = str((_object(parcela, "formaPagamento", f"parcelas[{index}].formaPagamento")).get("id") or "")
        if not method or method == "0":
            raise FieldError(f"payments.{index}.method", f"parcela {index + 1} has no forma de pagamento")
        grouped.setdefault(method, []).append(_decimal(parcela.get("valor"), f"parcelas[{index}].valor"))
    out = []
    for method, amounts in grouped.items():
        known = methods.get(method) or {}
        kind = known.get("tipoPagamento")
        tpag = f"{int(kind):02d}" if kind not in (None, "") else None
        out.append(Payment(method=method, name=_text(known.get("descricao")), amount=sum(amounts, Decimal("0")),
                           installments=len(amounts), tpag=tpag if tpag in TPAG_CODES else None))
    return out


def issued_at(day: Any) -> datetime:
    """An order's ``data`` (a date, Bling's local calendar) as midnight in São Paulo: pushing the sale back gives
    the same date."""
    try:
        parsed = date.fromisoformat(str(day)[:10])
    except ValueError:
        raise FieldError("issued_at", f"data {day!r} is not a date (YYYY-MM-DD)") from None
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=ZoneInfo(TIME_ZONE))


def sale(raw: dict[str, Any], status: str, methods: dict[str, dict[str, Any]], final_consumer: int | None) -> Sale:
    """An order from ``GET /pedidos/vendas/{id}`` (the list has no items or parcelas). ``status`` is the name of
    its situação (the id is per account); the Consumidor Final contact means no customer."""
    contact = _object(raw, "contato")
    buyer = None
    if contact.get("id") and int(contact["id"]) != final_consumer:
        buyer = Customer(name=str(contact.get("nome") or f"Contato {contact['id']}"),
                         document=_text(contact.get("numeroDocumento")))
    discount = _object(raw, "desconto")
    off = _decimal(discount.get("valor"), "desconto.valor")
    if discount.get("unidade") == "PERCENTUAL":
        off = _cents(_decimal(raw.get("totalProdutos"), "totalProdutos") * off / 100)
    seller = _object(raw, "vendedor").get("id")
    loja = _object(raw, "loja").get("id")
    return Sale(number=str(raw.get("numero") or ""), channel=SALE_CHANNEL, store=str(loja) if loja else None,
                issued_at=issued_at(raw.get("data")), customer=buyer,
                seller=Ref(external_id=str(seller)) if seller else None,
                items=[sale_item(item, i) for i, item in enumerate(raw.get("itens") or [])],
                discount=off, freight=_decimal(_object(raw, "transporte").get("frete"), "transporte.frete"),
                payments=sale_payments(raw.get("parcelas") or [], methods), status=status,
                notes=_text(raw.get("observacoes")))
