"""An in-memory emulator of Plugg.to's API, served over real HTTP by :func:`hub.sandbox.serve`.

It enforces what the public material says (README): OAuth password and authorization-code grants with 1 h access
tokens and single-use refresh tokens, ``{"Product": ...}`` / ``{"Order": ...}`` envelopes, lists with ``limit``,
``next`` (the last id read) and ``modified=FROMtoTO`` (by day), SKU upserts, stock updates, orders with shipments,
and the NF-e rules: a shipment without an ``id`` is a NEW delivery (the duplicate-delivery trap, counted in
``duplicate_deliveries``), and a change Plugg.to already holds answers ``not_updated``. Orders are created with
``POST /orders`` and found with ``?external=`` / ``?original_id=``; Plugg.to issues NF-e as the seller's system
(``/invoices``, :mod:`hub_pluggto.sandbox.issuer`: the manual's four rejection causes, a second note for one order
counted in ``duplicate_invoices``); ``notify`` posts a notification to the URL registered for the connection; a SKU
can be put on Amazon's FBA Onsite stock (``mark_fba``). Validation, the rate limit, the 429 body and the invoice
resource are the README's assumptions. Every touch of the state happens under ``self.lock``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
from hub.sandbox import FAULTS, SandboxBase, SandboxSettings
from hub.sandbox.documents import cnpj, cpf, ean13, wrong_check_digit
from hub.sandbox.oauth import AuthorizationCode, OAuthError, PasswordGrant, TokenStore, WallClock, check_client
from hub.sandbox.ratelimit import Limits, Rule, TokenBucket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub_pluggto.sandbox import issuer

STREAMS = ("products", "sales", "stock", "prices", "invoices")
STATUSES = ("pending", "paid", "approved", "waiting_invoice", "invoiced", "invoice_error", "shipping_informed",
            "shipped", "shipping_error", "delivered", "canceled", "under_review", "partial_payment")
MAX_LIMIT = 100
FUTURE_STAMP = "2099-01-01T00:00:00.000Z"
Handler = Callable[[Request], Awaitable[Response]]
STREETS = [("Rua Augusta", "Consolação", "São Paulo", "SP", "01305000"),
           ("Avenida Afonso Pena", "Centro", "Belo Horizonte", "MG", "30130005"),
           ("Rua XV de Novembro", "Centro", "Curitiba", "PR", "80020310")]


def _stamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def error(status: int, kind: str, details: str, message: str = "An error occurred, see details for more "
                                                                 "information.",
          headers: dict[str, str] | None = None) -> JSONResponse:
    """Plugg.to's error envelope (update-invoice page)."""
    return JSONResponse({"error": True, "type": kind, "message": message, "details": details}, status_code=status,
                        headers=headers)


def _public(note: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {k: v for k, v in _copy(note).items() if k != "due_at"}
    return shown


def invalid(field: str, problem: str) -> JSONResponse:
    return error(400, "invalid_data", f"field {field}: {problem}", message="Invalid data")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _digits(value: Any, length: int) -> bool:
    text = str(value)
    return text.isdigit() and len(text) == length


class PluggtoSettings(SandboxSettings):
    rate_per_second: float | None = 10
    """Assumed (Plugg.to publishes none): 10 requests a second per account."""
    nfe_delay_seconds: float = 0.0
    """How long an NF-e Plugg.to issues stays ``processing`` (Plugg.to - Amazon - SEFAZ is not instantaneous)."""


class PluggtoSandbox(SandboxBase):
    """One Plugg.to account: OAuth, SKUs, orders with shipments, a rate limit and faults."""

    Settings = PluggtoSettings
    streams = STREAMS
    fault_kinds = (*FAULTS, "not_updated")
    """``not_updated``: the next write is answered as a change Plugg.to already holds (another writer got there
    between the plugin's read and its write)."""
    random_fault_kinds = FAULTS

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.settings: PluggtoSettings
        self.client_id, self.client_secret = "pluggto-client", "pluggto-secret"
        self.username, self.password = "api-user-1234", "api-password-5678"
        self.user_id = "129"
        self.webhook_token = "whk-7f3a9c2e-pluggto-sandbox"
        self.tokens = TokenStore(WallClock(), access_ttl=self.settings.token_ttl_seconds)
        self._login = PasswordGrant(self.tokens, self.username, self.password,
                                    message="User credentials are invalid")
        self._code = AuthorizationCode(self.tokens)
        self._limits = Limits(self._rules)
        self._ids = itertools.count(1)
        self.products: dict[str, dict[str, Any]] = {}
        self._sku_index: dict[str, str] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self._last_page: dict[str, bytes] = {}
        self._serial = 0
        self.duplicate_deliveries = 0
        """Shipments created by an order update that sent a shipment without its id (the trap the docs warn of)."""
        self.invoices: dict[str, dict[str, Any]] = {}
        self.duplicate_invoices = 0
        """Notes submitted for an order that already had one (a second NF-e for the same sale)."""
        self.channel_tokens: dict[str, datetime] = {}
        """Channel -> when the seller's integration token with it expires (Amazon's lasts a year)."""
        self.notify_url: str | None = None
        self.notify_log: list[dict[str, Any]] = []
        self._nfe_numbers = itertools.count(1)
        self.nfe_files: dict[str, str] = {}
        """Access key -> the authorized note's XML, served at each note's ``files`` URL (a public link, assumed)."""
        self.files_url = "https://files.plugg.to/nfe"
        """Where the notes' XML files are published; the sandbox's own ``/files/nfe`` once it is served."""
        self.app = Starlette(routes=[
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/users", self._api(self._users), methods=["GET"]),
            Route("/products", self._api(self._list_products), methods=["GET"]),
            Route("/products/{id}", self._api(self._product), methods=["GET"]),
            Route("/skus/{sku}/stock", self._api(self._stock), methods=["PUT"]),
            Route("/skus/{sku}", self._api(self._sku), methods=["GET", "PUT", "DELETE"]),
            Route("/orders", self._api(self._orders), methods=["GET", "POST"]),
            Route("/orders/{id}", self._api(self._order), methods=["GET", "PUT"]),
            Route("/invoices", self._api(self._invoices), methods=["GET", "POST"]),
            Route("/invoices/{id}", self._api(self._invoice), methods=["GET"]),
            Route("/invoices/{id}/resend", self._api(self._resend), methods=["POST"]),
            Route("/files/nfe/{key}.xml", self._nfe_file, methods=["GET"]),
        ])

    # --- settings and the protocol ---------------------------------------------------------------------------------

    def _rules(self, key: Hashable) -> Sequence[Rule]:
        return [TokenBucket(self.settings.rate_per_second)]

    def limits_changed(self) -> None:
        self._limits.reset()

    def connection(self, base_url: str) -> dict[str, Any]:
        self.files_url = f"{base_url.rstrip('/')}/files/nfe"
        rate = self.settings.rate_per_second
        return {"options": {"base_url": base_url, "rate_per_second": rate if rate is not None else 1000,
                            "user_id": self.user_id,
                            # a note settles after nfe_delay_seconds here (not "up to an hour"): read it that often
                            "nfe_poll_seconds": max(0.2, self.settings.nfe_delay_seconds)},
                "credentials": {"client_id": self.client_id, "client_secret": self.client_secret,
                                "username": self.username, "password": self.password,
                                "webhook_token": self.webhook_token}}

    def seed(self, stream: str, count: int) -> list[str]:
        with self.lock:
            if stream == "products":
                return [self._insert_product(self._synthetic_product()) for _ in range(count)]
            if stream == "sales":
                return [self._insert_order(self._synthetic_order()) for _ in range(count)]
            if stream == "invoices":
                return [self._issued(self._insert_order(self._synthetic_order())) for _ in range(count)]
        raise ValueError(f"pluggto sandbox cannot seed {stream!r} (products, sales, invoices)")

    def seed_invalid(self, stream: str) -> str:
        """A product with an EAN whose check digit is wrong; an order whose payer CPF's is."""
        with self.lock:
            if stream == "products":
                product = self._synthetic_product()
                product["ean"] = wrong_check_digit(product["ean"])
                return self._insert_product(product)
            if stream == "sales":
                order = self._synthetic_order()
                order["payer_cpf"] = wrong_check_digit(order.get("payer_cpf") or cpf("123456789"))
                order.pop("payer_cnpj", None)
                return self._insert_order(order)
            if stream == "invoices":
                note_id = self._issued(self._insert_order(self._synthetic_order()))
                note = self.invoices[note_id]
                note["nfe_key"] = wrong_check_digit(note["nfe_key"])
                return note_id
        raise ValueError(f"pluggto sandbox has no invalid {stream!r} record")

    def seed_future(self, stream: str) -> str:
        with self.lock:
            if stream == "products":
                return self._insert_product({**self._synthetic_product(), "modified": FUTURE_STAMP})
            if stream == "sales":
                return self._insert_order({**self._synthetic_order(), "modified": FUTURE_STAMP})
            if stream == "invoices":
                note_id = self._issued(self._insert_order(self._synthetic_order()))
                self.invoices[note_id]["modified"] = FUTURE_STAMP
                return note_id
        raise ValueError(f"pluggto sandbox has no dated {stream!r} record")

    def touch(self, stream: str, external_id: str) -> None:
        with self.lock:
            self._serial += 1
            if stream == "products":
                record = self.products[external_id]
                record["name"] = f"{record['name'].split(' (rev')[0]} (rev {self._serial})"
            elif stream == "sales":
                record = self.orders[external_id]
                record["status"] = "delivered" if record["status"] != "delivered" else "shipped"
            elif stream == "invoices":
                record = self.invoices[external_id]
                record["nfe_status"] = "canceled" if record["nfe_status"] == "authorized" else "authorized"
            else:
                raise ValueError(f"pluggto sandbox cannot touch {stream!r}")
            record["modified"] = _stamp()

    def age(self, stream: str, seconds: float) -> None:
        table = {"products": self.products, "sales": self.orders, "invoices": self.invoices}.get(stream)
        if table is None:
            raise NotImplementedError(f"pluggto sandbox has no dated {stream!r}")
        with self.lock:
            for record in table.values():
                for name in ("created", "modified"):
                    record[name] = _stamp(_parse(record[name]) - timedelta(seconds=seconds))

    def records(self, stream: str) -> list[dict[str, Any]]:
        with self.lock:
            if stream == "products":
                return [_copy(p) for _, p in sorted(self.products.items())]
            if stream == "sales":
                return [_copy(o) for _, o in sorted(self.orders.items())]
            if stream == "stock":
                return [{"sku": sku, "warehouse": code, "quantity": qty} for sku, code, qty, _ in self._skus("stock")]
            if stream == "prices":
                return [{"sku": sku, "price_list": code, "price": price} for sku, code, price, _ in
                        self._skus("prices")]
            if stream == "issued":
                return [_copy(n) for _, n in sorted(self.invoices.items())]
            if stream == "invoices":
                return [{"order": o["id"], "shipment": s["id"], "nfe_key": s["nfe_key"],
                         "nfe_number": s.get("nfe_number"), "nfe_serie": s.get("nfe_serie"),
                         "nfe_link": s.get("nfe_link")}
                        for _, o in sorted(self.orders.items()) for s in o["shipments"] if s.get("nfe_key")]
        raise ValueError(f"pluggto sandbox has no stream {stream!r} (streams: {', '.join(STREAMS)})")

    def expected_pull(self, stream: str) -> list[dict[str, Any]]:
        """A pull of ``invoices`` reads the notes Plugg.to issued (authorized or canceled), not the notes attached
        to shipments by a push (what ``records("invoices")`` lists)."""
        if stream != "invoices":
            return self.records(stream)
        with self.lock:
            return [_public(n) for _, n in sorted(self.invoices.items())
                    if n["nfe_status"] in ("authorized", "canceled")]

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"products": len(self.products), "orders": len(self.orders),
                    "invoiced orders": sum(1 for o in self.orders.values() if o["status"] == "invoiced"),
                    "notes issued": sum(1 for n in self.invoices.values() if n["nfe_status"] == "authorized"),
                    "duplicate deliveries": self.duplicate_deliveries,
                    "duplicate invoices": self.duplicate_invoices}

    # --- extras for tests and demos ------------------------------------------------------------------------------

    def authorization_code(self) -> str:
        """A ``pluggtocode``, as Plugg.to appends to the app's URL when a merchant installs it."""
        with self.lock:
            return self.tokens.new_code()

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.expire_access()

    def create_sku(self, sku: str, **fields: Any) -> str:
        """A product typed into the panel (no validation)."""
        with self.lock:
            base = self._synthetic_product()
            return self._insert_product({**base, "sku": sku, "variations": [], **fields})

    def create_order(self, **fields: Any) -> str:
        with self.lock:
            return self._insert_order({**self._synthetic_order(), **fields})

    def sku(self, sku: str) -> dict[str, Any]:
        with self.lock:
            found = self._find(sku)
            if found is None:
                raise KeyError(sku)
            record: dict[str, Any] = _copy(found[1] if found[1] is not None else found[0])
            return record

    def order(self, order_id: str) -> dict[str, Any]:
        with self.lock:
            record: dict[str, Any] = _copy(self.orders[order_id])
            return record

    def edit_order(self, order_id: str, **fields: Any) -> None:
        """The seller corrects an order in the panel (e.g. completes the customer's address)."""
        with self.lock:
            self.orders[order_id].update(fields)
            self.orders[order_id]["modified"] = _stamp()

    def edit_sku(self, sku: str, **fields: Any) -> None:
        """The seller corrects a SKU in the panel (e.g. fills its CEST)."""
        with self.lock:
            found = self._find(sku)
            if found is None:
                raise KeyError(sku)
            found[0].update(fields)
            found[0]["modified"] = _stamp()

    def set_channel_token(self, channel: str, expires_at: datetime) -> None:
        """When the seller's integration token with ``channel`` expires (Amazon's lasts a year)."""
        with self.lock:
            self.channel_tokens[channel] = expires_at

    def mark_fba(self, sku: str, quantity: int = 5, code: str = "amazon_fba") -> None:
        """The SKU is also sold through Amazon's logistics: a ``stock_table`` row of Amazon's FBA Onsite stock (the
        shape Plugg.to gives it is an assumption, README)."""
        with self.lock:
            found = self._find(sku)
            if found is None:
                raise KeyError(sku)
            holder = found[1] if found[1] is not None else found[0]
            rows = holder.setdefault("stock_table", [])
            rows[:] = [r for r in rows if r.get("code") != code]
            rows.append({"id": f"{code}-1", "code": code, "type": "supplier", "quantity": quantity,
                         "channel": "amazon", "logistic": "fba"})
            found[0]["modified"] = _stamp()

    def notify(self, kind: str, resource_id: str, action: str = "updated", changes: dict[str, bool] | None = None
               ) -> int:
        """POST a notification ``{type, id, action, user, changes}`` to ``notify_url`` (the URL registered in
        Plugg.to, with the connection's token in its query string); the status code (0: no answer)."""
        if not self.notify_url:
            raise RuntimeError("set notify_url first")
        body = {"type": kind, "id": resource_id, "action": action, "user": int(self.user_id),
                "changes": changes or {}}
        try:
            status = httpx.post(self.notify_url, json=body, timeout=5.0).status_code
        except httpx.HTTPError:
            status = 0
        self.notify_log.append({**body, "status": status})
        return status

    def issue(self, order_id: str) -> str:
        """Plugg.to issues the order's NF-e (as its panel does for an Amazon FBA Onsite order); the note's id."""
        with self.lock:
            note: dict[str, Any] = {"id": self._new_id(), "reference_order": order_id, "nfe_type": "sale",
                                    "original_id": self.orders[order_id].get("original_id"), "number": None,
                                    "nfe_serie": None, "nfe_key": None, "nfe_date": None, "files": [], "issues": [],
                                    "created": _stamp()}
            self.invoices[note["id"]] = note
            self._submit(note)
            return str(note["id"])

    def _issued(self, order_id: str) -> str:
        """An authorized note for the order (lock held); its id."""
        order = self.orders[order_id]
        for item in order["items"]:
            if self._find(item["sku"]) is None:
                self._insert_product({**self._synthetic_product(), "sku": item["sku"], "variations": []})
        note: dict[str, Any] = {"id": self._new_id(), "reference_order": order_id, "nfe_type": "sale",
                                "original_id": order.get("original_id"), "number": None, "nfe_serie": None,
                                "nfe_key": None, "nfe_date": None, "files": [], "issues": [], "created": _stamp(),
                                "nfe_status": "processing", "due_at": 0}
        self.invoices[note["id"]] = note
        self._settle(note)
        return str(note["id"])

    def resends(self) -> int:
        """How many times a rejected note was sent again."""
        return sum(1 for r in self.request_log if r["method"] == "POST" and r["path"].endswith("/resend"))

    def sellable_skus(self) -> list[str]:
        """The SKUs an order can sell: variations, and products without variations."""
        with self.lock:
            return [v["sku"] if v is not None else p["sku"] for _, p in sorted(self.products.items())
                    for v in (p.get("variations") or [None])]

    def demo_orders(self, count: int = 3, channel: str = "mercadolivre") -> str:
        """Buyers order on a channel: orders of the catalog's products without variations; their ids,
        comma-separated."""
        with self.lock:
            skus = [p["sku"] for _, p in sorted(self.products.items()) if not p.get("variations")]
        made = []
        for i in range(count):
            chosen = skus[(i * 3) % len(skus)] if skus else f"AVULSO-{i}"
            made.append(self.place_order([chosen], channel=channel))
        return ", ".join(made)

    def place_order(self, skus: list[str], channel: str = "mercadolivre", status: str = "approved",
                    quantity: int = 1, **fields: Any) -> str:
        """An order from ``channel`` for ``skus`` at their Plugg.to price, paid by credit card."""
        with self.lock:
            order = self._synthetic_order()
            items = []
            for sku in skus:
                found = self._find(sku)
                holder = (found[1] or found[0]) if found is not None else {}
                price = Decimal(str(holder.get("special_price") or holder.get("price") or "19.90"))
                items.append({"sku": sku, "name": holder.get("name") or sku, "quantity": quantity,
                              "price": float(price), "total": float(price * quantity), "discount": 0})
            total = sum(Decimal(str(i["total"])) for i in items) + Decimal(str(order["shipping"]))
            order.update(items=items, channel=channel, status=status, subtotal=float(total - Decimal(str(
                order["shipping"]))), total=float(total), total_paid=float(total))
            order["payments"] = [{"payment_type": "credit", "payment_method": "Cartão de crédito",
                                  "payment_installments": 1, "payment_total": float(total)}]
            order["shipments"][0]["shipping_items"] = [{"sku": i["sku"], "quantity": i["quantity"]} for i in items]
            order.update(fields)
            return self._insert_order(order)

    def set_order_status(self, order_id: str, status: str) -> None:
        """The channel moves the order (e.g. the buyer cancels it)."""
        with self.lock:
            self.orders[order_id]["status"] = status
            self.orders[order_id]["modified"] = _stamp()

    def demo_cancel(self) -> str:
        """The buyer cancels the oldest open order on its channel; its id."""
        with self.lock:
            order = next(o for _, o in sorted(self.orders.items()) if o["status"] not in ("canceled", "delivered"))
            order["status"] = "canceled"
            order["modified"] = _stamp()
            return str(order["id"])

    def demo_hybrid(self) -> str:
        """A SKU of the catalog is also sold through Amazon's FBA Onsite; its SKU."""
        sku = self.sellable_skus()[0]
        self.mark_fba(sku)
        return sku

    # --- state (lock held) ---------------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{next(self._ids):024x}"

    def _skus(self, what: str) -> list[tuple[str, str, Any, dict[str, Any]]]:
        rows: list[tuple[str, str, Any, dict[str, Any]]] = []
        for _, product in sorted(self.products.items()):
            for holder in [product, *product.get("variations", [])]:
                if what == "stock":
                    rows.append((holder["sku"], "default", holder.get("quantity", 0), holder))
                    rows.extend((holder["sku"], r["code"], r.get("quantity", 0), holder)
                                for r in holder.get("stock_table", []))
                else:
                    rows.append((holder["sku"], "default", [holder.get("price"), holder.get("special_price")],
                                 holder))
                    rows.extend((holder["sku"], r["code"], [r.get("price"), r.get("special_price")], holder)
                                for r in holder.get("price_table", []))
        return rows

    def _find(self, sku: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The product holding ``sku`` (and the variation that is it), through the SKU index: a catalog of tens of
        thousands of SKUs is looked up in constant time (the benchmarks)."""
        product = self.products.get(self._sku_index.get(sku, ""))
        if product is None:
            return None
        if product["sku"] == sku:
            return product, None
        for variation in product.get("variations", []):
            if variation["sku"] == sku:
                return product, variation
        return None

    def _index(self, product: dict[str, Any]) -> None:
        self._sku_index[str(product["sku"])] = str(product["id"])
        for variation in product.get("variations", []):
            self._sku_index[str(variation["sku"])] = str(product["id"])

    def _insert_product(self, product: dict[str, Any]) -> str:
        product.setdefault("id", self._new_id())
        product.setdefault("created", _stamp())
        product.setdefault("modified", product["created"])
        self.products[product["id"]] = product
        self._index(product)
        return str(product["id"])

    def _insert_order(self, order: dict[str, Any]) -> str:
        order.setdefault("id", self._new_id())
        order.setdefault("created", _stamp())
        order.setdefault("modified", order["created"])
        for shipment in order.get("shipments", []):
            shipment.setdefault("id", self._new_id())
        self.orders[order["id"]] = order
        return str(order["id"])

    def _synthetic_product(self) -> dict[str, Any]:
        self._serial += 1
        n = self._serial
        sku = f"PLG-{n:05d}"
        grid = n % 4 == 0
        return {
            "sku": sku, "name": f"Produto Plugg {n}", "price": 20 + n % 50 + 0.9, "special_price": None,
            "quantity": n % 30, "ean": ean13(f"789{n:09d}"), "available": 1, "brand": "Marca",
            "ncm": "61091000", "nbm": "61091000", "cest": "2806300", "origin": 0,
            "categories": [{"name": "Moda > Camisetas"}],
            "photos": [{"url": f"https://img.example/{sku}.jpg", "order": 0}],
            "attributes": [{"code": "material", "label": "Material", "value": {"code": "algodao",
                                                                              "label": "Algodão"}}],
            "variations": [{"sku": f"{sku}-{size}", "name": f"Produto Plugg {n} {size}", "quantity": 3,
                            "price": 20 + n % 50 + 0.9, "ean": ean13(f"780{n * 10 + i:09d}"),
                            "attributes": [{"code": "size", "label": "Tamanho",
                                            "value": {"code": size, "label": size}}]}
                           for i, size in enumerate(("P", "M"))] if grid else [],
            "stock_table": [], "price_table": [],
        }

    def _synthetic_order(self) -> dict[str, Any]:
        self._serial += 1
        n = self._serial
        street, district, city, uf, zip_code = STREETS[n % len(STREETS)]
        skus = [p["sku"] for p in itertools.islice(self.products.values(), 20)]
        items = []
        for i in range(1 + n % 2):
            price = Decimal(15 + (n + i) % 40) + Decimal("0.5")
            qty = 1 + i
            sku = skus[(n + i) % len(skus)] if skus else f"AVULSO-{(n + i) % 9:02d}"
            items.append({"sku": sku, "name": f"Item {sku}", "quantity": qty, "price": float(price),
                          "total": float(price * qty), "discount": 0})
        subtotal = sum(Decimal(str(i["total"])) for i in items)
        shipping = Decimal("12.90") if n % 3 else Decimal("0")
        total = subtotal + shipping
        company = n % 5 == 0
        masked_cpf = cpf(f"{(123456 + n * 7919) % 10**9:09d}")
        masked_cpf = f"{masked_cpf[:3]}.{masked_cpf[3:6]}.{masked_cpf[6:9]}-{masked_cpf[9:]}"
        order: dict[str, Any] = {
            "external": f"AMZ-{700000 + n}", "original_id": f"702-{n:07d}", "channel": "amazon" if n % 2 else
            "mercadolivre", "status": STATUSES[n % 4 + 1], "subtotal": float(subtotal), "shipping": float(shipping),
            "discount": 0, "total": float(total), "total_paid": float(total), "currency": "BRL",
            "payer_name": f"Cliente {n}", "payer_lastname": "Silva", "payer_email": f"cliente{n}@example.com",
            "payer_phone_area": "11", "payer_phone": f"9{n % 10**8:08d}",
            "payer_address": street, "payer_address_number": str(100 + n), "payer_neighborhood": district,
            "payer_city": city, "payer_state": uf, "payer_zipcode": f"{zip_code[:5]}-{zip_code[5:]}",
            "receiver_name": f"Cliente {n}", "receiver_lastname": "Silva", "receiver_address": street,
            "receiver_address_number": str(100 + n), "receiver_neighborhood": district, "receiver_city": city,
            "receiver_state": uf, "receiver_zipcode": zip_code,
            "items": items,
            "payments": [{"payment_type": "credit", "payment_method": "Cartão de crédito",
                          "payment_installments": 1 + n % 3, "payment_total": float(total)}],
            "shipments": [{"status": "pending", "shipping_company": "Correios", "shipping_method": "PAC",
                           "nfe_key": None, "nfe_number": None, "nfe_serie": None, "nfe_date": None,
                           "shipping_items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in items]}],
        }
        if company:
            order["payer_cnpj"] = cnpj(f"{(55443322 + n * 7) % 10**8:08d}0001")
            order["payer_razao_social"] = f"Cliente {n} Comércio Ltda"
        else:
            order["payer_cpf"] = masked_cpf
        return order

    # --- OAuth -----------------------------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", errors="replace")
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        with self.lock:
            self.counters.token_calls += 1
            entry: dict[str, Any] = {"method": "POST", "path": "/oauth/token", "grant_type": form.get("grant_type"),
                                     "status": None}
            self.counters.log.append(entry)
            try:
                check_client(form.get("client_id"), form.get("client_secret"), self.client_id, self.client_secret)
                if form.get("grant_type") == "authorization_code":
                    issued = self._code.grant(form)
                elif form.get("grant_type") in ("password", "refresh_token"):
                    issued = self._login.grant(form)
                else:
                    raise OAuthError(400, "invalid_request", "Invalid or missing grant_type parameter")
            except OAuthError as exc:
                entry["status"] = exc.status
                return JSONResponse({"error": exc.error, "error_description": exc.description},
                                    status_code=exc.status)
            entry["status"] = 200
            return JSONResponse({"access_token": issued.access_token, "token_type": "bearer",
                                 "expires_in": issued.expires_in, "refresh_token": issued.refresh_token})

    # --- the gate ----------------------------------------------------------------------------------------------------

    def _api(self, handler: Handler) -> Handler:
        async def gated(request: Request) -> Response:
            with self.lock:
                self.counters.requests += 1
                entry: dict[str, Any] = {"method": request.method, "path": request.url.path,
                                         "query": dict(request.query_params), "status": None}
                self.counters.log.append(entry)
                fault = self.faults.next(request.method)
                if fault == "401":
                    self.tokens.drop_access()
            response = await self._gate(request, handler, fault)
            with self.lock:
                entry["status"] = response.status_code
            return response

        return gated

    async def _gate(self, request: Request, handler: Handler, fault: str | None) -> Response:
        if fault == "500":
            return error(500, "internal_error", "Injected internal error.")
        if fault == "not_updated":
            return error(400, "not_updated", "Changes not found in the order")
        if fault == "429":
            return error(429, "too_many_requests", "Too many requests (injected).", message="Too many requests",
                         headers={"Retry-After": "1"})
        await self.delay(fault)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            token = request.query_params.get("access_token", "")
        with self.lock:
            why = self.tokens.check(token) if token else "invalid"
            if why is not None:
                return error(401, "unauthorized", "Access token expired" if why == "expired" else
                             "Invalid access token", message="Unauthorized")
            throttled = self._limits.take(self.tokens.clock.time())
            if throttled is not None:
                self.counters.throttled += 1
                return error(429, "too_many_requests", f"At most {self.settings.rate_per_second:g} requests per "
                                                       "second", message="Too many requests",
                             headers={"Retry-After": str(throttled.retry_after)})
        response = await handler(request)
        if fault == "timeout-after-write":
            await self.answer_late()
        return response

    # --- resources ---------------------------------------------------------------------------------------------------

    async def _users(self, request: Request) -> Response:
        return JSONResponse({"data": {"id": int(self.user_id), "name": "Loja Sandbox",
                                      "email": "loja@example.com", "status": "active"}})

    def _listing(self, request: Request, table: dict[str, dict[str, Any]], key: str,
                 by_modified: bool) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", "10"))
            page = int(q["page"]) if q.get("page") else None
        except ValueError:
            return invalid("limit", "limit and page must be integers")
        if not 1 <= limit <= MAX_LIMIT:
            return invalid("limit", f"limit must be between 1 and {MAX_LIMIT}")
        window = q.get("modified")
        low = high = None
        if window:
            try:
                first, _, last = window.partition("to")
                low, high = datetime.fromisoformat(first).date(), datetime.fromisoformat(last).date()
            except ValueError:
                return invalid("modified", "use modified=YYYY-MM-DDtoYYYY-MM-DD")
        path = request.url.path
        with self.lock:
            if self.faults.repeat_armed and path in self._last_page:
                self.faults.take_repeat()
                return Response(self._last_page[path], media_type="application/json")
            rows = list(table.values())
            if low is not None and high is not None:
                rows = [r for r in rows if low <= _parse(r["modified"]).date() <= high]
            for name in ("sku", "status", "external", "original_id", "channel", "reference_order", "nfe_status"):
                if q.get(name):
                    rows = [r for r in rows if str(r.get(name)) in q[name].split(",")]
            if by_modified and q.get("orderby") == "modified":
                rows.sort(key=lambda r: (_parse(r["modified"]), r["id"]),
                          reverse=q.get("orderdirection") == "desc")
            else:
                rows.sort(key=lambda r: r["id"])
            total = len(rows)
            after = q.get("next")
            if after:
                ids = [r["id"] for r in rows]
                rows = rows[ids.index(after) + 1:] if after in ids else [r for r in rows if r["id"] > after]
            elif page:
                rows = rows[(page - 1) * limit:]
            shown = rows[:limit]
            response = JSONResponse({"total": total, "showing": len(shown), "limit": limit,
                                     "result": [{key: _public(r)} for r in shown]})
            self._last_page[path] = bytes(response.body)
            return response

    async def _list_products(self, request: Request) -> Response:
        return self._listing(request, self.products, "Product", by_modified=False)

    async def _orders(self, request: Request) -> Response:
        if request.method == "GET":
            return self._listing(request, self.orders, "Order", by_modified=True)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return invalid("body", "the body must be JSON")
        with self.lock:
            problem = self._validate_new_order(body)
            if problem is not None:
                return problem
            order = _copy(body)
            order.pop("id", None)
            order.setdefault("status", "pending")
            shipments = order.get("shipments") or [{"status": "pending", "shipping_items": [
                {"sku": i["sku"], "quantity": i["quantity"]} for i in order["items"]]}]
            order["shipments"] = [{k: v for k, v in sh.items() if k != "id"} for sh in shipments]
            self._insert_order(order)
            return JSONResponse({"Order": _copy(order)}, status_code=201)

    def _validate_new_order(self, body: Any) -> Response | None:
        """What the sandbox refuses on ``POST /orders`` (assumed: Plugg.to's validator is not public, README)."""
        if not isinstance(body, dict):
            return invalid("body", "the body must be a JSON object")
        if body.get("status", "pending") not in STATUSES:
            return invalid("status", f"status must be one of {', '.join(STATUSES)}")
        items = body.get("items")
        if not isinstance(items, list) or not items:
            return invalid("items", "an order needs at least one item")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not item.get("sku"):
                return invalid(f"items[{i}].sku", "every item needs a sku")
            if not _number(item.get("quantity")) or not item["quantity"]:
                return invalid(f"items[{i}].quantity", "quantity must be a number > 0")
            if not _number(item.get("price")):
                return invalid(f"items[{i}].price", "price must be a number >= 0")
        if not str(body.get("payer_name") or body.get("receiver_name") or "").strip():
            return invalid("payer_name", "the order needs the payer's name")
        for name in ("total", "subtotal", "shipping", "discount"):
            if body.get(name) is not None and not _number(body[name]):
                return invalid(name, f"{name} must be a number >= 0")
        return None

    # --- Plugg.to as the NF-e issuer -----------------------------------------------------------------------------

    def _settle(self, note: dict[str, Any]) -> None:
        """A submitted note, once its delay has passed: authorized (and attached to the order's first shipment,
        the order moved to ``invoiced``) or rejected with every cause in ``issues`` (lock held)."""
        if note["nfe_status"] != "processing" or self.tokens.clock.time() < note["due_at"]:
            return
        order = self.orders[note["reference_order"]]
        holders: dict[str, dict[str, Any] | None] = {}
        for item in order.get("items") or []:
            sku = str((item.get("variation") or {}).get("sku") or item.get("sku") or "")
            found = self._find(sku)
            holders[sku] = None if found is None else {
                **{k: found[0].get(k) for k in ("ncm", "nbm", "cest", "origin")},
                **{k: v for k, v in (found[1] or {}).items() if k in ("ncm", "nbm", "cest", "origin") and v}}
        now = datetime.now(UTC)
        issues = issuer.problems(order, holders, self.channel_tokens.get(str(order.get("channel"))), now)
        note["modified"] = _stamp()
        if issues:
            note.update(nfe_status="rejected", issues=issues)
            return
        number = next(self._nfe_numbers)
        local = now.astimezone(timezone(timedelta(hours=-3)))  # the key's AAMM is the emission's, Brasília time
        key = issuer.access_key(number, local, int(note["id"], 16))
        self.nfe_files[key] = issuer.nfe_xml(order, holders, key, now)
        note.update(nfe_status="authorized", issues=[], number=str(number), nfe_serie="1", nfe_key=key,
                    nfe_date=_stamp(now), files=[{"url": f"{self.files_url}/{key}.xml",
                                                  "type": "xml_authorization"}])
        order["status"] = "invoiced"
        order["modified"] = _stamp()
        free = next((sh for sh in order.get("shipments") or [] if not sh.get("nfe_key")), None)
        if free is not None:
            free.update(nfe_key=key, nfe_number=str(number), nfe_serie="1", nfe_date=note["nfe_date"],
                        nfe_link=note["files"][0]["url"])

    def _submit(self, note: dict[str, Any]) -> None:
        note.update(nfe_status="processing", issues=[], modified=_stamp(),
                    due_at=self.tokens.clock.time() + self.settings.nfe_delay_seconds)
        self._settle(note)

    async def _invoices(self, request: Request) -> Response:
        if request.method == "GET":
            with self.lock:
                for pending in self.invoices.values():
                    self._settle(pending)
            return self._listing(request, self.invoices, "Invoice", by_modified=True)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return invalid("body", "the body must be JSON")
        with self.lock:
            if not isinstance(body, dict) or not body.get("reference_order"):
                return invalid("reference_order", "the order whose NF-e Plugg.to issues")
            order_id = str(body["reference_order"])
            if order_id not in self.orders:
                return invalid("reference_order", f"order {order_id} not found")
            if body.get("nfe_type", "sale") != "sale":
                return invalid("nfe_type", "only sale notes are issued here")
            if any(n["reference_order"] == order_id and n["nfe_status"] != "canceled"
                   for n in self.invoices.values()):
                self.duplicate_invoices += 1
            note: dict[str, Any] = {"id": self._new_id(), "reference_order": order_id, "nfe_type": "sale",
                                    "original_id": self.orders[order_id].get("original_id"),
                                    "number": None, "nfe_serie": None, "nfe_key": None, "nfe_date": None,
                                    "files": [], "issues": [], "created": _stamp()}
            self.invoices[note["id"]] = note
            self._submit(note)
            return JSONResponse({"Invoice": _public(note)}, status_code=201)

    async def _invoice(self, request: Request) -> Response:
        with self.lock:
            note = self.invoices.get(request.path_params["id"])
            if note is None:
                return error(404, "not_found", f"Invoice {request.path_params['id']} not found")
            self._settle(note)
            return JSONResponse({"Invoice": _public(note)})

    async def _nfe_file(self, request: Request) -> Response:
        """An authorized note's XML, at the link its ``files`` entry gives (no token: a published file)."""
        with self.lock:
            xml = self.nfe_files.get(request.path_params["key"])
        if xml is None:
            return error(404, "not_found", f"File {request.path_params['key']}.xml not found")
        return Response(xml, media_type="application/xml")

    async def _resend(self, request: Request) -> Response:
        """A rejected note, corrected, goes to SEFAZ again: the same note (its number and id), never a new one."""
        with self.lock:
            note = self.invoices.get(request.path_params["id"])
            if note is None:
                return error(404, "not_found", f"Invoice {request.path_params['id']} not found")
            self._settle(note)
            if note["nfe_status"] != "rejected":
                return error(400, "not_updated", f"Invoice {note['id']} is {note['nfe_status']}, not rejected")
            self._submit(note)
            return JSONResponse({"Invoice": _public(note)})

    async def _product(self, request: Request) -> Response:
        with self.lock:
            found = self.products.get(request.path_params["id"])
            if found is None:
                return error(404, "not_found", f"Product {request.path_params['id']} not found")
            return JSONResponse({"Product": _copy(found)})

    async def _sku(self, request: Request) -> Response:
        sku = request.path_params["sku"]
        body: Any = None
        if request.method == "PUT":
            try:
                body = json.loads(await request.body())
            except ValueError:
                return invalid("body", "the body must be JSON")
        with self.lock:
            found = self._find(sku)
            if request.method == "GET":
                if found is None:
                    return error(404, "not_found", f"Sku {sku} not found")
                return JSONResponse({"Product": _copy(found[0])})
            if request.method == "DELETE":
                if found is None:
                    return error(404, "not_found", f"Sku {sku} not found")
                product, variation = found
                if variation is None:
                    del self.products[product["id"]]
                    for gone in [product, *product.get("variations", [])]:
                        self._sku_index.pop(str(gone["sku"]), None)
                else:
                    product["variations"].remove(variation)
                    self._sku_index.pop(sku, None)
                    product["modified"] = _stamp()
                return JSONResponse({"Product": _copy(product)})
            problem = self._validate_sku(sku, body, creating=found is None)
            if problem is not None:
                return problem
            if found is None:
                product = {"sku": sku, "quantity": 0, "price": 0, "special_price": None, "variations": [],
                           "stock_table": [], "price_table": [], "photos": [], "categories": [], "attributes": []}
                self._merge(product, body)
                self._insert_product(product)
            else:
                product, variation = found
                self._merge(variation if variation is not None else product, body)
                product["modified"] = _stamp()
                self._index(product)
            return JSONResponse({"Product": _copy(product)})

    def _validate_sku(self, sku: str, body: Any, *, creating: bool) -> Response | None:
        """What the sandbox refuses on ``PUT /skus/{sku}`` (assumed where the docs are silent, README)."""
        if not isinstance(body, dict):
            return invalid("body", "the body must be a JSON object")
        if body.get("sku") not in (None, sku):
            return invalid("sku", f"the body's sku {body.get('sku')!r} differs from the URL's {sku!r}")
        if creating and not str(body.get("name") or "").strip():
            return invalid("name", "name is required to create a product")
        for name in ("price", "special_price", "quantity"):
            if body.get(name) is not None and not _number(body[name]):
                return invalid(name, f"{name} must be a number >= 0")
        for name, length in (("ncm", 8), ("nbm", 8), ("cest", 7)):
            if body.get(name) not in (None, "") and not _digits(body[name], length):
                return invalid(name, f"{name} must have {length} digits, got {body[name]!r}")
        if body.get("ean") not in (None, "") and not (str(body["ean"]).isdigit()
                                                      and len(str(body["ean"])) in (8, 12, 13, 14)):
            return invalid("ean", "ean must have 8, 12, 13 or 14 digits")
        for i, variation in enumerate(body.get("variations") or []):
            if not isinstance(variation, dict) or not variation.get("sku"):
                return invalid(f"variations[{i}].sku", "every variation needs a sku")
            if variation.get("price") is not None and not _number(variation["price"]):
                return invalid(f"variations[{i}].price", "price must be a number >= 0")
        for table, kinds in (("stock_table", ("own", "supplier")), ("price_table", ())):
            for i, row in enumerate(body.get(table) or []):
                if not isinstance(row, dict) or not row.get("code"):
                    return invalid(f"{table}[{i}].code", "every row needs a code")
                if kinds and row.get("type", "own") not in kinds:
                    return invalid(f"{table}[{i}].type", "type must be own or supplier")
                if table == "price_table" and row.get("action", "overwrite") not in ("overwrite", "increase",
                                                                                     "decrease"):
                    return invalid(f"{table}[{i}].action", "action must be overwrite, increase or decrease")
                for name in ("quantity", "price", "special_price"):
                    if row.get(name) is not None and not _number(row[name]):
                        return invalid(f"{table}[{i}].{name}", f"{name} must be a number >= 0")
        for i, category in enumerate(body.get("categories") or []):
            if not isinstance(category, dict) or not str(category.get("name") or "").strip():
                return invalid(f"categories[{i}].name", "every category needs a name")
        return None

    @staticmethod
    def _merge(target: dict[str, Any], body: dict[str, Any]) -> None:
        """A partial update: sent fields replace, ``variations`` / ``stock_table`` / ``price_table`` rows are
        matched by ``sku`` / ``code`` (``remove: true`` deletes a row)."""
        for name, value in body.items():
            if name in ("stock_table", "price_table"):
                rows = target.setdefault(name, [])
                for row in value:
                    current = next((r for r in rows if r["code"] == row["code"]), None)
                    if row.get("remove"):
                        if current is not None:
                            rows.remove(current)
                    elif current is None:
                        rows.append({"id": f"{row['code']}-{len(rows) + 1}", **row})
                    else:
                        current.update(row)
            elif name == "variations":
                rows = target.setdefault("variations", [])
                for row in value:
                    current = next((r for r in rows if r["sku"] == row["sku"]), None)
                    if current is None:
                        rows.append({"quantity": 0, **row})
                    else:
                        current.update(row)
            else:
                target[name] = value

    async def _stock(self, request: Request) -> Response:
        sku = request.path_params["sku"]
        try:
            body = json.loads(await request.body())
        except ValueError:
            return invalid("body", "the body must be JSON")
        with self.lock:
            found = self._find(sku)
            if found is None:
                return error(404, "not_found", f"Sku {sku} not found")
            if not isinstance(body, dict) or body.get("action") not in ("update", "increase", "decrease"):
                return invalid("action", "action must be update, increase or decrease")
            quantity = body.get("quantity")
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
                return invalid("quantity", "quantity must be an integer >= 0")
            product, variation = found
            holder = variation if variation is not None else product
            current = int(holder.get("quantity") or 0)
            holder["quantity"] = {"update": quantity, "increase": current + quantity,
                                  "decrease": max(0, current - quantity)}[body["action"]]
            product["modified"] = _stamp()
            return JSONResponse({"Product": _copy(product)})

    async def _order(self, request: Request) -> Response:
        order_id = request.path_params["id"]
        body: Any = None
        if request.method == "PUT":
            try:
                body = json.loads(await request.body())
            except ValueError:
                return invalid("body", "the body must be JSON")
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return error(404, "not_found", f"Order {order_id} not found")
            if request.method == "GET":
                return JSONResponse({"Order": _copy(order)})
            if not isinstance(body, dict):
                return invalid("body", "the body must be a JSON object")
            return self._update_order(order, body)

    def _update_order(self, order: dict[str, Any], body: dict[str, Any]) -> Response:
        """A partial update. A shipment without ``id`` is a new delivery; one with an id changes that shipment; an
        NF-e key must have 44 digits and cannot replace another shipment's key. Nothing new: ``not_updated``."""
        if "status" in body and body["status"] not in STATUSES:
            return invalid("status", f"status must be one of {', '.join(STATUSES)}")
        changed = "status" in body and body["status"] != order["status"]
        new_shipments: list[dict[str, Any]] = []
        updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for i, shipment in enumerate(body.get("shipments") or []):
            if not isinstance(shipment, dict):
                return invalid(f"shipments[{i}]", "every shipment must be an object")
            key = shipment.get("nfe_key")
            if key not in (None, "") and not _digits(key, 44):
                return invalid(f"shipments[{i}].nfe_key", "nfe_key must have 44 digits (numbers only)")
            if not shipment.get("id"):
                new_shipments.append(shipment)
                continue
            current = next((s for s in order["shipments"] if s["id"] == shipment["id"]), None)
            if current is None:
                return invalid(f"shipments[{i}].id", f"shipment {shipment['id']} is not in order {order['id']}")
            if key and current.get("nfe_key") and current["nfe_key"] != key:
                return invalid(f"shipments[{i}].nfe_key", f"shipment {current['id']} already has NF-e "
                                                          f"{current['nfe_key']}")
            if any(current.get(k) != v for k, v in shipment.items()):
                updates.append((current, shipment))
        documents = [d for d in body.get("documents") or [] if isinstance(d, dict)
                     and d not in order.get("documents", [])]
        if not (changed or new_shipments or updates or documents):
            return error(400, "not_updated", "Changes not found in the order")
        for current, shipment in updates:
            current.update(shipment)
        for shipment in new_shipments:
            order["shipments"].append({"id": self._new_id(), **shipment})
            self.duplicate_deliveries += 1
        if documents:
            order.setdefault("documents", []).extend(documents)
        if "status" in body:
            order["status"] = body["status"]
        order["modified"] = _stamp()
        return JSONResponse({"Order": _copy(order)})
