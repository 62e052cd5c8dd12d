"""An in-memory emulator of the lojinha API, served over real HTTP by :func:`hub.sandbox.serve`.

The ASGI app runs in uvicorn's thread while tests call the control methods from theirs, so every touch of the
state happens under one ``threading.Lock`` (never held across an ``await``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from hub.sandbox import SandboxBase
from hub.sandbox.documents import cpf, ean13, wrong_check_digit
from hub.sandbox.idempotency import IdempotencyStore
from hub.sandbox.oauth import ClientCredentials, OAuthError, TokenStore, WallClock
from hub.sandbox.ratelimit import Limits, Rule, Window
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

STREAMS: dict[str, str] = {
    "products": "products",
    "categories": "categories",
    "customers": "customers",
    "payment_methods": "payment-methods",
    "sales": "orders",
}
"""hub stream name -> lojinha resource (URL path)."""

CREATABLE = {"products", "categories", "customers", "orders"}
UPDATABLE = {"products", "categories", "customers", "orders"}
ACTIONS = {"post-stock", "post-accounts", "reverse-stock", "reverse-accounts"}
FILTERS = {"products": (("sku",), "sku"), "customers": (("document", "documento"), "documento"),
           "orders": (("number", "numero"), "numero")}
"""List filters: query parameters (English, or the record's own name) -> record field."""

PAYMENT_METHODS = [("dinheiro", "Dinheiro", "01"), ("pix", "PIX", "17"), ("credito", "Cartão de crédito", "03"),
                   ("debito", "Cartão de débito", "04"), ("boleto", "Boleto", "15")]
STATUS_CYCLE = {"aberto": "atendido", "atendido": "cancelado"}
MAX_PER_PAGE = 100

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 429 else None
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers)


def _invalid(problems: list[tuple[str, str]]) -> JSONResponse:
    message = "; ".join(f"{f}: {m}" for f, m in problems)
    return _error(422, "validation", message, fields=[{"field": f, "message": m} for f, m in problems])


def _decimal(value: Any) -> Decimal | None:
    """A non-negative decimal given as a string (lojinha refuses JSON numbers for money)."""
    if not isinstance(value, str):
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() and result >= 0 else None


class LojinhaSandbox(SandboxBase):
    """The fictional lojinha shop platform: OAuth client credentials, paged lists, idempotent creates, faults."""

    streams = tuple(STREAMS)

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.client_id, self.client_secret = "demo", "demo-secret"
        self.created: dict[str, int] = dict.fromkeys(STREAMS, 0)
        self._data: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in STREAMS.values()}
        self._idempotent: IdempotencyStore[str] = IdempotencyStore()
        self._action_keys: IdempotencyStore[bool] = IdempotencyStore()
        self.tokens = TokenStore(WallClock(), access_ttl=self.settings.token_ttl_seconds)
        self._client = ClientCredentials(self.tokens, self.client_id, self.client_secret)
        self._limits = Limits(self._rules)
        self._last_page: dict[str, dict[str, Any]] = {}
        self._next_id = 1000
        self._serial = 0
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self.app = Starlette(routes=[
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/orders/{id}/actions/{name}", self._api(self._action), methods=["POST"]),
            Route("/{resource}", self._api(self._collection), methods=["GET", "POST"]),
            Route("/{resource}/{id}", self._api(self._item), methods=["GET", "PUT"]),
        ])

    # --- control methods (the hub.sandbox.Sandbox protocol, plus a few extras) ------------------------------

    def connection(self, base_url: str) -> dict[str, Any]:
        return {"options": {"base_url": base_url},
                "credentials": {"client_id": self.client_id, "client_secret": self.client_secret}}

    def seed(self, stream: str, count: int) -> list[str]:
        resource = self._resource(stream)
        with self.lock:
            return [self._insert(resource, self._synthetic(resource)) for _ in range(count)
                    if resource != "payment-methods" or self._free_payment_method()]

    def seed_invalid(self, stream: str) -> str:
        """One record the API accepts but the canonical model refuses (the quarantine path)."""
        resource = self._resource(stream)
        with self.lock:
            record = self._synthetic(resource)
            if resource == "products":
                record["ean"] = wrong_check_digit(record["ean"])
            elif resource == "customers":
                record["documento"] = wrong_check_digit(record["documento"])
            elif resource == "orders":
                record["pagamentos"][0]["valor"] = "0.01"
            else:
                raise ValueError(f"seed_invalid does not support {stream!r}")
            return self._insert(resource, record)

    def seed_future(self, stream: str) -> str:
        """One synthetic record stamped in 2099, as a device with a wrong clock would save it; return its id."""
        resource = self._resource(stream)
        with self.lock:
            record_id = self._insert(resource, self._synthetic(resource))
            self._data[resource][record_id]["atualizado_em"] = "2099-01-01T00:00:00.000000Z"
            return record_id

    def age(self, stream: str, seconds: float) -> None:
        """Move every record of ``stream`` ``seconds`` into the past, as if it had not changed for that long (the
        conformance kit's cursor check: nothing is older than a moved cursor's re-read window)."""
        resource = self._resource(stream)
        with self.lock:
            for record in self._data[resource].values():
                moment = datetime.fromisoformat(record["atualizado_em"]) - timedelta(seconds=seconds)
                record["atualizado_em"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def touch(self, stream: str, external_id: str) -> None:
        resource = self._resource(stream)
        with self.lock:
            record = self._data[resource][external_id]
            self._serial += 1
            if resource == "orders":
                record["situacao"] = STATUS_CYCLE.get(record["situacao"], record["situacao"])
            elif resource == "products":
                record["nome"] = f"{record['nome'].split(' (rev')[0]} (rev {self._serial})"
                record["preco"] = str(Decimal(record["preco"]) + Decimal("0.01"))
            elif resource == "categories":
                parts = record["caminho"].split(" > ")
                parts[-1] = record["nome"] = f"{parts[-1].split(' (rev')[0]} (rev {self._serial})"
                record["caminho"] = " > ".join(parts)
            else:
                record["nome"] = f"{record['nome'].split(' (rev')[0]} (rev {self._serial})"
            record["atualizado_em"] = self._stamp()

    def edit(self, stream: str, external_id: str, **fields: Any) -> None:
        """Set fields of a record as a person would in lojinha's screens (e.g. a price put back after a sale)."""
        resource = self._resource(stream)
        with self.lock:
            record = self._data[resource][external_id]
            record.update(_copy(fields))
            record["atualizado_em"] = self._stamp()

    def touch_first(self, stream: str, count: int) -> list[str]:
        """Change the first ``count`` records of ``stream`` (the demo's "a person edits them")."""
        ids = [str(r["id"]) for r in self.records(stream)[:count]]
        for record_id in ids:
            self.touch(stream, record_id)
        return ids

    def records(self, stream: str) -> list[dict[str, Any]]:
        resource = self._resource(stream)
        with self.lock:
            return [_copy(r) for r in self._sorted(resource)]

    def create(self, stream: str, data: dict[str, Any]) -> str:
        """Insert ``data`` as is (no validation), as if a user typed it into the platform."""
        resource = self._resource(stream)
        with self.lock:
            return self._insert(resource, _copy(data))

    def _rules(self, key: Hashable) -> Sequence[Rule]:
        return [Window(self.settings.rate_per_second)]

    def limits_changed(self) -> None:
        self._limits.reset()

    # --- state helpers (call with the lock held) ---------------------------------------------------------

    @staticmethod
    def _resource(stream: str) -> str:
        if stream not in STREAMS:
            raise ValueError(f"lojinha has no stream {stream!r} (streams: {', '.join(STREAMS)})")
        return STREAMS[stream]

    def _stamp(self) -> str:
        """Now, but strictly after the previous stamp: two writes never share a timestamp."""
        now = datetime.now(UTC)
        self._last_stamp = max(now, self._last_stamp + timedelta(microseconds=1))
        return self._last_stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _insert(self, resource: str, record: dict[str, Any]) -> str:
        self._next_id += 1
        record_id = str(record.get("id") or self._next_id)
        record["id"] = record_id
        record["atualizado_em"] = self._stamp()
        if resource == "orders":
            record.setdefault("actions", [])
        self._data[resource][record_id] = record
        stream = next(s for s, r in STREAMS.items() if r == resource)
        self.created[stream] += 1
        return record_id

    def _sorted(self, resource: str) -> list[dict[str, Any]]:
        return sorted(self._data[resource].values(), key=lambda r: (r["atualizado_em"], len(r["id"]), r["id"]))

    def _free_payment_method(self) -> bool:
        used = {m["codigo"] for m in self._data["payment-methods"].values()}
        return any(code not in used for code, _, _ in PAYMENT_METHODS)

    def _synthetic(self, resource: str) -> dict[str, Any]:
        self._serial += 1
        n = self._serial
        if resource == "products":
            categories = [c["caminho"] for c in self._data["categories"].values()]
            return {"sku": f"LJ-{n:05d}", "nome": f"Camiseta lisa {n}", "preco": f"{19 + n % 50}.90",
                    "ean": ean13(f"789{n:09d}"), "ativo": True,
                    "categoria": categories[n % len(categories)] if categories else "Roupas > Camisetas",
                    "ncm": "61091000", "origem": 0}
        if resource == "categories":
            return {"nome": f"Categoria {n}", "caminho": f"Roupas > Categoria {n}"}
        if resource == "customers":
            return self._synthetic_customer(n)
        if resource == "payment-methods":
            used = {m["codigo"] for m in self._data["payment-methods"].values()}
            code, name, tpag = next(m for m in PAYMENT_METHODS if m[0] not in used)
            return {"codigo": code, "nome": name, "tpag": tpag}
        products = list(self._data["products"].values())
        items = []
        for i in range(1 + n % 3):
            if products:
                product = products[(n + i) % len(products)]
                items.append({"sku": product["sku"], "quantidade": 1 + i, "preco": product["preco"]})
            else:
                items.append({"sku": f"SKU-{(n + i) % 20 + 1}", "quantidade": 1 + i, "preco": f"{10 + i}.50"})
        total = sum((Decimal(it["preco"]) * it["quantidade"] for it in items), Decimal("0"))
        forma = PAYMENT_METHODS[n % 3][0]
        customer = self._synthetic_customer(n) if n % 2 else None
        if customer is not None:
            customer["id"] = self._insert("customers", customer)
            customer = _copy(customer)
        return {"numero": f"{n:06d}", "loja": "loja-1", "data": self._stamp(), "cliente": customer, "itens": items,
                "pagamentos": [{"forma": forma, "valor": str(total), "parcelas": 2 if forma == "credito" else 1}],
                "situacao": "aberto", "substitui": None, "actions": []}

    @staticmethod
    def _synthetic_customer(n: int) -> dict[str, Any]:
        base = f"{(123456 + n * 7919) % 10**9:09d}"
        return {"nome": f"Cliente {n}", "documento": cpf(base), "email": f"cliente{n}@example.com",
                "endereco": {"rua": "Av. Paulista", "numero": str(n), "bairro": "Bela Vista",
                             "cidade": "São Paulo", "uf": "SP", "cep": "01310100"}}

    # --- HTTP ------------------------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        with self.lock:
            self.counters.token_calls += 1
            try:
                issued = self._client.grant(form)
            except OAuthError as error:
                message = "unknown client_id or wrong client_secret" if error.status == 401 else error.description
                return _error(error.status, error.error, message)
        return JSONResponse({"access_token": issued.access_token, "token_type": "bearer",
                             "expires_in": issued.expires_in})

    def _api(self, handler: Handler) -> Handler:
        """Wrap an API endpoint with the counters, faults, bearer check and rate limit, in that order."""

        async def gated(request: Request) -> Response:
            with self.lock:
                self.counters.requests += 1
                fault = self.faults.next(request.method)
                if fault == "401":
                    self.tokens.drop_access()
            if fault == "500":
                return _error(500, "internal", "injected internal error")
            if fault == "429":
                return _error(429, "rate_limited", "injected rate limit", retry_after=1)
            await self.delay(fault)
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            with self.lock:
                if scheme.lower() != "bearer" or self.tokens.check(token) is not None:
                    return _error(401, "invalid_token", "missing, unknown or expired access token")
                if self._limits.take(self.tokens.clock.time()) is not None:
                    self.counters.throttled += 1
                    return _error(429, "rate_limited",
                                  f"more than {self.settings.rate_per_second} requests per second", retry_after=1)
            response = await handler(request)
            if fault == "timeout-after-write":
                await self.answer_late()
            return response

        return gated

    async def _collection(self, request: Request) -> Response:
        resource = request.path_params["resource"]
        if resource not in self._data:
            return _error(404, "not_found", f"no resource /{resource}")
        if request.method == "GET":
            return self._list(resource, request)
        if resource not in CREATABLE:
            return _error(405, "method_not_allowed", f"/{resource} is read-only")
        body = await _json(request)
        if not isinstance(body, dict):
            return _invalid([("(body)", "expected a JSON object")])
        key = request.headers.get("idempotency-key")
        with self.lock:
            replayed = self._idempotent.replay((resource, key)) if key else None
            if replayed is not None:
                return JSONResponse(_copy(self._data[resource][replayed]), status_code=200)
            record, problem = self._validated(resource, body, None)
            if problem is not None:
                return problem
            record_id = self._insert(resource, record)
            if key:
                self._idempotent.remember((resource, key), record_id)
            return JSONResponse(_copy(record), status_code=201)

    async def _item(self, request: Request) -> Response:
        resource, record_id = request.path_params["resource"], request.path_params["id"]
        if resource not in self._data:
            return _error(404, "not_found", f"no resource /{resource}")
        body = await _json(request) if request.method == "PUT" else None
        with self.lock:
            current = self._data[resource].get(record_id)
            if current is None:
                return _error(404, "not_found", f"{resource} {record_id} does not exist")
            if request.method == "GET":
                return JSONResponse(_copy(current))
            if resource not in UPDATABLE:
                return _error(405, "method_not_allowed", f"/{resource} is read-only")
            if not isinstance(body, dict):
                return _invalid([("(body)", "expected a JSON object")])
            record, problem = self._validated(resource, body, record_id)
            if problem is not None:
                return problem
            record.update(id=record_id, atualizado_em=self._stamp())
            if resource == "orders":
                record["actions"] = current.get("actions", [])
            self._data[resource][record_id] = record
            return JSONResponse(_copy(record))

    async def _action(self, request: Request) -> Response:
        order_id, name = request.path_params["id"], request.path_params["name"]
        key = request.headers.get("idempotency-key")
        with self.lock:
            order = self._data["orders"].get(order_id)
            if order is None:
                return _error(404, "not_found", f"order {order_id} does not exist")
            if name not in ACTIONS:
                return _invalid([("name", f"unknown action {name!r} (known: {', '.join(sorted(ACTIONS))})")])
            if key is None or self._action_keys.replay((order_id, key)) is None:
                order["actions"].append(name)
                order["atualizado_em"] = self._stamp()
                if key is not None:
                    self._action_keys.remember((order_id, key), True)
            return JSONResponse(_copy(order))

    def _list(self, resource: str, request: Request) -> Response:
        q = request.query_params
        try:
            page, per_page = int(q.get("page", "1")), int(q.get("per_page", "50"))
            since = q.get("updated_since")
            since_ts = datetime.fromisoformat(since) if since else None
        except ValueError as exc:
            return _invalid([("(query)", str(exc))])
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            return _invalid([("per_page" if page >= 1 else "page",
                              f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}")])
        with self.lock:
            if self.faults.repeat_armed and resource in self._last_page:
                self.faults.take_repeat()
                return JSONResponse(self._last_page[resource])
            rows = self._sorted(resource)
            if since_ts is not None:
                since_utc = since_ts if since_ts.tzinfo else since_ts.replace(tzinfo=UTC)
                rows = [r for r in rows if datetime.fromisoformat(r["atualizado_em"]) >= since_utc]
            params, field = FILTERS.get(resource, ((), ""))
            wanted = next((q[p] for p in params if q.get(p)), None)
            if wanted is not None:
                rows = [r for r in rows if str(r.get(field)) == wanted]
            start = (page - 1) * per_page
            body = {"data": [_copy(r) for r in rows[start:start + per_page]],
                    "meta": {"page": page, "per_page": per_page, "total": len(rows),
                             "has_more": start + per_page < len(rows)}}
            self._last_page[resource] = body
            return JSONResponse(body)

    def _validated(self, resource: str, body: dict[str, Any],
                   record_id: str | None) -> tuple[dict[str, Any], JSONResponse | None]:
        """The stored record for ``body``, or the 422/409 to answer instead (lock held)."""
        problems: list[tuple[str, str]] = []

        def text(name: str, required: bool = True) -> str | None:
            value = body.get(name)
            if value in (None, "") and not required:
                return None
            if not isinstance(value, str) or not value.strip():
                problems.append((name, "required, a non-empty string"))
                return None
            return value.strip()

        record: dict[str, Any]
        if resource == "products":
            record = {"sku": text("sku"), "nome": text("nome"), "preco": body.get("preco"),
                      "ean": text("ean", False), "ativo": bool(body.get("ativo", True)),
                      "categoria": text("categoria", False), "ncm": text("ncm", False), "origem": body.get("origem")}
            if _decimal(record["preco"]) is None:
                problems.append(("preco", "required, a decimal string >= 0 such as '19.90'"))
        elif resource == "categories":
            nome = text("nome")
            record = {"nome": nome, "caminho": text("caminho", False) or nome}
        elif resource == "customers":
            endereco = body.get("endereco") or {}
            if not isinstance(endereco, dict):
                problems.append(("endereco", "must be an object"))
                endereco = {}
            record = {"nome": text("nome"), "documento": text("documento", False), "email": text("email", False),
                      "endereco": {k: endereco.get(k) for k in ("rua", "numero", "bairro", "cidade", "uf", "cep")}}
        else:
            record = self._validated_order(body, problems, text)
        if problems:
            return record, _invalid(problems)
        unique = {"products": "sku", "orders": "numero"}.get(resource)
        if unique:
            clash = next((r["id"] for r in self._data[resource].values()
                          if r[unique] == record[unique] and r["id"] != record_id), None)
            if clash is not None:
                return record, _error(409, "conflict", f"{unique} {record[unique]!r} is already used by {clash}",
                                      existing_id=clash)
        return record, None

    def _validated_order(self, body: dict[str, Any], problems: list[tuple[str, str]],
                         text: Callable[..., str | None]) -> dict[str, Any]:
        itens = body.get("itens")
        if not isinstance(itens, list) or not itens:
            problems.append(("itens", "required, a non-empty list"))
            itens = []
        for i, item in enumerate(itens):
            if not isinstance(item, dict) or not item.get("sku"):
                problems.append((f"itens.{i}.sku", "required"))
            elif item.get("quantidade") in (None, "") or _decimal(str(item.get("quantidade"))) is None:
                problems.append((f"itens.{i}.quantidade", "required, a number >= 0"))
            elif _decimal(item.get("preco")) is None:
                problems.append((f"itens.{i}.preco", "required, a decimal string >= 0"))
        pagamentos = body.get("pagamentos") or []
        for i, pay in enumerate(pagamentos):
            if not isinstance(pay, dict) or not pay.get("forma") or _decimal(pay.get("valor")) is None:
                problems.append((f"pagamentos.{i}", "needs forma and valor (a decimal string)"))
        cliente = body.get("cliente")
        if body.get("cliente_id") is not None:
            cliente = self._data["customers"].get(str(body["cliente_id"]))
            if cliente is None:
                problems.append(("cliente_id", f"customer {body['cliente_id']} does not exist"))
            cliente = _copy(cliente) if cliente else None
        data = text("data")
        if data:
            try:
                datetime.fromisoformat(data)
            except ValueError:
                problems.append(("data", "an ISO 8601 date-time"))
        return {"numero": text("numero"), "loja": text("loja", False), "data": data, "cliente": cliente,
                "itens": [{"sku": it["sku"], "quantidade": it["quantidade"], "preco": it["preco"]}
                          for it in itens if isinstance(it, dict) and "sku" in it],
                "pagamentos": [{"forma": p.get("forma"), "valor": p.get("valor"), "parcelas": p.get("parcelas", 1)}
                               for p in pagamentos if isinstance(p, dict)],
                "situacao": text("situacao", False) or "aberto", "substitui": text("substitui", False),
                "actions": []}


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _copy(record: Any) -> Any:
    """A deep copy of JSON-shaped data, so callers never share the sandbox's dicts."""
    if isinstance(record, dict):
        return {k: _copy(v) for k, v in record.items()}
    if isinstance(record, list):
        return [_copy(v) for v in record]
    return record
