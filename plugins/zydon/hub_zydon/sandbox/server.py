"""An in-memory emulator of Zydon's API, served over real HTTP by :func:`hub.sandbox.serve`.

It follows Zydon's public material where there is some (paths under ``/api/sales``, the key login, the
``{currentPage, perPage, total, items}`` envelope with zero-based pages and ``perPage`` up to 200, prices in reais,
statuses with types PENDING/PAID/INVOICED/CANCELLED created by hand, a partner needing CPF/CNPJ or IE/RG, SKUs
unique, 429 under load) and the plugin README's assumptions elsewhere (the JWT's lifetime, the error body, the stock
override and status-change paths, the webhook signature). The app runs in uvicorn's thread while tests call the
control methods from theirs: the state is touched only under ``self.lock``, never across an ``await``.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import hmac
import itertools
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
from hub.sandbox import SandboxBase, SandboxSettings
from hub.sandbox.documents import cnpj, cpf, ean13, wrong_check_digit
from hub.sandbox.oauth import TokenStore, WallClock
from hub.sandbox.ratelimit import Limits, Rule, TokenBucket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

S = "/api/sales"
STREAMS: dict[str, str] = {"products": "products", "customers": "partners", "payment_methods": "payment-methods",
                           "sales": "orders", "stock": "stock", "prices": "prices", "invoices": "invoices"}
"""hub stream -> the sandbox's table (stock, prices and invoices are views over products and orders)."""
TABLES = ("products", "partners", "payment-methods", "orders", "status", "measure-units", "categories",
          "variations", "warehouses", "resource-files")
LISTED = {"products", "partners", "payment-methods", "status", "measure-units", "categories", "variations",
          "warehouses", "sales"}
SEARCHED = {"products": ("sku", "name", "ean_gtin"), "partners": ("fiscal_registration_number", "name",
                                                                   "state_registration", "email"),
            "payment-methods": ("name",), "sales": ("external_id", "partner_name"), "status": ("name", "title"),
            "categories": ("name",), "variations": ("name",), "measure-units": ("abbreviation", "name"),
            "warehouses": ("name",)}
MAX_PER_PAGE, DEFAULT_PER_PAGE = 200, 25
FUTURE_STAMP = "2099-01-01T00:00:00.000000Z"
STATUSES = [("Em aberto", "PENDING"), ("Em andamento", "PAID"), ("Atendido", "INVOICED"), ("Cancelado", "CANCELLED")]
"""The statuses a new organization has here: named like Bling's, as Zydon's help page asks them to be created."""
UNITS = [("UN", "Unidade"), ("CX", "Caixa"), ("KG", "Quilograma"), ("PC", "Peça")]
WAREHOUSES = ["Depósito Principal", "Depósito Filial"]
METHODS = ["Boleto", "PIX", "Cartão de Crédito", "Dinheiro", "Transferência", "Cheque"]
SIGNATURE_HEADER = "X-Zydon-Signature"
Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, errors: list[tuple[str, str]] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    """Zydon's error body as the plugin assumes it: ``{"message", "errors": [{"field", "message"}]}``."""
    return JSONResponse({"message": message, "errors": [{"field": f, "message": m} for f, m in errors or []]},
                        status_code=status, headers=headers)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _reais(value: Any) -> bool:
    """A price in reais: a JSON number >= 0 with at most two decimals (cents would be a string or too precise)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return False
    return Decimal(str(value)) == Decimal(str(value)).quantize(Decimal("0.01"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ZydonSettings(SandboxSettings):
    rate_per_second: float | None = 10
    """Zydon publishes no limit; it answers 429 under load. 10/s per organization here, in a one-second bucket."""
    token_ttl_seconds: float = 3600
    """The JWT's lifetime (not published: assumed one hour); tests set a short one."""
    page_size: int = MAX_PER_PAGE
    """The ``page_size`` option :meth:`ZydonSandbox.connection` gives (tests make it small to page quickly)."""
    app_install: bool = False
    """True: :meth:`ZydonSandbox.connection` gives an App Studio plugin's credentials (``client_id``,
    ``client_secret``, ``redirect_uri``) instead of the key pair, which ``hub auth zydon`` then obtains."""
    share_webhook_secret: bool = True
    """False: :meth:`ZydonSandbox.connection` gives no ``webhook_secret`` (a connection set up without one)."""


class ZydonSandbox(SandboxBase):
    """One Zydon organization: key login for JWTs, paged lists, the catalog, partners, orders and statuses."""

    Settings = ZydonSettings
    streams = ("products", "customers", "payment_methods", "sales")
    _orgs = itertools.count(1)

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.settings: ZydonSettings
        self.org_id = next(self._orgs)
        self.key_id = f"zyk-{secrets.token_hex(6)}"
        self.key_secret = secrets.token_urlsafe(24)
        self.solution_id = str(uuid.uuid4())
        self.app_client_id, self.app_client_secret = str(uuid.uuid4()), secrets.token_urlsafe(16)
        self.webhook_secret = secrets.token_urlsafe(18)
        self.webhook_url: str | None = None
        self.deliveries: list[dict[str, Any]] = []
        self._signing = secrets.token_bytes(32)
        self.tokens = TokenStore(WallClock(), access_ttl=self.settings.token_ttl_seconds)
        self._codes: dict[str, bool] = {}
        self._limits = Limits(self._rules)
        self._data: dict[str, dict[int, dict[str, Any]]] = {t: {} for t in TABLES}
        self._stock: dict[tuple[int, int | None, int], dict[str, Any]] = {}
        self._ids = itertools.count(1001)
        self._last_page: dict[str, bytes] = {}
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self._serial = 0
        with self.lock:
            for abbreviation, name in UNITS:
                self._insert("measure-units", {"abbreviation": abbreviation, "name": name, "decimals_for_quantity": 0})
            for i, name in enumerate(WAREHOUSES):
                self._insert("warehouses", {"id": i + 1, "name": name, "default": i == 0, "active": True})
            for name, kind in STATUSES:
                self._add_status(name, kind)
        self.app = Starlette(routes=[
            Route("/api/account/access-key/login", self._login, methods=["POST"]),
            Route("/api/appcenter/oauth/token", self._app_token, methods=["POST"]),
            Route("/oauth/authorize", self._authorize, methods=["GET"]),
            Route(f"{S}/stock/override", self._api(self._stock_write), methods=["PUT"]),
            Route(f"{S}/stock/movement", self._api(self._stock_write), methods=["PUT"]),
            Route(f"{S}/orders/{{id}}/status", self._api(self._order_status), methods=["PUT"]),
            Route(f"{S}/orders/{{id}}/invoices", self._api(self._order_invoice), methods=["POST"]),
            Route(f"{S}/orders/{{id}}", self._api(self._order_get), methods=["GET"]),
            Route(f"{S}/resource-files", self._api(self._upload), methods=["POST"]),
            Route(f"{S}/{{table}}", self._api(self._collection), methods=["GET", "POST"]),
            Route(f"{S}/{{table}}/{{id}}", self._api(self._item), methods=["GET", "PUT"]),
        ])

    # --- the hub.sandbox.Sandbox protocol -------------------------------------------------------------------------

    def _rules(self, key: Hashable) -> Sequence[Rule]:
        rate = self.settings.rate_per_second
        return [TokenBucket(rate)] if rate else []

    def limits_changed(self) -> None:
        self._limits.reset()
        self.tokens.access_ttl = self.settings.token_ttl_seconds

    def connection(self, base_url: str) -> dict[str, Any]:
        rate = self.settings.rate_per_second
        return {"options": {"base_url": base_url, "solution_id": self.solution_id, "page_size": self.settings.page_size,
                            "rate_per_second": rate if rate is not None else 1000},
                "credentials": {**({"client_id": self.app_client_id, "client_secret": self.app_client_secret,
                                    "redirect_uri": "https://hub.example/zydon/callback"}
                                   if self.settings.app_install else
                                   {"key_id": self.key_id, "key_secret": self.key_secret}),
                                **({"webhook_secret": self.webhook_secret}
                                   if self.settings.share_webhook_secret else {})}}

    def seed(self, stream: str, count: int) -> list[str]:
        """Synthetic records; ``stock`` and ``prices`` seed products (each with a balance in the default
        warehouse) and return their ids; orders bring a partner, a product and a payment method when none exist."""
        table = self._table(stream)
        if table == "invoices":
            raise ValueError("invoices are attached to orders (push_invoice); seed sales instead")
        with self.lock:
            if table not in ("stock", "prices"):
                return [str(self._insert(table, self._synthetic(table))) for _ in range(count)]
            ids = [self._insert("products", self._synthetic("products")) for _ in range(count)]
            for i, product_id in enumerate(ids):
                row = self._stock[(product_id, None, self._default_warehouse())]
                row["total"] = row["available"] = float(10 + i % 50)
            return [str(i) for i in ids]

    def seed_invalid(self, stream: str) -> str:
        """A record Zydon holds that hub must refuse: a GTIN or CPF with a wrong check digit, an order whose
        payments do not add up to its total."""
        table = self._table(stream)
        with self.lock:
            record = self._synthetic(table)
            if table == "products":
                record["ean_gtin"] = wrong_check_digit(record["ean_gtin"])
            elif table == "partners":
                record["fiscal_registration_number"] = wrong_check_digit(record["fiscal_registration_number"])
            elif table == "orders":
                record["payments"][0]["amount"] = 0.01
            else:
                raise ValueError(f"seed_invalid does not support {stream!r} (products, customers, sales)")
            return str(self._insert(table, record))

    def seed_future(self, stream: str) -> str:
        table = self._table(stream)
        with self.lock:
            record_id = self._insert(table, self._synthetic(table))
            self._data[table][record_id]["updated_at"] = FUTURE_STAMP
            return str(record_id)

    def age(self, stream: str, seconds: float) -> None:
        table = self._table(stream)
        with self.lock:
            for record in self._data[table].values():
                moment = datetime.fromisoformat(record["updated_at"].replace("Z", "+00:00"))
                record["updated_at"] = self._format(moment - timedelta(seconds=seconds))

    def touch(self, stream: str, external_id: str) -> None:
        """Edit a record as a person would in Zydon's screens (an order moves to its next status)."""
        table = self._table(stream)
        with self.lock:
            record = self._data[table][int(external_id)]
            self._serial += 1
            if table == "orders":
                current = record["statuses"][-1]["status_id"]
                following = next((s for s in sorted(self._data["status"]) if s > current), current)
                record["statuses"].append({"status_id": following, "created_at": self._stamp()})
            else:
                record["name"] = f"{record['name'].split(' (rev')[0]} (rev {self._serial})"
            record["updated_at"] = self._stamp()

    def records(self, stream: str) -> list[dict[str, Any]]:
        table = self._table(stream)
        with self.lock:
            if table == "stock":
                return [_copy(r) for _, r in sorted(self._stock.items(), key=lambda kv: kv[1]["id"])]
            if table == "prices":
                return self._prices()
            if table == "invoices":
                return [_copy({**i, "order_id": o["id"]}) for o in self._rows("orders") for i in o["invoices"]]
            return [self._shown(table, r) for r in self._rows(table)]

    # --- extras for tests and flows ---------------------------------------------------------------------------------

    def create_product(self, *, sku: str, price: float = 10.0, name: str | None = None,
                       variations: list[dict[str, Any]] | None = None) -> str:
        """A product typed into Zydon's screens (``variations``: ``{"sku", "price"?, "values"?}``)."""
        with self.lock:
            record = self._synthetic("products")
            record.update(sku=sku, price=price, name=name or f"Produto {sku}",
                          variations=[{"active": True, "price": price, "values": [], "ean_gtin": None, **v}
                                      for v in variations or []])
            return str(self._insert("products", record))

    def add_status(self, name: str, kind: str = "PENDING", *, can_edit_by_api: bool = True) -> str:
        """Create an order status, as a person does under Pedidos > Status."""
        with self.lock:
            return str(self._add_status(name, kind, can_edit_by_api=can_edit_by_api))

    def statuses(self) -> list[dict[str, Any]]:
        with self.lock:
            return [_copy(s) for s in self._rows("status")]

    def order_status(self, order_id: str) -> str:
        """The name of an order's current status."""
        with self.lock:
            order = self._data["orders"][int(order_id)]
            return str(self._data["status"][order["statuses"][-1]["status_id"]]["name"])

    def stock_of(self, sku: str, warehouse_id: str | int | None = None) -> Decimal:
        """The balance of a product or variation SKU in a warehouse (default: the default one)."""
        with self.lock:
            product_id, variation_id = self._by_sku(sku)
            wid = int(warehouse_id) if warehouse_id is not None else self._default_warehouse()
            row = self._stock.get((product_id, variation_id, wid))
            return Decimal(str(row["total"])) if row else Decimal("0")

    def warehouses(self) -> list[dict[str, Any]]:
        with self.lock:
            return [_copy(w) for w in self._rows("warehouses")]

    def subscribe(self, url: str, secret: str | None = None) -> None:
        """Configure the order webhook ("Entrada de Pedido") to ``url``, signed with ``secret`` (default: the one
        :meth:`connection` gives)."""
        with self.lock:
            self.webhook_url = url
            if secret is not None:
                self.webhook_secret = secret

    def place_order(self, *, partner_id: str | None = None, items: list[dict[str, Any]] | None = None,
                    payment_method_id: str | None = None) -> str:
        """An order entering from the B2B portal: stored, then the order webhook is delivered (when subscribed).
        ``items``: ``{"sku", "quantity"}`` (default: one unit of some product); ``payment_method_id``: how it is
        paid (default: the first payment method)."""
        with self.lock:
            record = self._synthetic("orders")
            if partner_id is not None:
                record["partner_id"] = int(partner_id)
            if payment_method_id is not None:
                record["payments"][0]["paymentMethodId"] = int(payment_method_id)
            if items:
                lines = []
                for item in items:
                    product_id, variation_id = self._by_sku(item["sku"])
                    product = self._data["products"][product_id]
                    lines.append({"productId": product_id, "productVariationId": variation_id, "sku": item["sku"],
                                  "name": product["name"], "unitValue": product["price"],
                                  "quantity": item.get("quantity", 1), "unit": "UN", "discount": 0})
                total = float(sum(Decimal(str(i["unitValue"])) * Decimal(str(i["quantity"])) for i in lines))
                record.update(items=lines, total_value=total, order_value=total)
                record["payments"][0]["amount"] = total
            order_id = self._insert("orders", record)
            url, secret, order = self.webhook_url, self.webhook_secret, _copy(self._data["orders"][order_id])
        if url:
            self._deliver(url, secret, order)
        return str(order_id)

    def _deliver(self, url: str, secret: str, order: dict[str, Any]) -> None:
        """POST the order event, signed: ``X-Zydon-Signature: sha256=<hex HMAC-SHA256 of the raw body>``."""
        payload = {"event": "order.created", "id": order["id"], "order_id": order["id"],
                   "amount_value": order["total_value"], "partner_id": order["partner_id"],
                   "automation_fields": {}, "created_at": order["created_at"]}
        raw = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        delivery = str(uuid.uuid4())
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature, "X-Zydon-Delivery": delivery,
                   "X-Zydon-Event": "order.created"}
        answer: Any = None
        try:
            response = httpx.post(url, content=raw, headers=headers, timeout=5)
            status: int | None = response.status_code
            answer = response.json() if response.headers.get("content-type", "").startswith("application/json") \
                else response.text
        except httpx.HTTPError:
            status = None
        with self.lock:
            self.deliveries.append({"id": delivery, "order_id": order["id"], "status": status, "answer": answer,
                                    "body": payload, "headers": headers})

    def summary(self) -> dict[str, Any]:
        """What the demo prints before and after: the catalog, partners, payment methods, orders and NF-es."""
        with self.lock:
            return {"products": len(self._data["products"]), "customers": len(self._data["partners"]),
                    "payment methods": len(self._data["payment-methods"]), "orders": len(self._data["orders"]),
                    "NF-e attached": sum(len(o["invoices"]) for o in self._data["orders"].values())}

    def demo_orders(self, count: int = 5) -> str:
        """Buyers place ``count`` orders on the portal, over the products there; the last one comes from a buyer
        and with a payment method that exist only in Zydon (the hub creates both in the ERP). Returns the ids."""
        with self.lock:
            skus = [p["sku"] for p in self._rows("products") if not p.get("variations")]
            partners = [str(p["id"]) for p in self._rows("partners")]
        if not skus:
            raise ValueError("no product without variations in Zydon: sync the catalog first")
        ids = [self.place_order(items=[{"sku": skus[i % len(skus)], "quantity": 1 + i % 3}],
                                partner_id=partners[i % len(partners)] if partners else None)
               for i in range(count - 1)]
        (buyer,) = self.seed("customers", 1)
        (method,) = self.seed("payment_methods", 1)
        ids.append(self.place_order(items=[{"sku": skus[0], "quantity": 1}], partner_id=buyer,
                                    payment_method_id=method))
        return ", ".join(ids)

    def authorize_code(self) -> str:
        """A single-use App Studio authorization code, as the consent page gives the callback."""
        with self.lock:
            code = secrets.token_hex(16)
            self._codes[code] = False
            return code

    def advance(self, seconds: float) -> None:
        """Move the sandbox's clock (JWTs expire without sleeping)."""
        with self.lock:
            self.tokens.clock.advance(seconds)  # type: ignore[attr-defined]

    # --- state (lock held) ------------------------------------------------------------------------------------------

    @staticmethod
    def _table(stream: str) -> str:
        if stream not in STREAMS:
            raise ValueError(f"the Zydon sandbox has no stream {stream!r} (streams: {', '.join(STREAMS)})")
        return STREAMS[stream]

    @staticmethod
    def _format(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _stamp(self) -> str:
        """Now, strictly after the previous stamp: two writes never share a change date."""
        self._last_stamp = max(datetime.now(UTC), self._last_stamp + timedelta(microseconds=1))
        return self._format(self._last_stamp)

    def _rows(self, table: str) -> list[dict[str, Any]]:
        return [r for _, r in sorted(self._data[table].items())]

    def _insert(self, table: str, record: dict[str, Any]) -> int:
        record_id = int(record.get("id") or next(self._ids))
        stamp = self._stamp()
        record.setdefault("created_at", stamp)
        record.update(id=record_id, updated_at=stamp)
        self._data[table][record_id] = record
        if table == "products":
            for variation in record.get("variations") or []:
                variation.setdefault("id", next(self._ids))
            self._seed_stock(record)
        return record_id

    def _add_status(self, name: str, kind: str, *, can_edit_by_api: bool = True) -> int:
        if kind not in ("PENDING", "PAID", "INVOICED", "CANCELLED"):
            raise ValueError(f"status type {kind!r}: PENDING, PAID, INVOICED or CANCELLED")
        return self._insert("status", {"name": name, "title": name, "sub_title": None, "type": kind,
                                       "can_edit_by_customer": False, "can_edit_by_api": can_edit_by_api,
                                       "show_in_portal": True, "colors": {}, "relations": []})

    def _default_warehouse(self) -> int:
        return int(next(w["id"] for w in self._rows("warehouses") if w.get("default")))

    def _seed_stock(self, product: dict[str, Any]) -> None:
        warehouse = self._default_warehouse()
        cells = [v["id"] for v in product.get("variations") or []] or [None]
        for variation_id in cells:
            key = (product["id"], variation_id, warehouse)
            if key not in self._stock:
                self._stock[key] = {"id": next(self._ids), "type": "PRODUCT", "product_id": product["id"],
                                    "product_variation_id": variation_id, "warehouse_id": warehouse,
                                    "company_id": None, "active": True, "total": 0, "reserved": 0, "available": 0,
                                    "updated_at": self._stamp()}

    def _by_sku(self, sku: str) -> tuple[int, int | None]:
        for product in self._data["products"].values():
            if product["sku"] == sku:
                return product["id"], None
            for variation in product.get("variations") or []:
                if variation["sku"] == sku:
                    return product["id"], variation["id"]
        raise KeyError(f"no product or variation with SKU {sku!r}")

    def _prices(self) -> list[dict[str, Any]]:
        out = []
        for product in self._rows("products"):
            out.append({"sku": product["sku"], "price": product["price"], "product_id": product["id"],
                        "product_variation_id": None})
            out += [{"sku": v["sku"], "price": v["price"], "product_id": product["id"],
                     "product_variation_id": v["id"]} for v in product.get("variations") or []]
        return out

    def _shown(self, table: str, record: dict[str, Any]) -> dict[str, Any]:
        """A record as the API shows it (a product with its unit, category and stock)."""
        out: dict[str, Any] = _copy(record)
        if table == "products":
            unit = self._data["measure-units"].get(record.get("standard_unit_id") or 0) or {}
            category = self._data["categories"].get(record.get("category_id") or 0) or {}
            out.update(standard_unit_abbreviation=unit.get("abbreviation"), standard_unit_name=unit.get("name"),
                       category_name=category.get("name"), warehouse_default=self._default_warehouse())
            out["stock"] = float(sum(Decimal(str(r["total"])) for k, r in self._stock.items()
                                     if k[0] == record["id"]))
            for variation in out.get("variations") or []:
                variation["stock"] = float(sum(Decimal(str(r["total"])) for k, r in self._stock.items()
                                               if k[0] == record["id"] and k[1] == variation["id"]))
        return out

    def _sale_row(self, order: dict[str, Any]) -> dict[str, Any]:
        """An order as the sales list shows it."""
        status = self._data["status"][order["statuses"][-1]["status_id"]]
        partner = self._data["partners"].get(order["partner_id"]) or {}
        methods = self._data["payment-methods"]
        return {"id": order["id"], "external_id": order.get("external_id"), "partner_id": order["partner_id"],
                "partner_name": partner.get("name"), "company_id": order.get("company_id"),
                "total_value": order["total_value"], "items_quantity": len(order["items"]),
                "origin_name": order.get("origin"), "created_at": order["created_at"],
                "updated_at": order["updated_at"], "webhook_error": None, "quotation": False,
                "payments": [{"id": p["paymentMethodId"], "name": (methods.get(p["paymentMethodId"]) or {}).get("name")}
                             for p in order["payments"]],
                "status": {"id": status["id"], "status_id": status["id"], "title": status["title"],
                           "background_color": None, "font_color": None}}

    def _synthetic(self, table: str) -> dict[str, Any]:
        n = next(self._ids)
        if table == "products":
            unit = next(u["id"] for u in self._rows("measure-units") if u["abbreviation"] == "UN")
            return {"id": n, "sku": f"ZY-{n}", "name": f"Produto {n}", "description": None, "active": True,
                    "ean_gtin": ean13(f"789{n:09d}"), "price": float(Decimal(10 + n % 90) + Decimal("0.90")),
                    "standard_unit_id": unit, "category_id": None, "brand_id": None, "images": [],
                    "category_specifications": [], "variations": []}
        if table == "partners":
            document = cpf(f"{(123456 + n * 7919) % 10**9:09d}") if n % 2 else cnpj(f"{(11222333 + n) % 10**8:08d}0001")
            return {"id": n, "name": f"Cliente {n}", "type": "PF" if n % 2 else "PJ",
                    "fiscal_registration_number": document, "state_registration": None if n % 2 else "110042490114",
                    "email": f"cliente{n}@example.com.br", "phone": "1133334444", "mobile": None, "active": True,
                    "addresses": [{"address_type": "BILLING", "street": "Av. Paulista", "number": str(n % 2000),
                                   "complement": None, "neighborhood": "Bela Vista", "city": "São Paulo",
                                   "state": "SP", "country": "BR", "postal_code": "01310100", "main_address": True}],
                    "seller_id": None, "profile_id": None}
        if table == "payment-methods":
            used = {m["name"] for m in self._data["payment-methods"].values()}
            name = next((m for m in METHODS if m not in used), f"Forma {n}")
            return {"id": n, "name": name, "active": True}
        if table == "orders":
            partner = next(iter(self._rows("partners")), None) or self._data["partners"][
                self._insert("partners", self._synthetic("partners"))]
            product = next(iter(self._rows("products")), None) or self._data["products"][
                self._insert("products", self._synthetic("products"))]
            method = next(iter(self._rows("payment-methods")), None) or self._data["payment-methods"][
                self._insert("payment-methods", self._synthetic("payment-methods"))]
            quantity = 1 + n % 3
            total = float(Decimal(str(product["price"])) * quantity)
            first = min(self._data["status"])
            return {"id": n, "external_id": None, "origin": "PORTAL", "company": {"id": 1, "name": "Matriz"},
                    "partner_id": partner["id"], "seller_id": None, "negotiation_date": self._stamp(),
                    "total_value": total, "order_value": total, "discount_value": 0, "freight_value": 0,
                    "observation": None, "invoices": [],
                    "items": [{"productId": product["id"], "productVariationId": None, "sku": product["sku"],
                               "name": product["name"], "unitValue": product["price"], "quantity": quantity,
                               "unit": "UN", "discount": 0}],
                    "payments": [{"paymentMethodId": method["id"], "amount": total, "installments": 1}],
                    "statuses": [{"status_id": first, "created_at": self._stamp()}]}
        raise ValueError(f"no synthetic {table}")

    # --- HTTP: authentication -------------------------------------------------------------------------------------

    def _jwt(self, kind: str, now: float, ttl: float) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {"sub": self.key_id, "org": self.org_id, "solution_id": self.solution_id, "iat": int(now),
                  "exp": int(now + ttl), "jti": secrets.token_hex(8)}
        payload = _b64(json.dumps(claims).encode())
        signature = _b64(hmac.new(self._signing, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    async def _login(self, request: Request) -> Response:
        body = await _json(request)
        with self.lock:
            self.counters.token_calls += 1
            if not isinstance(body, dict) or not hmac.compare_digest(str(body.get("code", "")), self.key_id) \
                    or not hmac.compare_digest(str(body.get("token", "")), self.key_secret):
                return _error(401, "Chave de acesso inválida.")
            if body.get("solution_id") not in (None, self.solution_id):
                return _error(404, "Solução não encontrada para esta organização.")
            issued = self.tokens.issue(self.tokens.new_grant(), refresh=False, make=self._jwt)
        return JSONResponse({"accessToken": issued.access_token})

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.app_client_id:
            return RedirectResponse(f"{q.get('redirect_uri', '')}?error=invalid_client&state={q.get('state', '')}")
        code = self.authorize_code()
        return RedirectResponse(f"{q.get('redirect_uri', '')}?code={code}&state={q.get('state', '')}")

    async def _app_token(self, request: Request) -> Response:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            client_id = secret = ""
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        with self.lock:
            self.counters.token_calls += 1
            if scheme.lower() != "basic" or client_id != self.app_client_id:
                return _error(404, "Plugin não encontrado.")
            if not hmac.compare_digest(secret, self.app_client_secret):
                return _error(400, "Parâmetros inválidos.", [("client_secret", "chave de acesso do plugin inválida")])
            code = form.get("code", "")
            if self._codes.get(code) is not False:
                return _error(400, "Parâmetros inválidos.", [("code", "código inválido ou já usado")])
            self._codes[code] = True
        return JSONResponse({"access_key_code": self.key_id, "access_key_token": self.key_secret})

    def _api(self, handler: Handler) -> Handler:
        """The gate of every API endpoint: counters, injected faults, the JWT, the rate limit."""

        async def gated(request: Request) -> Response:
            with self.lock:
                self.counters.requests += 1
                self.counters.log.append({"method": request.method, "path": request.url.path,
                                          "query": str(request.url.query)})
                fault = self.faults.next(request.method)
                if fault == "401":
                    self.tokens.drop_access()
            if fault == "500":
                return _error(500, "Erro interno (injetado).")
            if fault == "429":
                return _error(429, "Muitas requisições. Tente novamente em instantes.", headers={"Retry-After": "1"})
            await self.delay(fault)
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            with self.lock:
                why = self.tokens.check(token) if scheme.lower() == "bearer" else "invalid"
                if why == "expired":
                    return _error(401, "Token expirado.")
                if why is not None:
                    return _error(401, "Token inválido.")
                throttled = self._limits.take(self.tokens.clock.time())
                if throttled is not None:
                    self.counters.throttled += 1
                    return _error(429, "Muitas requisições. Tente novamente em instantes.",
                                  headers={"Retry-After": str(throttled.retry_after)})
            response = await handler(request)
            if fault == "timeout-after-write":
                await self.answer_late()
            return response

        return gated

    # --- HTTP: lists and records --------------------------------------------------------------------------------

    async def _collection(self, request: Request) -> Response:
        table = request.path_params["table"]
        if request.method == "GET":
            if table not in LISTED:
                return _error(404, f"Recurso {table} não encontrado.")
            return self._list(table, request)
        if table not in ("products", "partners", "payment-methods", "sales", "categories", "variations"):
            return _error(405, f"{table} não aceita POST.")
        body = await _json(request)
        with self.lock:
            stored = "orders" if table == "sales" else table
            record, problem = self._validated(stored, body, None)
            if problem is not None:
                return problem
            record_id = self._insert(stored, record)
            shown = self._shown(stored, self._data[stored][record_id])
            return JSONResponse(shown, status_code=201)

    async def _item(self, request: Request) -> Response:
        table, raw_id = request.path_params["table"], request.path_params["id"]
        body = await _json(request) if request.method == "PUT" else None
        with self.lock:
            current = self._data.get(table, {}).get(_int(raw_id))
            if current is None or table not in ("products", "partners", "payment-methods", "status", "categories",
                                                "variations", "warehouses", "measure-units"):
                return _error(404, f"{table} {raw_id} não encontrado.")
            if request.method == "GET":
                return JSONResponse(self._shown(table, current))
            if table not in ("products", "partners", "payment-methods"):
                return _error(405, f"{table} não aceita PUT pela API.")
            record, problem = self._validated(table, body, current)
            if problem is not None:
                return problem
            if {k: current.get(k) for k in record} != record:
                current.update(record)
                current["updated_at"] = self._stamp()
                if table == "products":
                    for variation in current.get("variations") or []:
                        variation.setdefault("id", next(self._ids))
                    self._seed_stock(current)
            return JSONResponse(self._shown(table, current))

    def _list(self, table: str, request: Request) -> Response:
        q = request.query_params
        try:
            page, per_page = int(q.get("page", "0")), int(q.get("perPage", str(DEFAULT_PER_PAGE)))
        except ValueError:
            return _error(400, "Parâmetros inválidos.", [("page", "page e perPage devem ser inteiros")])
        if page < 0 or not 1 <= per_page <= MAX_PER_PAGE:
            return _error(400, "Parâmetros inválidos.", [("perPage", f"page >= 0 e perPage entre 1 e {MAX_PER_PAGE}")])
        try:
            start = datetime.fromisoformat(q["start_date"].replace("Z", "+00:00")) if q.get("start_date") else None
            final = datetime.fromisoformat(q["final_date"].replace("Z", "+00:00")) if q.get("final_date") else None
        except ValueError:
            return _error(400, "Parâmetros inválidos.", [("start_date", "data inválida (ISO 8601)")])
        sort, direction = q.get("sort", "id"), q.get("dir", "asc")
        if sort not in ("id", "updated_at", "created_at", "name") or direction not in ("asc", "desc"):
            return _error(400, "Parâmetros inválidos.", [("sort", "sort id|updated_at|created_at|name, dir asc|desc")])
        with self.lock:
            key = f"{table}?{q.get('search', '')}"
            if self.faults.repeat_armed and key in self._last_page:
                self.faults.take_repeat()
                return Response(self._last_page[key], media_type="application/json")
            if table == "sales":
                rows = [self._sale_row(o) for o in self._rows("orders")]
            else:
                rows = [self._shown(table, r) for r in self._rows(table)]
            search = q.get("search", "").strip().casefold()
            if search:
                fields = SEARCHED.get(table, ("name",))
                rows = [r for r in rows if any(search in str(r.get(f) or "").casefold() for f in fields)
                        or any(search == str(v.get("sku", "")).casefold() for v in r.get("variations") or [])]
            if q.get("partner_id"):
                rows = [r for r in rows if str(r.get("partner_id")) == q["partner_id"]]
            if start is not None or final is not None:
                def stamp(r: dict[str, Any]) -> datetime:
                    return datetime.fromisoformat(str(r["updated_at"]).replace("Z", "+00:00"))
                rows = [r for r in rows
                        if (start is None or stamp(r) >= start) and (final is None or stamp(r) <= final)]
            rows.sort(key=lambda r: (str(r.get(sort) or ""), r["id"]) if sort != "id" else (r["id"], 0),
                      reverse=direction == "desc")
            chunk = rows[page * per_page:(page + 1) * per_page]
            response = JSONResponse({"currentPage": page, "perPage": per_page, "total": len(rows), "items": chunk})
            self._last_page[key] = bytes(response.body)
            return response

    # --- validation -------------------------------------------------------------------------------------------------

    def _validated(self, table: str, body: Any, current: dict[str, Any] | None
                   ) -> tuple[dict[str, Any], JSONResponse | None]:
        if not isinstance(body, dict):
            return {}, _error(400, "Corpo inválido.", [("body", "esperado um objeto JSON")])
        problems: list[tuple[str, str]] = []
        own = current["id"] if current else None

        def text(name: str) -> str:
            value = body.get(name)
            if not isinstance(value, str) or not value.strip():
                problems.append((name, "campo obrigatório"))
                return ""
            return value.strip()

        if table == "products":
            record = {k: _copy(body.get(k)) for k in ("sku", "name", "description", "active", "ean_gtin", "price",
                                                       "standard_unit_id", "category_id", "brand_id",
                                                       "category_specifications", "variations", "images")
                      if k in body or current is None}
            record["sku"], record["name"] = text("sku"), text("name")
            record["active"] = bool(body.get("active", True))
            record["variations"] = record.get("variations") or []
            record["images"] = record.get("images") or []
            record["category_specifications"] = record.get("category_specifications") or []
            if not _reais(body.get("price")):
                problems.append(("price", "preço em reais: um número >= 0 com até duas casas decimais"))
            if body.get("standard_unit_id") not in self._data["measure-units"]:
                problems.append(("standard_unit_id", f"unidade {body.get('standard_unit_id')!r} não existe"))
            if body.get("category_id") is not None and body["category_id"] not in self._data["categories"]:
                problems.append(("category_id", f"categoria {body['category_id']!r} não existe"))
            skus = [record["sku"]] + [str(v.get("sku") or "") for v in record["variations"] if isinstance(v, dict)]
            for i, variation in enumerate(record["variations"]):
                if not isinstance(variation, dict) or not variation.get("sku"):
                    problems.append((f"variations[{i}].sku", "campo obrigatório"))
                elif not _reais(variation.get("price")):
                    problems.append((f"variations[{i}].price", "preço em reais: um número >= 0"))
            if len(set(skus)) != len(skus):
                problems.append(("sku", "SKUs repetidos no produto"))
            if problems:
                return record, _error(400, "Dados inválidos.", problems)
            taken = {p["sku"]: p["id"] for p in self._data["products"].values() if p["id"] != own}
            taken.update({v["sku"]: p["id"] for p in self._data["products"].values() if p["id"] != own
                          for v in p.get("variations") or []})
            clash = next((s for s in skus if s in taken), None)
            if clash is not None:
                return record, _error(409, f"Já existe um produto com o SKU {clash} (produto {taken[clash]}).",
                                      [("sku", "SKU já cadastrado")])
            if current is not None:
                known = {v["sku"]: v["id"] for v in current.get("variations") or []}
                for variation in record["variations"]:
                    if variation["sku"] in known:
                        variation["id"] = known[variation["sku"]]
            return record, None
        if table == "partners":
            fields = ("name", "type", "fiscal_registration_number", "state_registration", "email", "phone", "mobile",
                      "active", "addresses", "seller_id", "profile_id")
            record = {k: _copy(body.get(k)) for k in fields if k in body or current is None}
            record["name"] = text("name")
            record["active"] = bool(body.get("active", True))
            record["addresses"] = record.get("addresses") or []
            document = "".join(ch for ch in str(body.get("fiscal_registration_number") or "") if ch.isalnum())
            registration = str(body.get("state_registration") or "").strip()
            if not document and not registration:
                problems.append(("fiscal_registration_number", "informe o CPF/CNPJ ou a IE/RG do parceiro"))
            elif document and len(document) not in (11, 14):
                problems.append(("fiscal_registration_number", "CPF (11) ou CNPJ (14) inválido"))
            if problems:
                return record, _error(400, "Dados fiscais obrigatórios.", problems)
            record["fiscal_registration_number"] = document or None
            clash = next((p["id"] for p in self._data["partners"].values()
                          if document and p.get("fiscal_registration_number") == document and p["id"] != own), None)
            if clash is not None:
                return record, _error(409, f"Já existe um parceiro com o documento (parceiro {clash}).",
                                      [("fiscal_registration_number", "documento já cadastrado")])
            return record, None
        if table in ("payment-methods", "categories", "variations"):
            record = {"name": text("name"), "active": bool(body.get("active", True))}
            if table == "variations":
                record["values"] = _copy(body.get("values") or [])
            if problems:
                return record, _error(400, "Dados inválidos.", problems)
            clash = next((m["id"] for m in self._data[table].values()
                          if m["name"].casefold() == record["name"].casefold() and m["id"] != own), None)
            if clash is not None:
                return record, _error(409, f"Já existe {record['name']!r} ({clash}).", [("name", "nome já cadastrado")])
            return record, None
        return self._validated_order(body)

    def _validated_order(self, body: dict[str, Any]) -> tuple[dict[str, Any], JSONResponse | None]:
        """``POST /api/sales/sales``: an order created by an integration (items and payments assumed)."""
        problems: list[tuple[str, str]] = []
        if body.get("partner_id") not in self._data["partners"]:
            problems.append(("partner_id", f"parceiro {body.get('partner_id')!r} não existe"))
        items, payments = [], []
        for i, item in enumerate(body.get("items") or []):
            product = self._data["products"].get(_int(item.get("product_id"))) if isinstance(item, dict) else None
            if product is None:
                problems.append((f"items[{i}].product_id", "produto não existe"))
                continue
            if not _reais(item.get("unit_value")):
                problems.append((f"items[{i}].unit_value", "valor em reais"))
                continue
            items.append({"productId": product["id"], "productVariationId": item.get("product_variation_id"),
                          "sku": item.get("sku") or product["sku"], "name": item.get("name") or product["name"],
                          "unitValue": item["unit_value"], "quantity": item.get("quantity", 1),
                          "unit": item.get("unit") or "UN", "discount": item.get("discount") or 0})
        if not body.get("items"):
            problems.append(("items", "o pedido precisa de itens"))
        for i, payment in enumerate(body.get("payments") or []):
            if not isinstance(payment, dict) or payment.get("payment_method_id") not in self._data["payment-methods"]:
                problems.append((f"payments[{i}].payment_method_id", "forma de pagamento não existe"))
                continue
            payments.append({"paymentMethodId": payment["payment_method_id"], "amount": payment.get("amount"),
                             "installments": payment.get("installments") or 1})
        status_id = body.get("status_id")
        if status_id is not None and status_id not in self._data["status"]:
            problems.append(("status_id", f"status {status_id!r} não existe"))
        if not _reais(body.get("total_value")):
            problems.append(("total_value", "valor em reais"))
        external = body.get("external_id")
        if external and any(o.get("external_id") == external for o in self._data["orders"].values()):
            return {}, _error(409, f"Já existe um pedido com external_id {external}.", [("external_id", "duplicado")])
        if problems:
            return {}, _error(400, "Dados inválidos.", problems)
        first = status_id if status_id is not None else min(self._data["status"])
        return {"external_id": external, "origin": "API", "company": {"id": body.get("company_id")},
                "company_id": body.get("company_id"), "partner_id": body["partner_id"],
                "seller_id": body.get("seller_id"), "negotiation_date": body.get("created_at") or self._stamp(),
                "total_value": body["total_value"], "order_value": body.get("full_value") or body["total_value"],
                "discount_value": body.get("discount_value") or 0, "freight_value": body.get("freight_value") or 0,
                "observation": body.get("observation"), "invoices": [], "items": items, "payments": payments,
                "statuses": [{"status_id": first, "created_at": self._stamp()}]}, None

    # --- HTTP: orders, stock, files ---------------------------------------------------------------------------------

    async def _order_get(self, request: Request) -> Response:
        with self.lock:
            order = self._data["orders"].get(_int(request.path_params["id"]))
            if order is None:
                return _error(404, f"Pedido {request.path_params['id']} não encontrado.")
            return JSONResponse(_copy(order))

    async def _order_status(self, request: Request) -> Response:
        """Assumed ``PUT /api/sales/orders/{id}/status {"status_id"}``: the status must exist and be editable by
        the API; setting the current one changes nothing."""
        body = await _json(request)
        with self.lock:
            order = self._data["orders"].get(_int(request.path_params["id"]))
            if order is None:
                return _error(404, f"Pedido {request.path_params['id']} não encontrado.")
            status = self._data["status"].get(_int((body or {}).get("status_id")))
            if status is None:
                return _error(400, "Status inválido.", [("status_id", "status não encontrado; crie-o em Pedidos > "
                                                                      "Status")])
            if not status.get("can_edit_by_api"):
                return _error(403, f"O status {status['name']!r} não pode ser definido pela API.")
            if order["statuses"][-1]["status_id"] != status["id"]:
                order["statuses"].append({"status_id": status["id"], "created_at": self._stamp()})
                order["updated_at"] = self._stamp()
            return JSONResponse(_copy(order))

    async def _order_invoice(self, request: Request) -> Response:
        """Assumed ``POST /api/sales/orders/{id}/invoices``: an NF-e key, its number and series, and the XML as a
        resource file; the same key twice is a 409."""
        body = await _json(request)
        with self.lock:
            order = self._data["orders"].get(_int(request.path_params["id"]))
            if order is None:
                return _error(404, f"Pedido {request.path_params['id']} não encontrado.")
            if not isinstance(body, dict):
                return _error(400, "Corpo inválido.", [("body", "esperado um objeto JSON")])
            key = str(body.get("invoice_key") or "")
            problems = []
            if len(key) != 44 or not key.isdigit():
                problems.append(("invoice_key", "chave de acesso de 44 dígitos"))
            if body.get("xml_resource_id") is not None and _int(body["xml_resource_id"]) not in \
                    self._data["resource-files"]:
                problems.append(("xml_resource_id", "arquivo não existe"))
            if problems:
                return _error(400, "Dados inválidos.", problems)
            if any(i["invoice_key"] == key for i in order["invoices"]):
                return _error(409, "Nota já vinculada ao pedido.", [("invoice_key", "duplicada")])
            invoice = {"id": next(self._ids), "invoice_key": key, "number": body.get("number"),
                       "series": body.get("series"), "xml_resource_id": body.get("xml_resource_id"),
                       "xml_file_name": body.get("xml_file_name"), "danfe_resource_id": None}
            order["invoices"].append(invoice)
            order["updated_at"] = self._stamp()
            return JSONResponse(_copy(invoice), status_code=201)

    async def _upload(self, request: Request) -> Response:
        """``POST /api/sales/resource-files``, multipart with the field ``files``."""
        raw = await request.body()
        kind = request.headers.get("content-type", "")
        message = email.parser.BytesParser().parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
        files = [part for part in message.get_payload() or [] if not isinstance(part, str)
                 and part.get_param("name", header="content-disposition") == "files"] \
            if message.is_multipart() else []
        if not files:
            return _error(400, "Nenhum arquivo enviado.", [("files", "envie ao menos um arquivo")])
        with self.lock:
            out = []
            for part in files:
                payload = part.get_payload(decode=True)
                content = payload if isinstance(payload, bytes) else b""
                record_id = self._insert("resource-files", {"name": part.get_filename(), "size": len(content),
                                                            "sha256": hashlib.sha256(content).hexdigest(),
                                                            "content": content.decode("utf-8", "replace")})
                out.append({"id": record_id, "name": part.get_filename()})
            return JSONResponse({"resourceFiles": out}, status_code=201)

    async def _stock_write(self, request: Request) -> Response:
        """``override`` (assumed) sets the balance; ``movement`` (documented) adds ``total`` to it."""
        body = await _json(request)
        override = request.url.path.endswith("/override")
        with self.lock:
            if not isinstance(body, dict):
                return _error(400, "Corpo inválido.", [("body", "esperado um objeto JSON")])
            product = self._data["products"].get(_int(body.get("product_id")))
            problems = []
            if product is None:
                problems.append(("product_id", "produto não existe"))
            variation = body.get("product_variation_id")
            if product is not None and variation is not None and \
                    all(v["id"] != variation for v in product.get("variations") or []):
                problems.append(("product_variation_id", "variação não pertence ao produto"))
            if product is not None and variation is None and product.get("variations"):
                problems.append(("product_variation_id", "produto com variações: informe a variação"))
            warehouse = _int(body.get("warehouse_id"))
            if warehouse not in self._data["warehouses"]:
                problems.append(("warehouse_id", "depósito não existe"))
            total = body.get("total")
            if isinstance(total, bool) or not isinstance(total, int | float):
                problems.append(("total", "quantidade numérica"))
            if problems or product is None:
                return _error(400, "Dados inválidos.", problems)
            key = (product["id"], variation, warehouse)
            row = self._stock.get(key)
            if row is None:
                row = self._stock[key] = {"id": next(self._ids), "type": "PRODUCT", "product_id": product["id"],
                                          "product_variation_id": variation, "warehouse_id": warehouse,
                                          "company_id": body.get("company_id"), "active": True, "total": 0,
                                          "reserved": 0, "available": 0, "updated_at": self._stamp()}
            new = Decimal(str(total)) if override else Decimal(str(row["total"])) + Decimal(str(total))
            if Decimal(str(row["total"])) != new:
                row["total"] = float(new)
                row["available"] = float(new - Decimal(str(row["reserved"])))
                row["updated_at"] = self._stamp()
            return JSONResponse(_copy(row))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None
