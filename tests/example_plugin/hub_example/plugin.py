"""The lojinha connector: platform registration and hook implementations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hub import ConnectorContext, Credentials, Incoming, Page, Platform, PushResult, Rejected, RouteView, hookimpl
from hub.errors import AuthRevoked, Retriable
from hub.models import (
    Action,
    Address,
    Canonical,
    Category,
    Customer,
    Payment,
    PaymentMethod,
    Product,
    ProductFiscal,
    Sale,
    SaleItem,
    StatusTransition,
)
from pydantic import BaseModel, ValidationError

from hub_example.client import pages, raise_for_error, request
from hub_example.sandbox import LojinhaSandbox

PATHS = {"products": "/products", "categories": "/categories", "customers": "/customers",
         "payment_methods": "/payment-methods", "sales": "/orders"}
SEARCH = {"products": ("sku", "sku"), "customers": ("documento", "document"), "sales": ("numero", "number")}


class LojinhaOptions(BaseModel):
    base_url: str
    timeout_seconds: float = 10
    page_size: int = 100


@hookimpl
def register_platforms(register: Any) -> None:
    register(Platform(
        name="lojinha", title="Lojinha (example platform)",
        pulls=frozenset(PATHS), pushes=frozenset({"products", "categories", "customers", "sales"}),
        options=LojinhaOptions, credentials=("client_id", "client_secret"),
        actions=frozenset({"post-stock", "post-accounts", "reverse-stock", "reverse-accounts"}),
        sandbox=LojinhaSandbox, demo=str(Path(__file__).resolve().parents[1] / "demo.yaml"),
    ))


@hookimpl
def authenticate(ctx: ConnectorContext) -> Credentials:
    form = {"grant_type": "client_credentials", "client_id": ctx.credentials.get("client_id", ""),
            "client_secret": ctx.credentials.get("client_secret", "")}
    try:
        response = ctx.http.post("/oauth/token", data=form)
    except httpx.TransportError as exc:
        raise Retriable(f"lojinha POST /oauth/token (tenant {ctx.tenant}, connection {ctx.connection}): "
                        f"{type(exc).__name__}", fix="Check that the connection's base_url is reachable.") from None
    if response.status_code == 401:
        raise AuthRevoked(f"lojinha refused the client credentials of {ctx.tenant}/{ctx.connection}",
                          fix="Check client_id and client_secret, then re-apply the routes.")
    raise_for_error(ctx, response, "POST /oauth/token")
    body = response.json()
    # The core stores naive UTC datetimes; say so explicitly rather than rely on its conversion.
    expires = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=int(body["expires_in"]))
    return Credentials(values={**ctx.credentials, "access_token": body["access_token"]}, expires_at=expires)


def _to_canonical(stream: str, raw: dict[str, Any]) -> Canonical:
    if stream == "products":
        return Product(sku=raw["sku"], name=raw["nome"], price=raw.get("preco"), gtin=raw.get("ean") or None,
                       active=raw.get("ativo", True),
                       category_path=[p for p in (raw.get("categoria") or "").split(" > ") if p],
                       fiscal=ProductFiscal(ncm=raw.get("ncm"), origin=raw.get("origem")))
    if stream == "categories":
        return Category(path=raw["caminho"].split(" > "))
    if stream == "customers":
        return _customer(raw)
    if stream == "payment_methods":
        return PaymentMethod(code=raw["codigo"], name=raw["nome"], tpag=raw.get("tpag"))
    if stream == "sales":
        return Sale(number=raw["numero"], channel="lojinha", store=raw.get("loja"), issued_at=raw["data"],
                    customer=_customer(raw["cliente"]) if raw.get("cliente") else None,
                    items=[SaleItem.model_validate({"sku": i["sku"], "quantity": str(i["quantidade"]),
                                                    "unit_price": str(i["preco"])}) for i in raw["itens"]],
                    payments=[Payment.model_validate({"method": p["forma"], "amount": str(p["valor"]),
                                                      "installments": p.get("parcelas", 1)})
                              for p in raw.get("pagamentos", [])],
                    status=raw["situacao"], replaces=raw.get("substitui"))
    raise ValueError(f"lojinha has no stream {stream}")


def _customer(raw: dict[str, Any]) -> Customer:
    address = raw.get("endereco") or {}
    return Customer(name=raw["nome"], document=raw.get("documento"), email=raw.get("email"),
                    addresses=[Address(street=address.get("rua"), number=address.get("numero"),
                                       district=address.get("bairro"), city=address.get("cidade"),
                                       state=address.get("uf"), zip=address.get("cep"))] if address else [])


def _pull(ctx: ConnectorContext, stream: str, since: str | None) -> Iterator[Page]:
    cursor = since
    params: dict[str, Any] = {"per_page": int(ctx.options.get("page_size", 100))}
    if since:
        params["updated_since"] = since
    for paged in pages(ctx, PATHS[stream], stream, params):
        records: list[Incoming | Rejected] = []
        for raw in paged.records:
            try:
                records.append(Incoming(external_id=str(raw["id"]), data=_to_canonical(stream, raw),
                                        updated_at=raw.get("atualizado_em")))
            except (ValidationError, ValueError, KeyError) as exc:
                field = _failed_field(exc)
                records.append(Rejected(external_id=str(raw["id"]), reason=f"lojinha {stream} {raw['id']}: {exc}",
                                        field=field, raw=raw,
                                        fix=f"Correct {field or 'the record'} of {stream} {raw['id']} on lojinha; "
                                            "the next sync picks it up."))
            stamp = raw.get("atualizado_em")
            if stamp and (cursor is None or stamp > cursor):
                cursor = stamp
        yield Page(records=records, cursor=cursor)


def _failed_field(exc: Exception) -> str | None:
    """The dotted canonical field a mapping error is about (None for whole-record checks such as totals)."""
    if isinstance(exc, KeyError):
        return str(exc.args[0])
    if isinstance(exc, ValidationError) and exc.errors():
        loc = exc.errors()[0]["loc"]
        return ".".join(str(part) for part in loc) or None
    return None


@hookimpl
def pull_catalog(ctx: ConnectorContext, stream: str, since: str | None) -> Iterator[Page]:
    return _pull(ctx, stream, since)


@hookimpl
def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    return _pull(ctx, "sales", since)


def _payload(stream: str, record: Canonical) -> dict[str, Any]:
    if isinstance(record, Product):
        return {"sku": record.sku, "nome": record.name, "preco": str(record.price) if record.price else None,
                "ean": record.gtin, "ativo": record.active, "categoria": " > ".join(record.category_path) or None,
                "ncm": record.fiscal.ncm, "origem": record.fiscal.origin}
    if isinstance(record, Category):
        return {"nome": record.name, "caminho": " > ".join(record.path)}
    if isinstance(record, Customer):
        return _customer_payload(record)
    if isinstance(record, Sale):
        return {"numero": record.number, "loja": record.store, "data": record.issued_at.isoformat(),
                "cliente": _customer_payload(record.customer) if record.customer else None,
                "itens": [{"sku": i.sku, "quantidade": str(i.quantity), "preco": str(i.unit_price)}
                          for i in record.items],
                "pagamentos": [{"forma": p.method, "valor": str(p.amount), "parcelas": p.installments}
                               for p in record.payments],
                "situacao": record.status, "substitui": record.replaces}
    raise ValueError(f"lojinha cannot receive {stream}")


def _customer_payload(c: Customer) -> dict[str, Any]:
    a = c.addresses[0] if c.addresses else None
    return {"nome": c.name, "documento": c.document, "email": c.email,
            "endereco": {"rua": a.street, "numero": a.number, "bairro": a.district, "cidade": a.city,
                         "uf": a.state, "cep": a.zip} if a else None}


def _upsert(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None, key: str,
            extra: dict[str, Any] | None = None) -> PushResult:
    """Update when bound; otherwise search by natural key, then create with the idempotency key."""
    path, body = PATHS[stream], {**_payload(stream, record), **(extra or {})}
    if external_id is None and stream in SEARCH:
        remote_field, canonical_field = SEARCH[stream]
        value = getattr(record, canonical_field)
        if value:
            found = request(ctx, "GET", path, params={remote_field: value}).json()["data"]
            external_id = str(found[0]["id"]) if found else None
    if external_id is None:
        response = request(ctx, "POST", path, json=body, headers={"Idempotency-Key": key})
        if response.status_code != 409:
            created = str(response.json()["id"])
            ctx.record_remote_id(created)
            return PushResult(external_id=created)
        external_id = str(response.json()["error"]["existing_id"])
    request(ctx, "PUT", f"{path}/{external_id}", json=body)
    return PushResult(external_id=external_id)


@hookimpl
def push_catalog(ctx: ConnectorContext, stream: str, record: Canonical, external_id: str | None,
                 idempotency_key: str) -> PushResult:
    return _upsert(ctx, stream, record, external_id, idempotency_key)


def _customer_id(ctx: ConnectorContext, customer: Customer, key: str) -> str:
    """The lojinha id of the customer with this CPF/CNPJ, created once if missing (never updated from a sale).

    Deliberately no ``ctx.record_remote_id`` here: that id belongs to the sale being pushed.
    """
    found = request(ctx, "GET", PATHS["customers"], params={"documento": customer.document}).json()["data"]
    if found:
        return str(found[0]["id"])
    response = request(ctx, "POST", PATHS["customers"], json=_customer_payload(customer),
                       headers={"Idempotency-Key": f"{key}:customer"})
    return str(response.json()["id"])


@hookimpl
def push_sale(ctx: ConnectorContext, record: Sale, external_id: str | None, idempotency_key: str) -> PushResult:
    """The customer is matched by document on lojinha, so repeat buyers are one customer there."""
    extra: dict[str, Any] | None = None
    if record.customer is not None and record.customer.document:
        extra = {"cliente": None, "cliente_id": _customer_id(ctx, record.customer, idempotency_key)}
    return _upsert(ctx, "sales", record, external_id, idempotency_key, extra)


@hookimpl
def perform_action(ctx: ConnectorContext, action: Action, external_id: str, idempotency_key: str) -> PushResult:
    request(ctx, "POST", f"/orders/{external_id}/actions/{action.name}", headers={"Idempotency-Key": idempotency_key})
    return PushResult(external_id=external_id)


@hookimpl
def on_status_transition(transition: StatusTransition, route: RouteView, actions: list[Action]) -> list[Action] | None:
    """The core already runs ``actions``, the route's matching rules (lojinha declares them in its Platform); a
    plugin answers only with actions of its own beyond the route's, and lojinha has none."""
    return None
