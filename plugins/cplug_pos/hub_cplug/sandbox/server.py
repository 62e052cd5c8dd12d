"""An in-memory emulator of CPlug API v3, served over real HTTP by :func:`hub.sandbox.serve`.

It follows the public spec where there is one (password grant, ``CPlug-Company-Id``, ``Idempotency-Key``, the list
envelope, ``updated_from``, the ``{code, message, meta}`` errors) and the README's assumptions elsewhere (sales,
sellers, stores, units, fiscal fields, the rate limit). The ASGI app runs in uvicorn's thread while tests call the
control methods from theirs, so every touch of the state happens under one ``threading.Lock`` (never held across an
``await``).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hub.sandbox import SandboxBase, SandboxSettings
from hub.sandbox.idempotency import IdempotencyStore, Stored
from hub.sandbox.oauth import OAuthError, PasswordGrant, TokenStore, WallClock, check_client
from hub.sandbox.ratelimit import Limits, Rule, TokenBucket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub_cplug.sandbox import synthetic as syn

BRT = timezone(timedelta(hours=-3))
STREAMS: dict[str, str] = {
    "sales": "sales", "customers": "customers", "payment_methods": "payments", "sellers": "sellers",
    "categories": "categories", "products": "products", "stores": "stores", "units": "units",
}
"""hub stream name -> CPlug resource (URL path under /api/v3 and key under ``data``)."""
SINGULAR = {"sales": "sale", "customers": "customer", "payments": "payment", "sellers": "seller",
            "categories": "category", "products": "product", "stores": "store", "units": "unit"}
WRITABLE = {"products", "categories", "sellers", "customers"}
DELETABLE = {"products", "categories"}
MAX_PER_PAGE, DEFAULT_PER_PAGE = 100, 15
UPDATED_FROM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
FILTERS: dict[str, dict[str, str]] = {
    "products": {"sku": "sku", "barcode": "barcodes", "name": "~name", "products_id": "id*",
                 "categories_id": "category_id*"},
    "categories": {"name": "~name", "code": "code", "status": "status", "categories_id": "id*",
                   "parent_id": "parent_id"},
    "customers": {"customers_id": "id*", "name": "~name", "document": "documents"},
    "payments": {"payments_id": "id*", "name": "~name", "fiscal_code": "fiscal_code"},
    "sellers": {"sellers_id": "id*", "name": "~name", "document": "document"},
    "sales": {"sales_id": "id*", "status": "status", "store_id": "store_id", "seller_id": "seller_id",
              "customer_id": "customer_id", "source_type": "source_type", "number": "number"},
    "stores": {}, "units": {"abbreviation": "abbreviation"},
}
"""Query parameter -> field: ``~`` contains (case-insensitive), ``*`` a comma-separated list of values."""
FUTURE_STAMP = "2099-01-01T00:00:00-03:00"
"""The ``updated_at`` of :meth:`CPlugSandbox.seed_future`'s record: a POS terminal whose clock (or a typed date) is
years ahead."""
Handler = Callable[[Request], Awaitable[Response]]
Problems = list[tuple[str, str, str]]


def _error(status: int, code: str, message: str, meta: list[Any] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "meta": meta or []}, status_code=status, headers=headers)


def _invalid(problems: Problems) -> JSONResponse:
    """CPlug's 422: one ``meta`` entry per field, each with its validations."""
    meta: dict[str, list[dict[str, Any]]] = {}
    for field, kind, message in problems:
        meta.setdefault(field, []).append({"type": kind, "value": [], "message": message})
    return _error(422, "unprocessable_entity", "The given data was invalid.",
                  [{"field": f, "validations": v} for f, v in meta.items()])


def _copy(record: Any) -> Any:
    """A deep copy of JSON-shaped data, so callers never share the sandbox's dicts."""
    if isinstance(record, dict):
        return {k: _copy(v) for k, v in record.items()}
    if isinstance(record, list):
        return [_copy(v) for v in record]
    return record


def _amount(value: Any) -> Decimal:
    if isinstance(value, dict):
        value = value.get("amount")
    return Decimal(str(value if value is not None else 0))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


class CPlugSettings(SandboxSettings):
    rate_per_second: float | None = 5
    """The README's assumption: 5 requests a second per company, in a bucket holding one second's worth."""


class CPlugSandbox(SandboxBase):
    """One CPlug company: OAuth password grant, paged lists, idempotent writes, a rate limit and faults."""

    Settings = CPlugSettings
    streams = tuple(STREAMS)
    _company_ids = itertools.count(101)

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.company_id = next(self._company_ids)
        self.company_cnpj = syn.cnpj(f"{11222333 + self.company_id:08d}0001")
        self.client_id, self.client_secret = "cplug-client", "cplug-secret"
        self.username, self.password = "api@lojademo.com.br", "senha-da-api"
        self.grid_module = True
        """Seed 002: grids need CPlug's "Grade de Produtos" module; False makes grid products a 422."""
        self._data: dict[str, dict[int, dict[str, Any]]] = {r: {} for r in STREAMS.values()}
        self._ids = {r: itertools.count(base) for r, base in zip(
            STREAMS.values(), (90001, 30001, 101, 201, 1001, 50001, 1, 1), strict=True)}
        self._idempotent: IdempotencyStore[Stored] = IdempotencyStore()
        self.tokens = TokenStore(WallClock(), access_ttl=self.settings.token_ttl_seconds)
        self._login = PasswordGrant(self.tokens, self.username, self.password)
        self._limits = Limits(self._rules)
        self._last_page: dict[str, bytes] = {}
        self._serial = 0
        self._sale_number = 1000
        self._invoice_number = 500
        with self.lock:
            for abbreviation, name in syn.UNITS:
                self._insert("units", {"abbreviation": abbreviation, "name": name})
            for name in syn.STORES:
                self._insert("stores", {"name": name, "status": "available"})
        self.app = Starlette(routes=[
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/api/v3/sales/{id}/cancel", self._api(self._cancel), methods=["PUT"]),
            Route("/api/v3/customers/{id}/documents", self._api(self._documents), methods=["GET"]),
            Route("/api/v3/{resource}", self._api(self._collection), methods=["GET", "POST"]),
            Route("/api/v3/{resource}/{id}", self._api(self._item), methods=["GET", "PUT", "DELETE"]),
        ])

    # --- the hub.sandbox.Sandbox protocol ----------------------------------------------------------------------

    @property
    def rate_per_second(self) -> float | None:
        return self.settings.rate_per_second

    def _rules(self, key: Hashable) -> Sequence[Rule]:
        return [TokenBucket(self.settings.rate_per_second)]

    def limits_changed(self) -> None:
        self._limits.reset()

    def connection(self, base_url: str) -> dict[str, Any]:
        rate = self.rate_per_second if self.rate_per_second is not None else 1000
        return {"options": {"base_url": base_url, "company_id": self.company_id, "rate_per_second": rate},
                "credentials": {"client_id": self.client_id, "client_secret": self.client_secret,
                                "username": self.username, "password": self.password}}

    def seed(self, stream: str, count: int) -> list[str]:
        """Synthetic records; payment methods stop at CPlug's named ones (ids 101-109, so a demo's DE-PARA is
        stable). Seeding sales also creates the payment methods and two sellers when there are none."""
        resource = self._resource(stream)
        with self.lock:
            if resource == "payments":
                used = {m["name"] for m in self._data["payments"].values()}
                count = min(count, sum(1 for name, _ in syn.PAYMENT_METHODS if name not in used))
            return [str(self._insert(resource, self._synthetic(resource))) for _ in range(count)]

    def seed_invalid(self, stream: str) -> str:
        """One record CPlug accepts but hub must refuse: a CPF/EAN with a wrong check digit, a sale whose payments
        do not add up."""
        resource = self._resource(stream)
        with self.lock:
            record = self._synthetic(resource)
            if resource == "customers":
                for doc in record["documents"]:
                    if doc["type"] in ("cpf", "cnpj"):
                        doc["identify"] = syn.wrong_check_digit(doc["identify"])
            elif resource == "sellers":
                record["document"] = syn.wrong_check_digit(record["document"])
            elif resource == "products":
                record["barcodes"] = [syn.wrong_check_digit(record["barcodes"][0])]
            elif resource == "sales":
                record["payments"] = [{**record["payments"][0], "value": {"amount": 0.01, "currency": "BRL"}}]
            else:
                raise ValueError(f"seed_invalid does not support {stream!r} (customers, sellers, products, sales)")
            return str(self._insert(resource, record))

    def seed_future(self, stream: str) -> str:
        """One synthetic record whose ``updated_at`` is in 2099 (:data:`FUTURE_STAMP`); return its id."""
        resource = self._resource(stream)
        with self.lock:
            record = self._synthetic(resource)
            record["updated_at"] = FUTURE_STAMP
            return str(self._insert(resource, record))

    def touch(self, stream: str, external_id: str) -> None:
        """Edit a record as a user would; a sale is canceled (the only change a closed sale admits)."""
        resource = self._resource(stream)
        with self.lock:
            record = self._get(resource, external_id)
            self._serial += 1
            if resource == "sales":
                record["status"] = "canceled"
            elif resource == "products":
                record["name"] = f"{record['name'].split(' (rev')[0]} (rev {self._serial})"
                record["unitary_value"]["amount"] = syn.cents(_amount(record["unitary_value"]) + Decimal("0.01"))
            else:
                for name in ("name", "company_name"):
                    if record.get(name):
                        record[name] = f"{record[name].split(' (rev')[0]} (rev {self._serial})"
            record["updated_at"] = self._now()

    def age(self, stream: str, seconds: float) -> None:
        """Move every ``updated_at`` of ``stream`` ``seconds`` into the past (the conformance kit's cursor check)."""
        resource = self._resource(stream)
        with self.lock:
            for record in self._data[resource].values():
                moment = datetime.fromisoformat(record["updated_at"]) - timedelta(seconds=seconds)
                record["updated_at"] = moment.isoformat()

    def records(self, stream: str, *, deleted: bool = False) -> list[dict[str, Any]]:
        """Every record in ``stream`` as the API shows it (soft-deleted ones only with ``deleted=True``)."""
        resource = self._resource(stream)
        with self.lock:
            return [_copy(r) for _, r in sorted(self._data[resource].items())
                    if deleted or not r.get("deleted_at")]

    # --- extras for flows and tests ------------------------------------------------------------------------------

    def create(self, stream: str, data: dict[str, Any]) -> str:
        """Insert ``data`` as is (no validation), as if a user typed it into CPlug's screens. With an ``id`` it
        replaces that record; ``updated_at`` defaults to now (give one to place an edit in the past)."""
        resource = self._resource(stream)
        with self.lock:
            return str(self._insert(resource, _copy(data)))

    def sale(self, *, items: list[dict[str, Any]], payments: list[dict[str, Any]] | None = None,
             customer_id: str | int | None = None, store_id: str | int | None = None,
             seller_id: str | int | None = None, status: str = "closed", number: str | None = None,
             source_type: str = "pdv") -> str:
        """Ring up one specific sale. ``items``: ``{"sku", "amount"=1, "unitary_value"?, "discount"?, "name"?}``
        (price and name default to the product's); ``payments``: ``{"payment_method_id", "value",
        "installments"=1}``, by default the total in cash."""
        with self.lock:
            record = self._sale_record(items, payments, customer_id=customer_id, store_id=store_id,
                                       seller_id=seller_id, status=status, number=number, source_type=source_type)
            return str(self._insert("sales", record))

    def cancel_sale(self, sale_id: str | int) -> None:
        """Cancel a closed sale, as the POS does (``updated_at`` moves, so incremental reads see it)."""
        with self.lock:
            record = self._get("sales", sale_id)
            record["status"], record["updated_at"] = "canceled", self._now()

    def exchange(self, original_sale_id: str | int, returned_items: list[dict[str, Any]],
                 new_items: list[dict[str, Any]]) -> str:
        """A POS exchange (troca): the return note (devolução) of the original sale, and a new sale linked to it.

        The returned value pays the new sale as "Crédito em Loja"; a difference is paid in cash, a surplus stays as
        the customer's credit. The PDV refuses the exchange unless the customer has a CPF and a complete address."""
        with self.lock:
            original = self._get("sales", original_sale_id)
            if original["status"] != "closed":
                raise ValueError(f"sale {original_sale_id} is {original['status']}; only closed sales are exchanged")
            customer = self._data["customers"].get(int(original["customer_id"] or 0))
            if customer is None or not self._invoiceable(customer):
                raise ValueError(f"sale {original_sale_id}: the exchange needs a customer with CPF and a complete "
                                 "address (the return note cannot be issued)")
            if not new_items:
                raise ValueError("an exchange needs new items; a plain return is a cancellation (cancel_sale)")
            sold = {i["sku"]: i for i in original["items"]}
            returned = Decimal("0")
            for item in returned_items:
                line = sold.get(item["sku"])
                qty = Decimal(str(item.get("amount", 1)))
                if line is None or qty > Decimal(str(line["amount"])):
                    raise ValueError(f"sale {original_sale_id} did not sell {qty} x {item['sku']}")
                returned += qty * _amount(line["unitary_value"])
            record = self._sale_record(new_items, [], customer_id=original["customer_id"],
                                       store_id=original["store_id"], seller_id=original["seller_id"],
                                       status="closed", number=None, source_type="pdv")
            total = _amount(record["total"])
            credit = min(returned, total)
            methods = {m["fiscal_code"]: m["id"] for m in self._data["payments"].values()}
            pays = []
            if credit > 0:
                pays.append(self._payment(methods["05"], credit))
            if total > credit:
                pays.append(self._payment(methods["01"], total - credit))
            self._invoice_number += 1
            record.update(payments=pays, exchange_of_sale_id=original["id"], return_invoice={
                "number": str(self._invoice_number), "series": "1",
                "access_key": syn.access_key(issuer_cnpj=self.company_cnpj, number=self._invoice_number, series=1,
                                             when=datetime.now(BRT))})
            return str(self._insert("sales", record))

    def summary(self) -> dict[str, int]:
        """What the demo prints before and after: products, categories, customers, closed and cancelled sales."""
        with self.lock:
            sales = [r for r in self._data["sales"].values() if not r.get("deleted_at")]
            live = {name: [r for r in self._data[name].values() if not r.get("deleted_at")]
                    for name in ("products", "categories", "customers")}
            return {"products": len(live["products"]), "categories": len(live["categories"]),
                    "customers": len(live["customers"]),
                    "closed sales": sum(1 for r in sales if r["status"] == "closed"),
                    "cancelled sales": sum(1 for r in sales if r["status"] == "canceled")}

    def demo_cancel(self) -> str:
        """A cashier cancels the first closed sale that was not exchanged; returns its number."""
        exchanged = {r.get("exchange_of_sale_id") for r in self.records("sales")}
        sale = next(r for r in self.records("sales") if r["status"] == "closed" and r["id"] not in exchanged
                    and not r.get("exchange_of_sale_id"))
        self.cancel_sale(sale["id"])
        return str(sale["number"])

    def demo_exchange(self) -> str:
        """A customer swaps the first item of a closed sale for another product; returns what happened."""
        products = self.records("products")
        for sale in self.records("sales"):
            if sale["status"] != "closed" or sale.get("exchange_of_sale_id") or not sale.get("customer_id"):
                continue
            customer = next((c for c in self.records("customers") if c["id"] == sale["customer_id"]), None)
            if customer is None or not self._invoiceable(customer):
                continue
            first = sale["items"][0]
            other = next((p for p in products if p.get("sku") and p["sku"] != first["sku"]), None)
            if other is None:
                continue
            new_id = self.exchange(sale["id"], [{"sku": first["sku"], "amount": 1}], [{"sku": other["sku"]}])
            new = next(r for r in self.records("sales") if str(r["id"]) == new_id)
            return f"sale {sale['number']} exchanged ({first['sku']} -> {other['sku']}): new sale {new['number']}"
        raise ValueError("no closed sale with an identified customer to exchange")

    def expire_tokens(self) -> None:
        """Every access token expires now (refresh tokens still work), as after the TTL."""
        with self.lock:
            self.tokens.drop_access()

    def revoke_refresh_tokens(self) -> None:
        """Refresh tokens stop working: only the password grant gets a new token."""
        with self.lock:
            self.tokens.drop_refresh()

    # --- state helpers (call with the lock held) ---------------------------------------------------------------

    @staticmethod
    def _resource(stream: str) -> str:
        if stream not in STREAMS:
            raise ValueError(f"cplug sandbox has no stream {stream!r} (streams: {', '.join(STREAMS)})")
        return STREAMS[stream]

    def _get(self, resource: str, record_id: str | int) -> dict[str, Any]:
        try:
            return self._data[resource][int(record_id)]
        except (KeyError, ValueError):
            raise KeyError(f"cplug sandbox has no {SINGULAR[resource]} {record_id}") from None

    @staticmethod
    def _now() -> str:
        return datetime.now(BRT).replace(microsecond=0).isoformat()

    def _insert(self, resource: str, record: dict[str, Any]) -> int:
        record_id = int(record.get("id") or next(self._ids[resource]))
        now = self._now()
        record["id"] = record_id
        record.setdefault("created_at", now)
        record.setdefault("updated_at", now)
        if resource in ("products", "categories", "customers", "sellers"):
            record.setdefault("deleted_at", None)
        self._data[resource][record_id] = record
        return record_id

    @staticmethod
    def _invoiceable(customer: dict[str, Any]) -> bool:
        has_cpf = any(d.get("type") == "cpf" for d in customer.get("documents") or [])
        address: dict[str, Any] = next(iter(customer.get("addresses") or []), {})
        needed = ("street", "number", "neighborhood", "city", "state", "zip_code")
        return has_cpf and all(address.get(k) for k in needed)

    def _live(self, resource: str) -> list[dict[str, Any]]:
        return [r for _, r in sorted(self._data[resource].items()) if not r.get("deleted_at")]

    def _ensure(self, resource: str, count: int) -> None:
        while len(self._live(resource)) < count:
            self._insert(resource, self._synthetic(resource))

    def _synthetic(self, resource: str) -> dict[str, Any]:
        self._serial += 1
        n = self._serial
        if resource == "products":
            return self._synthetic_product(n)
        if resource == "categories":
            roots = [c for c in self._live("categories") if c.get("parent_id") is None]
            parent = roots[0]["id"] if roots and n % 3 == 0 else None
            return {"name": f"Categoria {n}", "code": f"C{n}", "parent_id": parent, "status": "available",
                    "order": n, "icon": None}
        if resource == "customers":
            return self._synthetic_customer(n)
        if resource == "payments":
            used = {m["name"] for m in self._data["payments"].values()}
            name, code = next(((nm, c) for nm, c in syn.PAYMENT_METHODS if nm not in used),
                              (f"Outra forma {n}", "99"))
            return {"name": name, "fiscal_code": code, "is_default": name == "Dinheiro", "status": "available"}
        if resource == "sellers":
            return {"name": f"Vendedor {n}", "document": syn.cpf(f"{(987654 + n * 104729) % 10**9:09d}"),
                    "email": f"vendedor{n}@lojademo.com.br", "status": "available"}
        if resource == "stores":
            return {"name": f"Loja {n}", "status": "available"}
        if resource == "units":
            return {"abbreviation": f"U{n}", "name": f"Unidade {n}"}
        return self._synthetic_sale(n)

    def _synthetic_product(self, n: int) -> dict[str, Any]:
        categories = self._live("categories")
        if not categories:
            self._insert("categories", {"name": "Geral", "code": "GERAL", "parent_id": None,
                                        "status": "available", "order": 0, "icon": None})
            categories = self._live("categories")
        unit = next(u for u in self._live("units") if u["abbreviation"] == "UN")
        sku = f"CP-{n:05d}"
        grid = n % 5 == 0
        return {
            "name": f"Produto PDV {n}", "sku": sku, "type": "simple",
            "unitary_value": {"amount": syn.cents(Decimal(9 + n % 90) + Decimal("0.90")), "currency": "BRL"},
            "category_id": categories[n % len(categories)]["id"], "unit_id": unit["id"],
            "barcodes": [syn.ean13(f"789{n:09d}")], "status": "available",
            "option_type": {"type": "grid" if grid else "simple"},
            "variations": [{"id": n * 10 + i, "sku": f"{sku}-{color[:3].upper()}",
                            "barcode": syn.ean13(f"780{n * 10 + i:09d}"), "attributes": {"Cor": color},
                            "unitary_value": None, "status": "available"}
                           for i, color in enumerate(("Azul", "Preto"))] if grid else [],
            "fiscal": {"ncm": "61091000", "cest": None, "origin": 0, "cfop": "5102", "icms_tax_group_id": 3},
        }

    def _synthetic_customer(self, n: int) -> dict[str, Any]:
        street, district, city, uf, zip_code = syn.STREETS[n % len(syn.STREETS)]
        company = n % 4 == 0
        docs = ([{"type": "cnpj", "identify": syn.cnpj(f"{(55443322 + n * 7) % 10**8:08d}0001")},
                 {"type": "ie", "identify": f"{110042490000 + n}"}] if company else
                [{"type": "cpf", "identify": syn.cpf(f"{(123456 + n * 7919) % 10**9:09d}")},
                 {"type": "rg", "identify": f"{(30000000 + n) % 10**9}"}])
        return {"name": f"Cliente {n}", "type": "company" if company else "individual",
                "company_name": f"Cliente {n} Comércio Ltda" if company else None, "birthday": None,
                "notes": None, "documents": docs,
                "contacts": [{"type": "email", "value": f"cliente{n}@example.com"},
                             {"type": "mobile", "value": f"119{n % 10**8:08d}"}],
                "addresses": [{"type": "default", "street": street, "number": str(100 + n), "complement": None,
                               "neighborhood": district, "city": city, "state": uf, "zip_code": zip_code}]}

    def _payment(self, method_id: int, value: Decimal, installments: int = 1) -> dict[str, Any]:
        return {"payment_method_id": method_id, "value": {"amount": syn.cents(value), "currency": "BRL"},
                "installments": installments}

    def _synthetic_sale(self, n: int) -> dict[str, Any]:
        self._ensure("payments", len(syn.PAYMENT_METHODS))
        self._ensure("sellers", 2)
        products = self._live("products")
        items = []
        for i in range(1 + n % 3):
            if products:
                p = products[(n + i) % len(products)]
                items.append({"sku": p["sku"], "amount": 1 + i})
            else:
                items.append({"sku": f"PDV-{(n + i) % 20 + 1:04d}", "name": f"Item avulso {(n + i) % 20 + 1}",
                              "amount": 1 + i, "unitary_value": Decimal("10.50") + i})
        if n % 4 == 0:
            items[0]["discount"] = Decimal("1.00")
        customer_id = self._insert("customers", self._synthetic_customer(n)) if n % 2 else None
        stores, sellers = self._live("stores"), self._live("sellers")
        record = self._sale_record(items, [], customer_id=customer_id, store_id=stores[n % 2]["id"],
                                   seller_id=sellers[n % len(sellers)]["id"], status="closed", number=None,
                                   source_type="erp" if n % 7 == 0 else "pdv")
        total = _amount(record["total"])
        methods = {m["fiscal_code"]: m["id"] for m in self._live("payments")}
        code = ("01", "03", "04", "17")[n % 4]
        if n % 5 == 0:
            half = (total / 2).quantize(Decimal("0.01"))
            record["payments"] = [self._payment(methods["17"], half), self._payment(methods["01"], total - half)]
        else:
            record["payments"] = [self._payment(methods[code], total, 1 + n % 3 if code == "03" else 1)]
        return record

    def _sale_record(self, items: list[dict[str, Any]], payments: list[dict[str, Any]] | None, *,
                     customer_id: Any, store_id: Any, seller_id: Any, status: str, number: str | None,
                     source_type: str) -> dict[str, Any]:
        by_sku = {p["sku"]: p for p in self._live("products")}
        lines, total = [], Decimal("0")
        for item in items:
            product = by_sku.get(item["sku"])
            price = Decimal(str(item["unitary_value"])) if item.get("unitary_value") is not None else (
                _amount(product["unitary_value"]) if product else Decimal("10.00"))
            qty, discount = Decimal(str(item.get("amount", 1))), Decimal(str(item.get("discount", 0)))
            total += qty * price - discount
            lines.append({"product_id": product["id"] if product else None, "sku": item["sku"],
                          "name": item.get("name") or (product["name"] if product else item["sku"]),
                          "amount": int(qty) if qty == qty.to_integral_value() else float(qty),
                          "unitary_value": {"amount": syn.cents(price), "currency": "BRL"},
                          "discount": {"amount": syn.cents(discount), "currency": "BRL"}})
        if payments is None:
            self._ensure("payments", len(syn.PAYMENT_METHODS))
            cash = next(m["id"] for m in self._live("payments") if m["fiscal_code"] == "01")
            payments = [{"payment_method_id": cash, "value": total}]
        self._sale_number += 1
        stores = self._live("stores")
        return {
            "number": number or str(self._sale_number), "store_id": int(store_id or stores[0]["id"]),
            "seller_id": int(seller_id) if seller_id is not None else None,
            "customer_id": int(customer_id) if customer_id is not None else None, "source_type": source_type,
            "status": status, "items": lines,
            "payments": [self._payment(int(p["payment_method_id"]), _amount(p["value"]), int(p.get("installments", 1)))
                         for p in payments],
            "total": {"amount": syn.cents(total), "currency": "BRL"},
            "exchange_of_sale_id": None, "return_invoice": None,
        }

    # --- HTTP: OAuth ---------------------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        """Passport-style: ``invalid_client`` 401, ``invalid_grant`` 400; refresh tokens are single-use."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        with self.lock:
            self.counters.token_calls += 1
            grant = body.get("grant_type") if isinstance(body, dict) else None
            entry: dict[str, Any] = {"method": "POST", "path": "/oauth/token", "grant_type": grant, "status": None}
            self.counters.log.append(entry)
            response = self._grant(body)
            entry["status"] = response.status_code
            return response

    def _grant(self, body: Any) -> JSONResponse:
        def oauth_error(status: int, code: str, message: str) -> JSONResponse:
            return JSONResponse({"error": code, "error_description": message, "message": message}, status_code=status)

        if not isinstance(body, dict):
            return oauth_error(400, "invalid_request", "The token request must be a JSON object.")
        form = {k: v for k, v in body.items() if isinstance(v, str)}
        try:
            check_client(form.get("client_id"), form.get("client_secret"), self.client_id, self.client_secret)
            issued = self._login.grant(form)
        except OAuthError as error:
            refresh = error.error == "invalid_grant" and form.get("grant_type") == "refresh_token"
            return oauth_error(error.status, error.error,
                               "The refresh token is invalid." if refresh else error.description)
        return JSONResponse({"token_type": "Bearer", "expires_in": issued.expires_in,
                             "access_token": issued.access_token, "refresh_token": issued.refresh_token})

    # --- HTTP: the API gate ----------------------------------------------------------------------------------------

    def _api(self, handler: Handler) -> Handler:
        """Counters and log, injected faults, bearer token, company header, rate limit, idempotency; in that order."""

        async def gated(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            with self.lock:
                self.counters.requests += 1
                entry: dict[str, Any] = {
                    "method": request.method, "path": request.url.path, "query": dict(request.query_params),
                    "company_id": request.headers.get("cplug-company-id"), "idempotency_key": key,
                    "status": None, "replayed": False}
                self.counters.log.append(entry)
                fault = self.faults.next(request.method)
                if fault == "401":
                    self.tokens.drop_access()
            response = await self._gate(request, handler, fault, key, entry)
            with self.lock:
                entry["status"] = response.status_code
            return response

        return gated

    async def _gate(self, request: Request, handler: Handler, fault: str | None, key: str | None,
                    entry: dict[str, Any]) -> Response:
        if fault == "500":
            return _error(500, "internal_error", "Injected internal error.")
        if fault == "429":
            return _error(429, "too_many_requests", "Too many requests (injected).", headers={"Retry-After": "1"})
        await self.delay(fault)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        write = request.method in ("POST", "PUT", "PATCH", "DELETE")
        with self.lock:
            if scheme.lower() != "bearer" or self.tokens.check(token) is not None:
                return _error(401, "unauthenticated", "Unauthenticated.")
            company = request.headers.get("cplug-company-id")
            if company is None or (write and key is None):
                missing = "CPlug-Company-Id" if company is None else "Idempotency-Key"
                return _error(400, "missing_headers", f"The {missing} header is required.")
            if company != str(self.company_id):
                return _error(403, "forbidden", f"This user has no access to company {company}.")
            if write:
                try:
                    uuid.UUID(str(key))
                except ValueError:
                    return _error(400, "invalid_headers", "The Idempotency-Key header must be a UUID.")
            throttled = self._limits.take(self.tokens.clock.time())
            if throttled is not None:
                self.counters.throttled += 1
                return _error(429, "too_many_requests",
                              f"Too many requests: at most {self.rate_per_second:g} per second per company.",
                              headers={"Retry-After": str(throttled.retry_after)})
            replay = self._idempotent.replay(str(key)) if write else None
            if replay is not None:
                entry["replayed"] = True
                return Response(replay.body, status_code=replay.status, media_type=replay.media_type)
        response = await handler(request)
        if write and response.status_code < 300:
            with self.lock:
                self._idempotent.remember(str(key), Stored(response.status_code, bytes(response.body)))
        if fault == "timeout-after-write":
            await self.answer_late()
        return response

    # --- HTTP: resources -----------------------------------------------------------------------------------------

    async def _collection(self, request: Request) -> Response:
        resource = request.path_params["resource"]
        if resource not in self._data:
            return _error(404, "not_found", f"No resource /api/v3/{resource}.")
        if request.method == "GET":
            return self._list(resource, request)
        if resource not in WRITABLE:
            return _error(405, "method_not_allowed", f"/api/v3/{resource} is read-only.")
        body = await _json(request)
        with self.lock:
            problems = self._validate(resource, body, None)
            if problems:
                return _invalid(problems)
            record = self._stored(resource, body, None)
            self._insert(resource, record)
            return JSONResponse({"data": {SINGULAR[resource]: _copy(record)}}, status_code=201)

    async def _item(self, request: Request) -> Response:
        resource = request.path_params["resource"]
        if resource not in self._data:
            return _error(404, "not_found", f"No resource /api/v3/{resource}.")
        body: Any = await _json(request) if request.method == "PUT" else None
        with self.lock:
            try:
                current = self._get(resource, request.path_params["id"])
            except KeyError:
                current = None
            if current is None or (current.get("deleted_at") and request.method != "GET"):
                return _error(404, "not_found", f"{SINGULAR[resource]} {request.path_params['id']} not found.")
            if request.method == "GET":
                return JSONResponse({"data": {SINGULAR[resource]: _copy(current)}})
            if request.method == "DELETE":
                return self._delete(resource, current)
            if resource not in WRITABLE:
                return _error(405, "method_not_allowed", f"/api/v3/{resource} cannot be edited.")
            problems = self._validate(resource, body, current)
            if problems:
                return _invalid(problems)
            current.update(self._stored(resource, body, current))
            current["updated_at"] = self._now()
            return JSONResponse({"data": {SINGULAR[resource]: _copy(current)}})

    def _delete(self, resource: str, current: dict[str, Any]) -> JSONResponse:
        if resource not in DELETABLE:
            return _error(405, "method_not_allowed", f"/api/v3/{resource} cannot be deleted.")
        if resource == "categories":
            used = [p["sku"] for p in self._live("products") if p.get("category_id") == current["id"]]
            children = [c["name"] for c in self._live("categories") if c.get("parent_id") == current["id"]]
            if used or children:
                return _invalid([("id", "InUse", f"A categoria {current['name']!r} possui "
                                  + (f"produtos vinculados ({', '.join(used[:5])})" if used else
                                     f"subcategorias ({', '.join(children[:5])})"))])
        current["deleted_at"] = current["updated_at"] = self._now()
        return JSONResponse({"data": {SINGULAR[resource]: _copy(current)}})

    async def _cancel(self, request: Request) -> Response:
        with self.lock:
            try:
                sale = self._get("sales", request.path_params["id"])
            except KeyError:
                return _error(404, "not_found", f"sale {request.path_params['id']} not found.")
            if sale["status"] != "canceled":
                sale["status"], sale["updated_at"] = "canceled", self._now()
            return JSONResponse({"data": {"sale": _copy(sale)}})

    async def _documents(self, request: Request) -> Response:
        with self.lock:
            try:
                customer = self._get("customers", request.path_params["id"])
            except KeyError:
                return _error(404, "not_found", f"customer {request.path_params['id']} not found.")
            return JSONResponse({"data": {"documents": _copy(customer.get("documents") or [])},
                                 "meta": {"current_page": 1, "last_page": 1, "per_page": MAX_PER_PAGE,
                                          "total": len(customer.get("documents") or [])}})

    def _list(self, resource: str, request: Request) -> Response:
        q = request.query_params
        problems: Problems = []
        try:
            page = int(q.get("page", "1"))
            per_page = int(q.get("per_page", str(DEFAULT_PER_PAGE)))
        except ValueError:
            return _invalid([("page", "Integer", "page and per_page must be integers.")])
        if page < 1:
            problems.append(("page", "Min", "O campo page deve ser pelo menos 1."))
        if not 1 <= per_page <= MAX_PER_PAGE:
            problems.append(("per_page", "Max", f"O campo per page deve estar entre 1 e {MAX_PER_PAGE}."))
        since = q.get("updated_from")
        if since is not None and not UPDATED_FROM.match(since):
            problems.append(("updated_from", "DateFormat", "O campo updated from deve ter o formato "
                                                           "YYYY-MM-DDThh:mm:ss+hh:mm."))
        deleted = q.get("deleted", "not_include")
        if deleted not in ("not_include", "include", "only"):
            problems.append(("deleted", "In", "O campo deleted deve ser not_include, include ou only."))
        if problems:
            return _invalid(problems)
        with self.lock:
            if self.faults.repeat_armed and resource in self._last_page:
                self.faults.take_repeat()
                return Response(self._last_page[resource], media_type="application/json")
            rows = [r for _, r in sorted(self._data[resource].items())]
            if deleted == "not_include":
                rows = [r for r in rows if not r.get("deleted_at")]
            elif deleted == "only":
                rows = [r for r in rows if r.get("deleted_at")]
            if since is not None:
                floor = datetime.fromisoformat(since)
                rows = [r for r in rows if datetime.fromisoformat(r["updated_at"]) >= floor]
            for param, field in FILTERS.get(resource, {}).items():
                if q.get(param):
                    rows = [r for r in rows if _matches(r, field, q[param])]
            start = (page - 1) * per_page
            body = {"data": {resource: [_copy(r) for r in rows[start:start + per_page]]},
                    "meta": {"current_page": page, "last_page": max(1, math.ceil(len(rows) / per_page)),
                             "per_page": per_page, "total": len(rows)}}
            response = JSONResponse(body)
            self._last_page[resource] = bytes(response.body)
            return response

    # --- validation ------------------------------------------------------------------------------------------------

    def _validate(self, resource: str, body: Any, current: dict[str, Any] | None) -> Problems:
        """What CPlug would refuse; on update (``current`` given) only the fields sent are checked."""
        if not isinstance(body, dict):
            return [("body", "Json", "The body must be a JSON object.")]
        problems: Problems = []
        creating = current is None

        def present(name: str) -> bool:
            return name in body if not creating else True

        def text(name: str, required: bool = True) -> None:
            if present(name) and (required or body.get(name) is not None):
                value = body.get(name)
                if not isinstance(value, str) or not value.strip():
                    problems.append((name, "Required", f"O campo {name} é obrigatório."))

        def exists(name: str, target: str, required: bool = True) -> None:
            if not present(name) or (not required and body.get(name) is None):
                return
            value = body.get(name)
            ok = isinstance(value, int) and not isinstance(value, bool) and value in self._data[target] \
                and not self._data[target][value].get("deleted_at")
            if not ok:
                problems.append((name, "Exists", f"O {name} {value!r} não existe."))

        if resource == "products":
            text("name")
            text("sku")
            if present("sku") and isinstance(body.get("sku"), str):
                clash = next((p for p in self._live("products")
                              if p["sku"] == body["sku"] and (current is None or p["id"] != current["id"])), None)
                if clash is not None:
                    problems.append(("sku", "Unique", f"O sku {body['sku']!r} já está em uso (produto {clash['id']})."))
            if present("unitary_value"):
                value = body.get("unitary_value")
                if not isinstance(value, dict) or not _is_number(value.get("amount")) \
                        or value.get("currency", "BRL") != "BRL":
                    problems.append(("unitary_value", "Money", "unitary_value deve ser {amount >= 0, currency BRL}."))
            exists("category_id", "categories")
            exists("unit_id", "units")
            if "barcodes" in body and (not isinstance(body["barcodes"], list)
                                       or not all(isinstance(b, str) and b for b in body["barcodes"])):
                problems.append(("barcodes", "Array", "barcodes deve ser uma lista de textos."))
            kind = (body.get("option_type") or {}).get("type", "simple") if "option_type" in body else None
            if kind is not None and kind not in ("simple", "grid", "composition"):
                problems.append(("option_type.type", "In", "option_type.type deve ser simple, composition ou grid."))
            if kind == "grid":
                if not self.grid_module:
                    problems.append(("option_type", "Module", "O módulo Grade de Produtos não está contratado."))
                variations = body.get("variations")
                if not isinstance(variations, list) or not variations \
                        or not all(isinstance(v, dict) and v.get("sku") for v in variations):
                    problems.append(("variations", "Required", "Produtos em grade precisam de variações com sku."))
            fiscal = body.get("fiscal")
            if fiscal is not None:
                if not isinstance(fiscal, dict):
                    problems.append(("fiscal", "Object", "fiscal deve ser um objeto."))
                else:
                    for name, size in (("ncm", 8), ("cest", 7)):
                        value = fiscal.get(name)
                        if value is not None and not (isinstance(value, str) and value.isdigit()
                                                      and len(value) == size):
                            problems.append((f"fiscal.{name}", "Digits", f"fiscal.{name} deve ter {size} dígitos."))
                    origin = fiscal.get("origin")
                    if origin is not None and origin not in range(9):
                        problems.append(("fiscal.origin", "Between", "fiscal.origin deve estar entre 0 e 8."))
        elif resource == "categories":
            text("name")
            exists("parent_id", "categories", required=False)
            if current is not None and body.get("parent_id") == current["id"]:
                problems.append(("parent_id", "Different", "Uma categoria não pode ser mãe de si mesma."))
        elif resource == "sellers":
            text("name")
            document = body.get("document")
            if document is not None and not (isinstance(document, str) and document.isalnum()
                                             and len(document) in (11, 14)):
                problems.append(("document", "Digits", "document deve ser um CPF (11) ou CNPJ (14) sem pontuação."))
        elif resource == "customers":
            text("name")
            if present("type") and body.get("type") not in ("individual", "company"):
                problems.append(("type", "In", "type deve ser individual ou company."))
        if "status" in body and body["status"] not in ("available", "unavailable"):
            problems.append(("status", "In", "status deve ser available ou unavailable."))
        return problems

    def _stored(self, resource: str, body: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """The fields a write stores. An update changes only what it sends; ``fiscal`` is merged key by key, so
        tax settings made by hand in CPlug survive an update that sends NCM, CEST and origin."""
        fields = {
            "products": ("name", "sku", "unitary_value", "category_id", "unit_id", "barcodes", "option_type",
                         "variations", "fiscal", "status", "type", "description"),
            "categories": ("name", "code", "parent_id", "status", "order", "icon"),
            "sellers": ("name", "document", "email", "status"),
            "customers": ("name", "type", "company_name", "birthday", "notes", "documents", "contacts", "addresses"),
        }[resource]
        out = {k: _copy(body[k]) for k in fields if k in body}
        if resource == "products":
            if "unitary_value" in out:
                out["unitary_value"] = {"amount": out["unitary_value"]["amount"], "currency": "BRL"}
            if "fiscal" in out:
                merged = dict((current or {}).get("fiscal") or {"ncm": None, "cest": None, "origin": None})
                merged.update({k: v for k, v in (out["fiscal"] or {}).items()})
                out["fiscal"] = merged
            if "variations" in out:
                known = {v["sku"]: v.get("id") for v in (current or {}).get("variations") or []}
                out["variations"] = [{**v, "id": known.get(v.get("sku")) or next(self._ids["products"]) * 10}
                                     for v in out["variations"]]
            if current is None:
                out.setdefault("type", "simple")
                out.setdefault("barcodes", [])
                out.setdefault("option_type", {"type": "simple"})
                out.setdefault("variations", [])
                out.setdefault("status", "available")
        elif current is None:
            out.setdefault("status", "available")
            if resource == "categories":
                out.setdefault("parent_id", None)
                out.setdefault("code", None)
        return out


def _matches(row: dict[str, Any], field: str, wanted: str) -> bool:
    if field.startswith("~"):
        return wanted.casefold() in str(row.get(field[1:]) or "").casefold()
    if field.endswith("*"):
        return str(row.get(field[:-1])) in {w.strip() for w in wanted.split(",")}
    value = row.get(field)
    if field == "documents":
        return any(d.get("identify") == wanted for d in value or [])
    if isinstance(value, list):
        return wanted in value
    return str(value) == wanted


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None
