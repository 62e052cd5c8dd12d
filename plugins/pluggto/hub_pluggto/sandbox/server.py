"""An in-memory emulator of Plugg.to's API, served over real HTTP by :func:`hub.sandbox.serve`.

It enforces what the public material says (README): OAuth password and authorization-code grants with 1 h access
tokens and single-use refresh tokens, ``{"Product": ...}`` / ``{"Order": ...}`` envelopes, lists with ``limit``,
``next`` (the last id read) and ``modified=FROMtoTO`` (by day), SKU upserts, stock updates, orders with shipments,
and the NF-e rules: a shipment without an ``id`` is a NEW delivery (the duplicate-delivery trap, counted in
``duplicate_deliveries``), and a change Plugg.to already holds answers ``not_updated``. Validation, the rate limit
and the 429 body are the README's assumptions. Every touch of the state happens under ``self.lock``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from hub.sandbox import FAULTS, SandboxBase, SandboxSettings
from hub.sandbox.documents import cnpj, cpf, ean13, wrong_check_digit
from hub.sandbox.oauth import AuthorizationCode, OAuthError, PasswordGrant, TokenStore, WallClock, check_client
from hub.sandbox.ratelimit import Limits, Rule, TokenBucket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
        self.orders: dict[str, dict[str, Any]] = {}
        self._last_page: dict[str, bytes] = {}
        self._serial = 0
        self.duplicate_deliveries = 0
        """Shipments created by an order update that sent a shipment without its id (the trap the docs warn of)."""
        self.app = Starlette(routes=[
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/users", self._api(self._users), methods=["GET"]),
            Route("/products", self._api(self._list_products), methods=["GET"]),
            Route("/products/{id}", self._api(self._product), methods=["GET"]),
            Route("/skus/{sku}/stock", self._api(self._stock), methods=["PUT"]),
            Route("/skus/{sku}", self._api(self._sku), methods=["GET", "PUT", "DELETE"]),
            Route("/orders", self._api(self._list_orders), methods=["GET"]),
            Route("/orders/{id}", self._api(self._order), methods=["GET", "PUT"]),
        ])

    # --- settings and the protocol ---------------------------------------------------------------------------------

    def _rules(self, key: Hashable) -> Sequence[Rule]:
        return [TokenBucket(self.settings.rate_per_second)]

    def limits_changed(self) -> None:
        self._limits.reset()

    def connection(self, base_url: str) -> dict[str, Any]:
        rate = self.settings.rate_per_second
        return {"options": {"base_url": base_url, "rate_per_second": rate if rate is not None else 1000,
                            "user_id": self.user_id},
                "credentials": {"client_id": self.client_id, "client_secret": self.client_secret,
                                "username": self.username, "password": self.password,
                                "webhook_token": self.webhook_token}}

    def seed(self, stream: str, count: int) -> list[str]:
        with self.lock:
            if stream == "products":
                return [self._insert_product(self._synthetic_product()) for _ in range(count)]
            if stream == "sales":
                return [self._insert_order(self._synthetic_order()) for _ in range(count)]
        raise ValueError(f"pluggto sandbox cannot seed {stream!r} (products, sales)")

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
        raise ValueError(f"pluggto sandbox has no invalid {stream!r} record")

    def seed_future(self, stream: str) -> str:
        with self.lock:
            if stream == "products":
                return self._insert_product({**self._synthetic_product(), "modified": FUTURE_STAMP})
            if stream == "sales":
                return self._insert_order({**self._synthetic_order(), "modified": FUTURE_STAMP})
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
            else:
                raise ValueError(f"pluggto sandbox cannot touch {stream!r}")
            record["modified"] = _stamp()

    def age(self, stream: str, seconds: float) -> None:
        table = {"products": self.products, "sales": self.orders}.get(stream)
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
            if stream == "invoices":
                return [{"order": o["id"], "shipment": s["id"], "nfe_key": s["nfe_key"],
                         "nfe_number": s.get("nfe_number"), "nfe_serie": s.get("nfe_serie"),
                         "nfe_link": s.get("nfe_link")}
                        for _, o in sorted(self.orders.items()) for s in o["shipments"] if s.get("nfe_key")]
        raise ValueError(f"pluggto sandbox has no stream {stream!r} (streams: {', '.join(STREAMS)})")

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"products": len(self.products), "orders": len(self.orders),
                    "invoiced orders": sum(1 for o in self.orders.values() if o["status"] == "invoiced"),
                    "duplicate deliveries": self.duplicate_deliveries}

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
        for product in self.products.values():
            if product["sku"] == sku:
                return product, None
            for variation in product.get("variations", []):
                if variation["sku"] == sku:
                    return product, variation
        return None

    def _insert_product(self, product: dict[str, Any]) -> str:
        product.setdefault("id", self._new_id())
        product.setdefault("created", _stamp())
        product.setdefault("modified", product["created"])
        self.products[product["id"]] = product
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
        skus = [p["sku"] for p in self.products.values()][:20]
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
            for name in ("sku", "status", "external", "channel"):
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
                                     "result": [{key: _copy(r)} for r in shown]})
            self._last_page[path] = bytes(response.body)
            return response

    async def _list_products(self, request: Request) -> Response:
        return self._listing(request, self.products, "Product", by_modified=False)

    async def _list_orders(self, request: Request) -> Response:
        return self._listing(request, self.orders, "Order", by_modified=True)

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
                else:
                    product["variations"].remove(variation)
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
