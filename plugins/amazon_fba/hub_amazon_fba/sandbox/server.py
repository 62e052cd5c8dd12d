"""An in-memory emulator of the SP-API operations an FBA Onsite integration uses, served over real HTTP.

What it enforces, from the models in ``shared/specs/amazon`` and the research notes beside them: Login with Amazon
(refresh-token grant, one-hour access tokens in ``x-amz-access-token``, ``invalid_grant`` once the seller revoked
the app, ``invalid_client`` for a stale secret), restricted data tokens for ``getShipmentDetails``, a token bucket
per operation with each model's usage plan (429 ``QuotaExceeded`` without a rate header; ``x-amzn-RateLimit-Limit``
on 200/400/404; ``x-amzn-RequestId`` always), every request checked against its model (``InvalidInput`` naming
what is wrong), Orders API v2026-01-01 ``searchOrders``/``getOrder`` with ``includedData`` and ``nextToken`` paging,
an SQS queue (JSON protocol, SigV4-signed) carrying ``FBA_OUTBOUND_SHIPMENT_STATUS`` and ``ORDER_CHANGE``
notifications, shipment invoicing (one authorized NF-e per shipment; Processing, then Accepted or Errored) and
listings (``VALIDATION_PREVIEW``, issues by attribute name, a stock quantity creating the duplicate merchant offer).
State is touched only under ``self.lock``, never across an ``await``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import random
import re
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

from hub.models import access_key_check_digit
from hub.sandbox import SandboxBase, SandboxSettings, nfe
from hub.sandbox.documents import cnpj, cpf, wrong_check_digit
from hub.sandbox.oauth import ClientCredentials, OAuthError, TokenStore, WallClock
from hub.sandbox.ratelimit import Limits, Rule, TokenBucket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub_amazon_fba import nfe_check, spec
from hub_amazon_fba.client import BRAZIL, LISTINGS, ORDERS, PLANS, RDT, SHIPMENTS, sigv4
from hub_amazon_fba.mappers import NFE, TPAG, md5_base64
from hub_amazon_fba.sandbox.destinations import GRANTLESS, NOTIFICATIONS, SCOPES, Destinations

Handler = Callable[[Request], Awaitable[Response]]
MARKETPLACE_CNPJ = "15436940000103"
"""Amazon Serviços de Varejo do Brasil: the CNPJ the model's sandbox example gives as MarketplaceTaxInfo."""
FUTURE = "2099-01-01T00:00:00Z"
RESTRICTED = ("getShipmentDetails",)
LONG_POLL_CHECK_SECONDS = 0.05
"""How often a long-polling receive looks at the queue again."""
INVALID_GRANT = ("The request has an invalid grant parameter : refresh_token. User may have revoked or didn't grant "
                 "the permission")
QUOTA = {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}]}
CITIES = [("São Paulo", "SP", "01310100"), ("Rio de Janeiro", "RJ", "20040002"), ("Curitiba", "PR", "80010000")]
PRODUCTS = [("FBA-CAMISETA", "Camiseta algodão", "59.90"), ("FBA-CANECA", "Caneca cerâmica", "39.90"),
            ("FBA-MOCHILA", "Mochila urbana", "189.00"), ("FBA-LIVRO", "Livro de receitas", "74.50")]
SECTIONS = {"BUYER": "buyer", "RECIPIENT": "recipient", "PROCEEDS": "proceeds", "TAX": "tax", "PAYMENT": "payment",
            "FULFILLMENT": "fulfillment", "FULFILLMENT_ORDERS": "fulfillmentOrders"}
LISTING_REQUIRED = ("item_name", "condition_type", "ncm_code", "import_designation", "purchasable_offer")
"""What an FBA offer in Brazil needs here: without NCM and origin Amazon cannot invoice (Seller Central BR help)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime | None = None) -> str:
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _error(status: int, code: str, message: str, details: str = "", headers: dict[str, str] | None = None
           ) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return JSONResponse({"errors": [error]}, status_code=status, headers=headers)


def _money(amount: Any) -> dict[str, str]:
    return {"amount": f"{float(amount):.2f}", "currencyCode": "BRL"}


class AmazonSettings(SandboxSettings):
    plan_scale: float | None = 1.0
    """Multiplies every operation's usage plan (tests run faster); None: no limit."""
    token_ttl_seconds: float = 3600
    page_size: int = 100
    """The ``page_size`` option :meth:`AmazonSandbox.connection` gives."""
    invoice_delay_seconds: float = 0.0
    """How long a submitted invoice stays Processing (Amazon's and SEFAZ's own time)."""
    visibility_timeout: float = 30.0
    """Seconds a received, undeleted message stays hidden before it is delivered again."""
    sweep_minutes: float = 15.0
    require_subscriptions: bool = False
    """Deliver a notification only when its type is subscribed to a destination that is this queue (as Amazon
    does); off by default, so tests and demos need no setup step."""
    """The ``sweep_minutes`` option :meth:`AmazonSandbox.connection` gives."""

    limit_fields = ("plan_scale",)


class AmazonSandbox(Destinations, SandboxBase):
    """One seller on Amazon.com.br with FBA Onsite: orders, shipments, invoices, listings and its SQS queue."""

    Settings = AmazonSettings
    streams = ("sales", "products", "prices", "invoices")
    fault_kinds = ("500", "timeout", "timeout-after-write", "slow", "429", "401", "repeat_page")

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.settings: AmazonSettings
        self.seller_id = "A" + secrets.token_hex(6).upper()
        self.client_id = f"amzn1.application-oa2-client.{secrets.token_hex(16)}"
        self.client_secret = f"amzn1.oa2-cs.v1.{secrets.token_hex(24)}"
        self.sqs_key_id = "AKIA" + secrets.token_hex(8).upper()
        self.sqs_secret = secrets.token_urlsafe(30)
        self.queue_name = "hub-fba-onsite"
        self.tokens = TokenStore(WallClock(), access_ttl=self.settings.token_ttl_seconds, rotate=False)
        self.grantless = ClientCredentials(TokenStore(WallClock(), access_ttl=3600), self.client_id,
                                           self.client_secret)
        self.refresh_token = "Atzr|" + self.tokens.refresh_token()
        self.grantless_scopes: dict[str, str] = {}
        """Grantless access token -> the scope it was issued for."""
        self._init_destinations()
        self._alias: dict[str, str] = {self.refresh_token: self.refresh_token[5:]}
        self.rdts: dict[str, tuple[set[tuple[str, str]], float]] = {}
        self._limits = Limits(self._rules)
        self.orders: dict[str, dict[str, Any]] = {}
        self.shipments: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.submissions: list[dict[str, Any]] = []
        self.listings: dict[str, dict[str, Any]] = {}
        self.queue: list[dict[str, Any]] = []
        self.sent_notifications: list[dict[str, Any]] = []
        self.lost = 0
        self._lose_next = 0
        self._pages: dict[str, tuple[str, int]] = {}
        self._last_page: bytes | None = None
        self._serial = itertools.count(1)
        self._rng = random.Random(7)
        self.operations: dict[str, int] = {}
        """Requests served per operation (what ``stats`` reports per order against each usage plan)."""
        self.app = Starlette(routes=[
            Route("/auth/o2/token", self._token, methods=["POST"]),
            Route("/", self._sqs, methods=["POST"]),
            Route(RDT, self._api(self._rdt), methods=["POST"]),
            Route(ORDERS, self._api(self._search), methods=["GET"]),
            Route(f"{ORDERS}/{{orderId}}", self._api(self._get_order), methods=["GET"]),
            Route(f"{SHIPMENTS}/{{shipmentId}}/invoice/status", self._api(self._invoice_status), methods=["GET"]),
            Route(f"{SHIPMENTS}/{{shipmentId}}/invoice", self._api(self._submit), methods=["POST"]),
            Route(f"{SHIPMENTS}/{{shipmentId}}", self._api(self._shipment), methods=["GET"]),
            Route(f"{LISTINGS}/{{sellerId}}/{{sku}}", self._api(self._listing), methods=["GET", "PUT", "PATCH"]),
            Route(f"{NOTIFICATIONS}/destinations", self._api(self._destinations), methods=["GET", "POST"]),
            Route(f"{NOTIFICATIONS}/destinations/{{destinationId}}", self._api(self._destination),
                  methods=["GET", "DELETE"]),
            Route(f"{NOTIFICATIONS}/subscriptions/{{notificationType}}", self._api(self._subscription),
                  methods=["GET", "POST"]),
            Route(f"{NOTIFICATIONS}/subscriptions/{{notificationType}}/{{subscriptionId}}",
                  self._api(self._subscription_by_id), methods=["GET", "DELETE"]),
        ])

    # --- settings, limits, connection ---------------------------------------------------------------------------

    def _rules(self, key: Hashable) -> Sequence[Rule]:
        scale = self.settings.plan_scale
        plan = PLANS.get(str(key))
        if scale is None or plan is None:
            return []
        return [TokenBucket(plan.rate * scale, plan.burst, name=str(key))]

    def limits_changed(self) -> None:
        self._limits.reset()
        self.tokens.access_ttl = self.settings.token_ttl_seconds

    def connection(self, base_url: str) -> dict[str, Any]:
        return {"options": {"base_url": base_url, "lwa_url": f"{base_url}/auth/o2/token", "seller_id": self.seller_id,
                            "queue_url": f"{base_url}/123456789012/{self.queue_name}",
                            "plan_scale": self.settings.plan_scale, "page_size": self.settings.page_size,
                            "sweep_minutes": self.settings.sweep_minutes},
                "credentials": {"client_id": self.client_id, "client_secret": self.client_secret,
                                "refresh_token": self.refresh_token, "sqs_access_key_id": self.sqs_key_id,
                                "sqs_secret_access_key": self.sqs_secret}}

    # --- authorization controls ---------------------------------------------------------------------------------

    def revoke(self) -> None:
        """The seller removed the app in Seller Central (or its 365 days lapsed): only re-authorizing helps."""
        with self.lock:
            self.tokens.revoke_all()

    def reauthorize(self) -> str:
        """The seller authorized the app again: a new refresh token (what `hub auth` would store)."""
        with self.lock:
            token = "Atzr|" + self.tokens.refresh_token()
            self._alias[token] = token[5:]
            return token

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.expire_access()

    def rotate_client_secret(self) -> str:
        with self.lock:
            self.client_secret = f"amzn1.oa2-cs.v1.{secrets.token_hex(24)}"
            return self.client_secret

    # --- HTTP: Login with Amazon ---------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        with self.lock:
            self.counters.token_calls += 1
            self.counters.log.append({"method": "POST", "path": "/auth/o2/token", "query": [], "body": None,
                                      "grant_type": form.get("grant_type")})
            try:
                if form.get("grant_type") == "client_credentials":
                    if form.get("scope") not in SCOPES:
                        raise OAuthError(400, "invalid_scope", f"The scope {form.get('scope')!r} is not a grantless "
                                                               f"scope ({', '.join(sorted(SCOPES))})")
                    self.grantless.client_secret = self.client_secret  # a rotated secret counts here too
                    issued = self.grantless.grant(form)
                    self.grantless_scopes[issued.access_token] = str(form["scope"])
                    return JSONResponse({"access_token": f"Atc|{issued.access_token}", "token_type": "bearer",
                                         "expires_in": issued.expires_in})
                if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
                    raise OAuthError(401, "invalid_client", "Client authentication failed")
                if form.get("grant_type") != "refresh_token":
                    raise OAuthError(400, "unsupported_grant_type", "The authorization grant type is not supported")
                token = self._alias.get(form.get("refresh_token", ""))
                if token is None:
                    raise OAuthError(400, "invalid_grant", INVALID_GRANT)
                try:
                    issued = self.tokens.exchange_refresh(token)
                except OAuthError:
                    raise OAuthError(400, "invalid_grant", INVALID_GRANT) from None
            except OAuthError as exc:
                return JSONResponse({"error": exc.error, "error_description": exc.description},
                                    status_code=exc.status)
            return JSONResponse({"access_token": f"Atza|{issued.access_token}", "token_type": "bearer",
                                 "expires_in": issued.expires_in})

    # --- the gate -------------------------------------------------------------------------------------------------

    def _api(self, handler: Handler) -> Handler:
        """Counters, faults, the model's validation, the access token (an RDT where restricted), the usage plan."""

        async def gated(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            path, method = request.url.path, request.method
            query = parse_qsl(request.url.query, keep_blank_values=True)
            operation = spec.operation_id(method, path) or "unknown"
            headers = {"x-amzn-RequestId": str(uuid.uuid4())}
            with self.lock:
                self.counters.requests += 1
                self.counters.log.append({"method": method, "path": path, "query": query, "body": body,
                                          "operation": operation})
                self.operations[operation] = self.operations.get(operation, 0) + 1
                fault = self.faults.next(method)
                if fault == "401":
                    self.tokens.drop_access()
            if fault == "500":
                return _error(500, "InternalFailure", "We encountered an internal error. Please try again.",
                              headers=headers)
            if fault == "429":
                with self.lock:
                    self.counters.throttled += 1
                return JSONResponse(QUOTA, status_code=429, headers=headers)
            await self.delay(fault)
            token = request.headers.get("x-amz-access-token", "")
            with self.lock:
                problem = self._authorized(token, operation, method, path)
                if problem is not None:
                    return _error(403, "Unauthorized", "Access to requested resource is denied.", problem,
                                  headers=headers)
                throttled = self._limits.take(self.tokens.clock.time(), operation)
                if throttled is not None:
                    self.counters.throttled += 1
                    return JSONResponse(QUOTA, status_code=429, headers=headers)
            plan = PLANS.get(operation)
            if plan is not None:
                headers["x-amzn-RateLimit-Limit"] = f"{plan.rate:g}"
            problems = spec.request_problems(method, path, query, body)
            if problems:
                return _error(400, "InvalidInput", "Invalid input.", "; ".join(problems), headers=headers)
            response = await handler(request)
            response.headers.update(headers if response.status_code in (200, 400, 404) else
                                    {"x-amzn-RequestId": headers["x-amzn-RequestId"]})
            if fault == "timeout-after-write":
                await self.answer_late()
            return response

        return gated

    def _authorized(self, token: str, operation: str, method: str, path: str) -> str | None:
        if operation in GRANTLESS:
            grantless = token.removeprefix("Atc|")
            if not token.startswith("Atc|") or grantless not in self.grantless_scopes:
                return (f"{operation} is a grantless operation: call it with an LWA access token from the "
                        "client_credentials grant (scope sellingpartnerapi::notifications), not a seller's token.")
            if self.grantless_scopes[grantless] != "sellingpartnerapi::notifications":
                return "The access token's scope does not grant the Notifications API."
            why = self.grantless.store.check(grantless)
            return None if why is None else ("The access token you provided has expired." if why == "expired" else
                                             "The access token you provided is revoked, malformed or invalid.")
        if operation in RESTRICTED:
            found = self.rdts.get(token)
            if found is None:
                return ("This operation requires a Restricted Data Token (RDT) for the resource; the LWA token "
                        "does not grant it." if token.startswith("Atza|") else
                        "The access token you provided is revoked, malformed or invalid.")
            resources, expires = found
            if expires <= self.tokens.clock.time():
                return "The access token you provided has expired."
            if not any(m == method and re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)), path)
                       for m, p in resources):
                return "The Restricted Data Token does not cover this resource."
            return None
        why = self.tokens.check(token.removeprefix("Atza|")) if token.startswith("Atza|") else "invalid"
        if why == "expired":
            return "The access token you provided has expired."
        if why is not None:
            return "The access token you provided is revoked, malformed or invalid."
        return None

    # --- HTTP: tokens ---------------------------------------------------------------------------------------------

    async def _rdt(self, request: Request) -> Response:
        body = await request.json()
        resources = {(str(r["method"]), str(r["path"])) for r in body["restrictedResources"]}
        with self.lock:
            token = f"Atz.sprdt|{secrets.token_urlsafe(24)}"
            self.rdts[token] = (resources, self.tokens.clock.time() + 3600)
        return JSONResponse({"restrictedDataToken": token, "expiresIn": 3600})

    # --- HTTP: orders ---------------------------------------------------------------------------------------------

    def _shown(self, order: dict[str, Any], included: set[str]) -> dict[str, Any]:
        shown = {k: v for k, v in order.items() if k not in SECTIONS.values()}
        for name, key in SECTIONS.items():
            if name in included and key in order:
                shown[key] = order[key]
        copied: dict[str, Any] = json.loads(json.dumps(shown))
        return copied

    async def _search(self, request: Request) -> Response:
        q = dict(parse_qsl(request.url.query))
        afters = [k for k in ("createdAfter", "lastUpdatedAfter") if k in q]
        if len(afters) != 1 and "paginationToken" not in q:
            return _error(400, "InvalidInput", "Exactly one of createdAfter or lastUpdatedAfter must be given.")
        size = int(q.get("maxResultsPerPage", "100"))
        if not 1 <= size <= 100:
            return _error(400, "InvalidInput", "maxResultsPerPage must be between 1 and 100.")
        with self.lock:
            if "paginationToken" in q:
                found = self._pages.get(q["paginationToken"])
                if found is None:
                    return _error(400, "InvalidInput", "Invalid paginationToken.")
                filters, offset = found
                q = {**dict(parse_qsl(filters)), "maxResultsPerPage": str(size)}
                afters = [k for k in ("createdAfter", "lastUpdatedAfter") if k in q]
            else:
                filters, offset = "&".join(f"{k}={v}" for k, v in sorted(q.items()) if k != "maxResultsPerPage"), 0
            if self.faults.repeat_armed and offset and self._last_page is not None:
                self.faults.take_repeat()
                return Response(self._last_page, media_type="application/json")
            after = _parse(q[afters[0]])
            field = "createdTime" if afters[0] == "createdAfter" else "lastUpdatedTime"
            wanted_by = set(q.get("fulfilledBy", "").split(",")) - {""}
            statuses = set(q.get("fulfillmentStatuses", "").split(",")) - {""}
            rows = [o for o in self.orders.values() if _parse(o[field]) >= after
                    and (not wanted_by or o["fulfillment"]["fulfilledBy"] in wanted_by)
                    and (not statuses or o["fulfillment"]["fulfillmentStatus"] in statuses)
                    and q.get("marketplaceIds", BRAZIL).find(o["salesChannel"]["marketplaceId"]) >= 0]
            rows.sort(key=lambda o: (o["lastUpdatedTime"], o["orderId"]))
            included = set(q.get("includedData", "").split(","))
            page = [self._shown(o, included) for o in rows[offset:offset + size]]
            answer: dict[str, Any] = {"orders": page, "lastUpdatedBefore": _stamp(_now() - timedelta(minutes=2))}
            if offset + size < len(rows):
                token = secrets.token_urlsafe(18)
                self._pages[token] = (filters, offset + size)
                answer["pagination"] = {"nextToken": token}
            encoded = json.dumps(answer).encode()
            self._last_page = encoded
        return Response(encoded, media_type="application/json")

    async def _get_order(self, request: Request) -> Response:
        included = set(dict(parse_qsl(request.url.query)).get("includedData", "").split(","))
        with self.lock:
            order = self.orders.get(request.path_params["orderId"])
            if order is None:
                return _error(404, "NotFound", f"Order {request.path_params['orderId']} not found.")
            return JSONResponse({"order": self._shown(order, included)})

    # --- HTTP: shipment invoicing ---------------------------------------------------------------------------------

    async def _shipment(self, request: Request) -> Response:
        with self.lock:
            shipment = self.shipments.get(request.path_params["shipmentId"])
            if shipment is None:
                return _error(404, "NotFound", "Shipment not found.")
            return JSONResponse({"payload": self._detail(shipment)})

    def _detail(self, shipment: dict[str, Any]) -> dict[str, Any]:
        order = self.orders[shipment["order_id"]]
        delivery = order["recipient"]["deliveryAddress"]
        buyer_doc = next(r for r in order["tax"]["taxRegistrations"] if r["entityType"] == "BUYER")
        return {
            "WarehouseId": "GRU-ONSITE-1", "AmazonOrderId": order["orderId"], "AmazonShipmentId": shipment["id"],
            "PurchaseDate": order["createdTime"], "MarketplaceId": BRAZIL, "SellerId": self.seller_id,
            "SellerDisplayName": "Loja Modelo", "BuyerName": order["buyer"]["buyerName"],
            "ShippingAddress": {"Name": delivery["name"], "AddressLine1": delivery.get("addressLine1", ""),
                                "AddressLine2": delivery.get("addressLine2", ""), "City": delivery.get("city", ""),
                                "District": delivery["extendedFields"].get("neighborhood", ""),
                                "StateOrRegion": delivery.get("stateOrRegion", ""),
                                "PostalCode": delivery.get("postalCode", ""), "CountryCode": "BR",
                                "Phone": delivery.get("phone", ""), "AddressType": "Residential"},
            "PaymentMethodDetails": [p["paymentMethod"] for p in order["payment"]["paymentExecutions"]],
            "Payments": [{"PaymentMethod": p["paymentMethod"], "AcquirerId": p.get("acquirerId", ""),
                          "CardBrand": p.get("cardBrand", ""), "AuthorizationCode": p.get("authorizationCode", ""),
                          "PaymentValue": {"CurrencyCode": "BRL", "Amount": p["paymentAmount"]["amount"]}}
                         for p in order["payment"]["paymentExecutions"]],
            "BuyerTaxInfo": {"TaxingRegion": delivery.get("stateOrRegion", ""),
                             "TaxClassifications": [{"Name": buyer_doc["taxRegistrationType"],
                                                     "Value": buyer_doc["taxRegistrationNumber"]}]},
            "MarketplaceTaxInfo": {"CompanyLegalName": "Amazon Serviços de Varejo do Brasil Ltda",
                                   "TaxingRegion": "SP",
                                   "TaxClassifications": [{"Name": "CNPJ", "Value": MARKETPLACE_CNPJ}]},
            "ShipmentItems": [{"ASIN": i["product"]["asin"], "SellerSKU": i["product"]["sellerSku"],
                               "OrderItemId": i["orderItemId"], "Title": i["product"]["title"],
                               "QuantityOrdered": i["quantityOrdered"],
                               "ItemPrice": {"CurrencyCode": "BRL", "Amount": f"{float(i['product']['price']['unitPrice']['amount']) * i['quantityOrdered']:.2f}"}}  # noqa: E501
                              for i in self._items_of(shipment)],
        }

    def _items_of(self, shipment: dict[str, Any]) -> list[dict[str, Any]]:
        """The order items a shipment carries: all of them, unless Amazon split the order into several
        shipments (``items``: the order item ids of this one)."""
        items = self.orders[shipment["order_id"]]["orderItems"]
        return [i for i in items if "items" not in shipment or i["orderItemId"] in shipment["items"]]

    async def _submit(self, request: Request) -> Response:
        body = await request.json()
        shipment_id = request.path_params["shipmentId"]
        try:
            xml = base64.b64decode(str(body["InvoiceContent"]), validate=True)
        except (binascii.Error, ValueError):
            return _error(400, "InvalidInput", "Shipment ID is invalid", "InvoiceContent fails encoding: it is not "
                                                                         "base64")
        given = str(body["ContentMD5Value"])
        if given not in (md5_base64(xml), hashlib.md5(xml).hexdigest()):
            return _error(400, "InvalidInput", "ContentMD5Value does not match the invoice content",
                          "The MD5 of InvoiceContent differs from ContentMD5Value")
        with self.lock:
            shipment = self.shipments.get(shipment_id)
            if shipment is None:
                return _error(404, "NotFound", "Shipment not found.")
            if shipment["status"] == "Cancelled":
                return _error(400, "InvalidInput", "The shipment was cancelled and takes no invoice",
                              f"Shipment {shipment_id} is Cancelled")
            key, problems = self._check_nfe(shipment, xml)
            current = self.invoices.get(shipment_id)
            if current is not None and current["status"] in ("Accepted", "Processing") and current["key"] == key:
                return JSONResponse({})  # the same note again: nothing changes
            if current is not None and current["status"] in ("Accepted", "Processing") and current["key"] != key:
                problems = [f"duplicate NF-e: shipment {shipment_id} already has note {current['key']}; this one "
                            f"has access key {key}"]
            entry = {"shipment": shipment_id, "key": key, "md5": given, "xml": xml.decode(errors="replace"),
                     "at": self.tokens.clock.time(), "problems": problems,
                     "outcome": "Errored" if problems else "Accepted", "status": "Processing"}
            self.submissions.append(entry)
            if current is None or current["status"] not in ("Accepted",) or not problems:
                self.invoices[shipment_id] = entry
            else:
                current.setdefault("rejected", []).append(entry)
        return JSONResponse({})

    def _check_nfe(self, shipment: dict[str, Any], xml: bytes) -> tuple[str | None, list[str]]:
        """The checks Amazon's validation stands for here: an authorized nfeProc, a valid access key, the buyer's
        CPF/CNPJ as recipient, the shipment's SKUs and an NCM on every item."""
        try:
            root = ET.fromstring(xml)
        except ET.ParseError:
            return None, ["the XML does not parse"]
        problems = []
        key = root.findtext(f"{NFE}protNFe/{NFE}infProt/{NFE}chNFe")
        if root.tag != f"{NFE}nfeProc" or root.findtext(f"{NFE}protNFe/{NFE}infProt/{NFE}cStat") != "100":
            problems.append("not an NF-e authorized by SEFAZ (nfeProc with cStat 100)")
        if not key or len(key) != 44 or str(access_key_check_digit(key[:43])) != key[43]:
            problems.append(f"access key {key!r} is not valid")
        problems += [f"NF-e 4.00 schema: {p}" for p in nfe_check.schema_problems(xml)]
        order = self.orders[shipment["order_id"]]
        buyer = next(r for r in order["tax"]["taxRegistrations"] if r["entityType"] == "BUYER")
        dest = (root.findtext(f"{NFE}NFe/{NFE}infNFe/{NFE}dest/{NFE}CPF")
                or root.findtext(f"{NFE}NFe/{NFE}infNFe/{NFE}dest/{NFE}CNPJ"))
        if dest != buyer["taxRegistrationNumber"]:
            problems.append(f"recipient {dest} is not the buyer {buyer['taxRegistrationNumber']}")
        skus = {i["product"]["sellerSku"] for i in self._items_of(shipment)}
        found = {p.findtext(f"{NFE}cProd") for p in root.iter(f"{NFE}prod")}
        if found != skus:
            problems.append(f"items {sorted(s or '' for s in found)} are not the shipment's {sorted(skus)}")
        for prod in root.iter(f"{NFE}prod"):
            if not re.fullmatch(r"\d{8}", prod.findtext(f"{NFE}NCM") or ""):
                problems.append(f"item {prod.findtext(f'{NFE}cProd')} has no NCM")
        billed: dict[str, float] = {}
        for prod in root.iter(f"{NFE}prod"):
            sku = prod.findtext(f"{NFE}cProd") or ""
            quantity = prod.findtext(f"{NFE}qCom") or ""
            billed[sku] = billed.get(sku, 0.0) + (float(quantity) if re.fullmatch(r"\d+(\.\d+)?", quantity) else 0)
        for item in self._items_of(shipment):
            sku = item["product"]["sellerSku"]
            if sku in billed and billed[sku] != float(item["quantityOrdered"]):
                problems.append(f"item {sku}: {billed[sku]:g} unit(s) billed, {item['quantityOrdered']} shipped")
        return key, problems

    async def _invoice_status(self, request: Request) -> Response:
        shipment_id = request.path_params["shipmentId"]
        with self.lock:
            if shipment_id not in self.shipments:
                return _error(404, "NotFound", "Shipment not found.")
            status = self._settle(shipment_id)
        return JSONResponse({"payload": {"Shipments": {"AmazonShipmentId": shipment_id, "InvoiceStatus": status}}})

    def _settle(self, shipment_id: str) -> str:
        entry = self.invoices.get(shipment_id)
        if entry is None:
            return "NotFound"
        if entry["status"] == "Processing" and \
                self.tokens.clock.time() - entry["at"] >= self.settings.invoice_delay_seconds:
            entry["status"] = entry["outcome"]
        return str(entry["status"])

    # --- HTTP: listings -------------------------------------------------------------------------------------------

    async def _listing(self, request: Request) -> Response:
        seller, sku = request.path_params["sellerId"], unquote(request.path_params["sku"])
        q = dict(parse_qsl(request.url.query))
        if seller != self.seller_id:
            return _error(403, "Unauthorized", "Access to requested resource is denied.",
                          f"Seller {seller} has not authorized this application.")
        body: dict[str, Any] = await request.json() if request.method != "GET" else {}
        with self.lock:
            current = self.listings.get(sku)
            if request.method == "GET":
                if current is None:
                    return _error(404, "NOT_FOUND", f"SKU '{sku}' not found in marketplace {BRAZIL}")
                return JSONResponse(self._listing_view(current, set(q.get("includedData", "summaries").split(","))))
            preview = q.get("mode") == "VALIDATION_PREVIEW"
            if request.method == "PUT":
                attributes = dict(body["attributes"])
                product_type = body["productType"]
            else:
                if current is None:
                    return _error(404, "NOT_FOUND", f"SKU '{sku}' not found in marketplace {BRAZIL}")
                attributes = json.loads(json.dumps(current["attributes"]))
                product_type = body["productType"]
                for patch in body["patches"]:
                    name = str(patch["path"]).removeprefix("/attributes/")
                    if patch["op"] == "delete":
                        attributes.pop(name, None)
                    else:
                        attributes[name] = patch.get("value")
            issues = self._issues(attributes, product_type)
            status = "INVALID" if any(i["severity"] == "ERROR" for i in issues) else ("VALID" if preview else
                                                                                      "ACCEPTED")
            if status == "ACCEPTED":
                channels = self._channels(attributes, current)
                self.listings[sku] = {"sku": sku, "productType": product_type, "attributes": attributes,
                                      "channels": channels, "updated": _stamp()}
            return JSONResponse({"sku": sku, "status": status, "submissionId": uuid.uuid4().hex, "issues": issues})

    def _channels(self, attributes: dict[str, Any], current: dict[str, Any] | None) -> dict[str, int | None]:
        """Each channel the offer is sold through. A quantity sent for an FBA Onsite SKU is a merchant-fulfilled
        (DEFAULT) offer beside Amazon's: the duplicate the LATAM guide warns about."""
        channels: dict[str, int | None] = dict(current["channels"]) if current else {}
        for entry in attributes.get("fulfillment_availability") or []:
            code = str(entry.get("fulfillment_channel_code") or "DEFAULT")
            if "quantity" in entry:
                channels["DEFAULT"] = int(entry["quantity"])
            channels.setdefault(code, None)
        return channels

    def _issues(self, attributes: dict[str, Any], product_type: str) -> list[dict[str, Any]]:
        issues = []
        for name in LISTING_REQUIRED:
            if not attributes.get(name):
                issues.append({"code": "90220", "message": f"'{name}' is required but not supplied.",
                               "severity": "ERROR", "attributeNames": [name], "categories": ["MISSING_ATTRIBUTE"]})
        for entry in attributes.get("ncm_code") or []:
            if not re.fullmatch(r"\d{8}", str(entry.get("value", ""))):
                issues.append({"code": "4000003", "message": f"'ncm_code' value {entry.get('value')!r} is not a "
                                                             "valid 8-digit NCM.", "severity": "ERROR",
                               "attributeNames": ["ncm_code"], "categories": ["INVALID_ATTRIBUTE"]})
        for entry in attributes.get("import_designation") or []:
            if str(entry.get("value", "")) not in [str(i) for i in range(9)]:
                issues.append({"code": "4000003", "message": "'import_designation' must be an origin code 0-8.",
                               "severity": "ERROR", "attributeNames": ["import_designation"],
                               "categories": ["INVALID_ATTRIBUTE"]})
        return issues

    def _listing_view(self, listing: dict[str, Any], included: set[str]) -> dict[str, Any]:
        view: dict[str, Any] = {"sku": listing["sku"]}
        if "summaries" in included:
            view["summaries"] = [{"marketplaceId": BRAZIL, "productType": listing["productType"],
                                  "itemName": (listing["attributes"].get("item_name") or [{}])[0].get("value"),
                                  "createdDate": listing["updated"], "lastUpdatedDate": listing["updated"],
                                  "status": ["BUYABLE"], "asin": "B0" + hashlib.md5(listing["sku"].encode())
                                  .hexdigest()[:8].upper()}]
        if "attributes" in included:
            view["attributes"] = listing["attributes"]
        if "issues" in included:
            view["issues"] = []
        if "fulfillmentAvailability" in included:
            view["fulfillmentAvailability"] = [{"fulfillmentChannelCode": code, **({"quantity": qty} if qty is not None
                                                                                   else {})}
                                               for code, qty in listing["channels"].items()]
        return view

    # --- HTTP: SQS ------------------------------------------------------------------------------------------------

    async def _sqs(self, request: Request) -> Response:
        raw = await request.body()
        target = request.headers.get("x-amz-target", "").removeprefix("AmazonSQS.")
        with self.lock:
            self.counters.requests += 1
            self.counters.log.append({"method": "POST", "path": "/", "query": [], "body": None, "operation": target})
            fault = self.faults.next("POST")
        if fault == "500":
            return JSONResponse({"__type": "com.amazonaws.sqs#InternalError", "message": "internal"}, status_code=500)
        if fault == "429":
            return JSONResponse({"__type": "com.amazonaws.sqs#ThrottlingException", "message": "Rate exceeded"},
                                status_code=429)
        await self.delay(fault)
        refused = self._sqs_signature(request, raw)
        if refused is not None:
            return refused
        body = json.loads(raw or b"{}")
        if not str(body.get("QueueUrl", "")).endswith(f"/{self.queue_name}"):
            return JSONResponse({"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                                 "message": "The specified queue does not exist."}, status_code=400)
        if target == "ReceiveMessage":
            return await self._receive(body)
        now = self.tokens.clock.time()
        with self.lock:
            if target == "ChangeMessageVisibility":
                for message in self.queue:
                    if message["receipt"] == body.get("ReceiptHandle"):
                        message["visible_at"] = now + float(body.get("VisibilityTimeout", 0))
                return JSONResponse({})
            if target == "DeleteMessage":
                handle = body.get("ReceiptHandle")
                self.queue = [m for m in self.queue if m["receipt"] != handle]
                return JSONResponse({})
        return JSONResponse({"__type": "com.amazonaws.sqs#InvalidAction", "message": f"{target}"}, status_code=400)

    async def _receive(self, body: dict[str, Any]) -> Response:
        """``ReceiveMessage``: up to ``MaxNumberOfMessages`` visible messages, hidden for ``VisibilityTimeout``. With
        ``WaitTimeSeconds`` (0 to 20, SQS's long polling) an empty queue holds the answer until a message arrives or
        the time is up."""
        wait = body.get("WaitTimeSeconds", 0)
        if not isinstance(wait, int) or isinstance(wait, bool) or not 0 <= wait <= 20:
            return JSONResponse({"__type": "com.amazonaws.sqs#InvalidParameterValue",
                                 "message": f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be "
                                            ">= 0 and <= 20, if provided."}, status_code=400)
        wanted = max(1, min(10, int(body.get("MaxNumberOfMessages", 1))))
        hidden = float(body.get("VisibilityTimeout", self.settings.visibility_timeout))
        deadline = time.monotonic() + wait
        while True:
            now = self.tokens.clock.time()
            out: list[dict[str, Any]] = []
            with self.lock:
                for message in self.queue:
                    if len(out) >= wanted:
                        break
                    if message["visible_at"] <= now:
                        message["visible_at"] = now + hidden
                        message["receipt"] = secrets.token_urlsafe(24)
                        message["received"] += 1
                        out.append({"MessageId": message["id"], "ReceiptHandle": message["receipt"],
                                    "MD5OfBody": hashlib.md5(message["body"].encode()).hexdigest(),
                                    "Body": message["body"]})
            if out or time.monotonic() >= deadline:
                return JSONResponse({"Messages": out} if out else {})
            await asyncio.sleep(LONG_POLL_CHECK_SECONDS)

    def _sqs_signature(self, request: Request, raw: bytes) -> Response | None:
        header = request.headers.get("authorization", "")
        found = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/sqs/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=([0-9a-f]+)$", header)
        if found is None or found.group(1) != self.sqs_key_id:
            return JSONResponse({"__type": "com.amazon.coral.service#InvalidClientTokenId",
                                 "message": "The security token included in the request is invalid."},
                                status_code=403)
        names = [n for n in found.group(4).split(";") if n not in ("host", "x-amz-date")]
        stamp = request.headers.get("x-amz-date", "")
        try:
            moment = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            moment = datetime.min.replace(tzinfo=UTC)
        expected = sigv4("POST", str(request.url), raw, {n: request.headers.get(n, "") for n in names},
                         self.sqs_key_id, self.sqs_secret, found.group(3), now=moment)
        if abs((_now() - moment).total_seconds()) > 300 or \
                not secrets.compare_digest(expected["Authorization"], header):
            return JSONResponse({"__type": "com.amazon.coral.service#SignatureDoesNotMatch",
                                 "message": "The request signature we calculated does not match the signature you "
                                            "provided."}, status_code=403)
        return None

    # --- notifications --------------------------------------------------------------------------------------------

    def lose_notifications(self, count: int) -> None:
        """The next ``count`` notifications never reach the queue (a lost delivery; the sweep must recover)."""
        with self.lock:
            self._lose_next += count

    def _notify(self, kind: str, payload: dict[str, Any]) -> None:
        notification = {"NotificationVersion": "1.0", "NotificationType": kind, "PayloadVersion": "1.0",
                        "EventTime": _stamp(), "Payload": payload,
                        "NotificationMetadata": {"ApplicationId": self.client_id, "SubscriptionId": "sub-hub",
                                                 "PublishTime": _stamp(), "NotificationId": str(uuid.uuid4())}}
        self.sent_notifications.append(notification)
        if self.settings.require_subscriptions and not self.subscribed(kind):
            self.unsubscribed += 1
            return
        if self._lose_next:
            self._lose_next -= 1
            self.lost += 1
            return
        self.queue.append({"id": str(uuid.uuid4()), "body": json.dumps(notification), "visible_at": 0.0,
                           "receipt": None, "received": 0})

    def _shipment_notice(self, shipment: dict[str, Any]) -> None:
        self._notify("FBA_OUTBOUND_SHIPMENT_STATUS", {"FBAOutboundShipmentStatusNotification": {
            "SellerId": self.seller_id, "AmazonOrderId": shipment["order_id"], "AmazonShipmentId": shipment["id"],
            "ShipmentStatus": shipment["status"]}})

    def _order_change(self, order: dict[str, Any]) -> None:
        status = {"CANCELLED": "Canceled", "UNSHIPPED": "Unshipped", "SHIPPED": "Shipped"}.get(
            order["fulfillment"]["fulfillmentStatus"], "Unshipped")
        self._notify("ORDER_CHANGE", {"OrderChangeNotification": {
            "NotificationLevel": "OrderLevel", "SellerId": self.seller_id, "AmazonOrderId": order["orderId"],
            "OrderChangeType": "OrderStatusChange",
            "OrderChangeTrigger": {"TimeOfOrderChange": order["lastUpdatedTime"], "ChangeReason": "Order changed"},
            "Summary": {"MarketplaceId": BRAZIL, "OrderStatus": status, "PurchaseDate": order["createdTime"],
                        "DestinationPostalCode": order["recipient"]["deliveryAddress"].get("postalCode", ""),
                        "FulfillmentType": "AFN", "OrderType": "StandardOrder", "NumberOfItemsShipped": 0,
                        "NumberOfItemsUnshipped": sum(i["quantityOrdered"] for i in order["orderItems"]),
                        "OrderItems": [{"OrderItemId": i["orderItemId"], "SellerSKU": i["product"]["sellerSku"],
                                        "SupplySourceId": "GRU-ONSITE-1", "Quantity": i["quantityOrdered"],
                                        "QuantityShipped": 0}
                                       for i in order["orderItems"]]}}})

    # --- orders: control ------------------------------------------------------------------------------------------

    def create_order(self, items: Sequence[tuple[str, int, str]] | None = None, *, document: str | None = None,
                     address: dict[str, Any] | None = None, notify: bool = True, fulfilled_by: str = "AMAZON",
                     buyer: str | None = None, payment: str = "CreditCard") -> tuple[str, str]:
        """An FBA Onsite order whose shipment Amazon just created; (order id, shipment id)."""
        with self.lock:
            return self._create(items, document=document, address=address, notify=notify,
                                fulfilled_by=fulfilled_by, buyer=buyer, payment=payment)

    def _create(self, items: Sequence[tuple[str, int, str]] | None, *, document: str | None = None,
                address: dict[str, Any] | None = None, notify: bool = True, fulfilled_by: str = "AMAZON",
                buyer: str | None = None, payment: str = "CreditCard", stamp: str | None = None) -> tuple[str, str]:
        n = next(self._serial)
        order_id = f"701-{self._rng.randrange(10**6, 10**7)}-{self._rng.randrange(10**6, 10**7)}"
        shipment_id = "D" + "".join(self._rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789")
                                    for _ in range(8))
        if items is None:
            sku, _title, price = PRODUCTS[n % len(PRODUCTS)]
            items = [(sku, 1 + n % 3, price)]
        city, uf, cep = CITIES[n % len(CITIES)]
        name = buyer or f"Cliente Amazon {n}"
        doc = document or cpf(f"{(n * 7919) % 10**9:09d}")
        delivery = {"name": name, "addressLine1": f"Rua das Flores, {100 + n}", "city": city,
                    "stateOrRegion": uf, "postalCode": cep, "countryCode": "BR", "phone": "11987654321",
                    "addressType": "RESIDENTIAL", "districtOrCounty": "Centro",
                    "extendedFields": {"streetName": "Rua das Flores", "streetNumber": str(100 + n),
                                       "neighborhood": "Centro"}}
        if address is not None:
            delivery.update(address)
        lines = [{"orderItemId": f"{order_id}-{i}", "quantityOrdered": qty,
                  "product": {"asin": "B0" + hashlib.md5(sku.encode()).hexdigest()[:8].upper(), "sellerSku": sku,
                              "title": next((t for s, t, _ in PRODUCTS if s == sku), f"Produto {sku}"),
                              "price": {"unitPrice": _money(price)}}}
                 for i, (sku, qty, price) in enumerate(items, start=1)]
        total = sum(float(price) * qty for _, qty, price in items)
        stamp = stamp or _stamp()
        execution: dict[str, Any] = {"paymentMethod": payment, "paymentAmount": _money(total)}
        if payment in ("CreditCard", "DebitCard"):
            execution.update(acquirerId="01027058000191", cardBrand="Visa", authorizationCode=f"{n:06d}")
        order = {
            "orderId": order_id, "createdTime": stamp, "lastUpdatedTime": stamp,
            "salesChannel": {"channelName": "AMAZON", "marketplaceId": BRAZIL, "marketplaceName": "Amazon.com.br"},
            "buyer": {"buyerName": name, "buyerEmail": f"{secrets.token_hex(6)}@marketplace.amazon.com.br"},
            "recipient": {"deliveryAddress": delivery},
            "proceeds": {"grandTotal": _money(total), "breakdowns": [{"type": "ITEM", "subtotal": _money(total)}]},
            "tax": {"taxRegistrations": [
                {"entityType": "BUYER", "taxRegistrationType": "CNPJ" if len(doc) == 14 else "CPF",
                 "taxRegistrationNumber": doc, "legalName": name},
                {"entityType": "MARKETPLACE", "taxRegistrationType": "CNPJ", "taxRegistrationNumber": MARKETPLACE_CNPJ,
                 "legalName": "Amazon Serviços de Varejo do Brasil Ltda"}],
                "taxInvoicing": {"invoiceStatus": "NOT_FOUND"}},
            "payment": {"paymentExecutions": [execution]},
            "fulfillment": {"fulfillmentStatus": "UNSHIPPED", "fulfilledBy": fulfilled_by},
            "orderItems": lines,
            "fulfillmentOrders": [{"fulfillmentOrderId": shipment_id}],
        }
        self.orders[order_id] = order
        shipment = {"id": shipment_id, "order_id": order_id, "status": "Created",
                    "created_at": self.tokens.clock.time()}
        self.shipments[shipment_id] = shipment
        if notify:
            self._shipment_notice(shipment)
        return order_id, shipment_id

    def create_split_order(self, groups: Sequence[Sequence[tuple[str, int, str]]], **kwargs: Any
                           ) -> tuple[str, list[str]]:
        """An FBA Onsite order Amazon delivers in several shipments (one per group of items, each its own
        AmazonShipmentId and Created notification); (order id, shipment ids)."""
        notify = kwargs.pop("notify", True)
        with self.lock:
            order_id, whole = self._create([item for group in groups for item in group], notify=False, **kwargs)
            order = self.orders[order_id]
            created = self.shipments.pop(whole)["created_at"]
            ids: list[str] = []
            start = 0
            for group in groups:
                shipment_id = "D" + "".join(self._rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789")
                                            for _ in range(8))
                lines = order["orderItems"][start:start + len(group)]
                start += len(group)
                self.shipments[shipment_id] = {"id": shipment_id, "order_id": order_id, "status": "Created",
                                               "created_at": created, "items": [i["orderItemId"] for i in lines]}
                ids.append(shipment_id)
            order["fulfillmentOrders"] = [{"fulfillmentOrderId": i} for i in ids]
            if notify:
                for shipment_id in ids:
                    self._shipment_notice(self.shipments[shipment_id])
        return order_id, ids

    def cancel_shipment(self, shipment_id: str, *, notify: bool = True) -> None:
        """Amazon cancelled the shipment (the buyer cancelled): Cancelled notification, order CANCELLED."""
        with self.lock:
            shipment = self.shipments[shipment_id]
            shipment["status"] = "Cancelled"
            order = self.orders[shipment["order_id"]]
            order["fulfillment"]["fulfillmentStatus"] = "CANCELLED"
            order["lastUpdatedTime"] = _stamp()
            if notify:
                self._shipment_notice(shipment)

    def invoice_status(self, shipment_id: str) -> str:
        with self.lock:
            return self._settle(shipment_id)

    def make_hybrid(self, sku: str) -> None:
        """The seller also offers ``sku`` from their own stock (a merchant-fulfilled offer beside FBA Onsite)."""
        with self.lock:
            listing = self.listings.setdefault(sku, {"sku": sku, "productType": "PRODUCT", "attributes": {},
                                                     "channels": {"AMAZON_NA": None}, "updated": _stamp()})
            listing["channels"]["DEFAULT"] = 5

    def create_listing(self, sku: str, price: str = "10.00") -> None:
        with self.lock:
            attributes = {"item_name": [{"value": f"Produto {sku}", "marketplace_id": BRAZIL}],
                          "condition_type": [{"value": "new_new", "marketplace_id": BRAZIL}],
                          "ncm_code": [{"value": "61091000", "marketplace_id": BRAZIL}],
                          "import_designation": [{"value": "0", "marketplace_id": BRAZIL}],
                          "purchasable_offer": [{"currency": "BRL", "marketplace_id": BRAZIL,
                                                 "our_price": [{"schedule": [{"value_with_tax": float(price)}]}]}],
                          "fulfillment_availability": [{"fulfillment_channel_code": "AMAZON_NA"}]}
            self.listings[sku] = {"sku": sku, "productType": "PRODUCT", "attributes": attributes,
                                  "channels": {"AMAZON_NA": None}, "updated": _stamp()}

    def authorized_nfe(self, shipment_id: str, number: int, *, issuer: str = "11222333000181",
                       ncm: str = "61091000") -> tuple[str, str]:
        """(access key, nfeProc XML) of the note an ERP would issue for the shipment (tests and the demo use it where
        no ERP sandbox issues the note): its buyer and delivery address, its items, the order's payment, Amazon as
        intermediary, signed, with SEFAZ's protocol; valid against the NF-e 4.00 schema (:mod:`hub.sandbox.nfe`)."""
        with self.lock:
            shipment = self.shipments[shipment_id]
            order = self.orders[shipment["order_id"]]
            buyer = next(r for r in order["tax"]["taxRegistrations"] if r["entityType"] == "BUYER")
            delivery = order["recipient"]["deliveryAddress"]
            extended = delivery.get("extendedFields") or {}
            lines = self._items_of(shipment)
            execution = (order["payment"]["paymentExecutions"] or [{}])[0]
        issued = datetime.now(nfe.BRT)
        key = nfe.access_key("SP", issued, issuer, 1, number, number * 7)
        items = [nfe.Item(sku=i["product"]["sellerSku"], name=i["product"]["title"], ncm=ncm,
                          quantity=Decimal(str(i["quantityOrdered"])),
                          unit_price=Decimal(i["product"]["price"]["unitPrice"]["amount"])) for i in lines]
        total = sum((i.quantity * i.unit_price for i in items), Decimal("0"))
        method = str(execution.get("paymentMethod") or "Other")
        card = nfe.Card(execution.get("acquirerId"), execution.get("cardBrand"), execution.get("authorizationCode")) \
            if method in ("CreditCard", "DebitCard") else None
        recipient = nfe.Party(document=buyer["taxRegistrationNumber"], name=buyer["legalName"],
                              street=extended.get("streetName") or delivery.get("addressLine1") or "-",
                              number=extended.get("streetNumber") or "S/N",
                              district=extended.get("neighborhood") or delivery.get("districtOrCounty") or "-",
                              city=delivery.get("city") or "-", uf=delivery.get("stateOrRegion") or "SP",
                              zip=delivery.get("postalCode") or "", phone=delivery.get("phone"))
        xml = nfe.authorized_nfe(
            key=key, issued=issued, recipient=recipient, items=items,
            issuer=nfe.Party(document=issuer, name="Loja Modelo Comércio Ltda", ie="110042490114",
                             street="Avenida Paulista", number="1000", district="Bela Vista", zip="01310100"),
            payments=[(TPAG.get(method, "99"), total, card)], intermediary=MARKETPLACE_CNPJ,
            intermediary_id=self.seller_id, extra_info=f"Amazon order {order['orderId']}, shipment {shipment_id}")
        return key, xml

    # --- what `hub demo` asks for without knowing ids ---------------------------------------------------------

    def _offers(self) -> list[tuple[str, str]]:
        """(SKU, price) of the FBA Onsite offers the seller's system wrote, oldest first."""
        found = []
        for sku, listing in self.listings.items():
            offer = (listing["attributes"].get("purchasable_offer") or [{}])[0]
            price = ((offer.get("our_price") or [{}])[0].get("schedule") or [{}])[0].get("value_with_tax")
            if price is not None and "DEFAULT" not in listing["channels"]:
                found.append((sku, f"{float(price):.2f}"))
        return found

    def demo_orders(self, count: int = 3, *, start: int = 0) -> str:
        """Buyers order FBA Onsite offers (one each) and Amazon creates their shipments; returns the order ids."""
        with self.lock:
            offers = self._offers()
            if not offers:
                raise ValueError("no FBA Onsite offer on Amazon yet: sync the offers first")
            made = [self._create([(sku, 1, price)])[0]
                    for sku, price in (offers[(start + i) % len(offers)] for i in range(count))]
        return ", ".join(made)

    def demo_order_without_address_number(self) -> str:
        """An order whose delivery address has no number and no neighbourhood (the buyer typed it so)."""
        with self.lock:
            sku, price = self._offers()[0]
            order_id, _ = self._create([(sku, 1, price)], address={
                "extendedFields": {"streetName": "Rua sem número"}, "addressLine1": "Rua sem número",
                "districtOrCounty": ""})
        return order_id

    def demo_order_of(self, sku: str) -> str:
        with self.lock:
            order_id, _ = self._create([(sku, 1, "10.00")])
        return order_id

    def demo_split_order(self) -> str:
        """An order of two offers that Amazon delivers in two shipments (two AmazonShipmentIds); its id."""
        with self.lock:
            offers = self._offers()
        if not offers:
            raise ValueError("no FBA Onsite offer on Amazon yet: sync the offers first")
        (first, first_price), (second, second_price) = offers[0], offers[1 % len(offers)]
        order_id, _ = self.create_split_order([[(first, 1, first_price)], [(second, 2, second_price)]])
        return order_id

    def demo_cancel_order(self) -> str:
        """A buyer cancels right after ordering: Amazon creates the shipment, then cancels it."""
        with self.lock:
            sku, price = self._offers()[0]
            order_id, shipment = self._create([(sku, 1, price)])
        self.cancel_shipment(shipment)
        return order_id

    def demo_revoke(self) -> str:
        """The seller's authorization lapsed (365 days) or was removed in Seller Central."""
        self.revoke()
        return self.seller_id

    # --- the hub.sandbox.Sandbox protocol -------------------------------------------------------------------------

    def seed(self, stream: str, count: int) -> list[str]:
        if stream == "sales":
            with self.lock:
                offers = self._offers()  # orders of the seller's FBA Onsite offers when there are some
                return [self._create([(offers[i % len(offers)][0], 1, offers[i % len(offers)][1])]
                                     if offers else None)[1] for i in range(count)]
        if stream in ("products", "prices"):
            skus = [f"SEED-{next(self._serial)}" for _ in range(count)]
            for sku in skus:
                self.create_listing(sku)
            return skus
        raise ValueError(f"seed does not support {stream!r} (sales, products, prices)")

    def touch(self, stream: str, external_id: str) -> None:
        """A change to the order (Amazon sends ORDER_CHANGE): its buyer's phone and change date."""
        with self.lock:
            order = self.orders[self.shipments[external_id]["order_id"]]
            order["recipient"]["deliveryAddress"]["phone"] = f"1199{next(self._serial):07d}"
            order["lastUpdatedTime"] = _stamp()
            self._order_change(order)

    def records(self, stream: str) -> list[dict[str, Any]]:
        with self.lock:
            if stream == "sales":
                return [{"id": s["id"], "order_id": s["order_id"], "status": s["status"]}
                        for s in self.shipments.values()]
            if stream == "products":
                return [json.loads(json.dumps(v)) for v in self.listings.values()]
            if stream == "prices":
                return [{"sku": k, "price": v["attributes"].get("purchasable_offer", [{}])[0].get("our_price")}
                        for k, v in self.listings.items()]
            if stream == "invoices":
                return [{"shipment": e["shipment"], "key": e["key"], "status": e["status"]} for e in self.submissions]
        raise ValueError(f"records does not support {stream!r}")

    def expected_pull(self, stream: str) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": s["id"]} for s in self.shipments.values()
                    if self.orders[s["order_id"]]["fulfillment"]["fulfilledBy"] == "AMAZON"]

    def seed_invalid(self, stream: str) -> str:
        """An order whose buyer CPF has a wrong check digit (Amazon holds it; hub must refuse it)."""
        if stream != "sales":
            raise ValueError("seed_invalid supports sales only")
        with self.lock:
            return self._create(None, document=wrong_check_digit(cpf("123456789")))[1]

    def seed_future(self, stream: str) -> str:
        if stream != "sales":
            raise ValueError("seed_future supports sales only")
        with self.lock:
            order_id, shipment_id = self._create(None)
            self.orders[order_id]["lastUpdatedTime"] = FUTURE
            return shipment_id

    def age(self, stream: str, seconds: float) -> None:
        with self.lock:
            for order in self.orders.values():
                if order["lastUpdatedTime"] != FUTURE:
                    order["lastUpdatedTime"] = _stamp(_parse(order["lastUpdatedTime"]) - timedelta(seconds=seconds))
                    order["createdTime"] = _stamp(_parse(order["createdTime"]) - timedelta(seconds=seconds))

    def stats(self, *, clear_log: bool = False) -> dict[str, Any]:
        """The base's counts, and what Amazon's side shows of the hub: for each shipment whose note was submitted,
        the seconds from Amazon creating the shipment to the NF-e reaching ``submitInvoice``; the calls per order of
        each operation, and what share of its usage plan they take at 1,000 orders an hour."""
        found = super().stats(clear_log=clear_log)
        with self.lock:
            waits = sorted(e["at"] - self.shipments[e["shipment"]]["created_at"]
                           for e in {e["shipment"]: e for e in reversed(self.submissions)}.values())
            orders = max(1, len(self.orders))
            per_order = {op: round(n / orders, 3) for op, n in sorted(self.operations.items()) if op != "unknown"}
            operations = {op: n for op, n in self.operations.items() if op != "unknown"}

        def pct(q: float) -> float | None:
            return round(waits[min(len(waits) - 1, int(q * len(waits)))], 3) if waits else None

        found["figures"] = {
            "shipments": len(self.shipments), "invoices_submitted": len(waits),
            "created_to_submitted_p50_s": pct(0.5), "created_to_submitted_p95_s": pct(0.95),
            "calls_per_order": per_order,
            "plan_share_at_1000_orders_per_hour": {
                op: f"{100 * n * 1000 / 3600 / PLANS[op].rate:.0f}%" for op, n in per_order.items() if op in PLANS},
            # raw counts and each operation's plan (requests/s): a bench divides them by its own window
            "orders": len(self.orders), "operations": dict(operations),
            "usage_plans": {op: plan.rate * self.settings.plan_scale for op, plan in PLANS.items()}
            if self.settings.plan_scale else {},
        }
        return found

    def summary(self) -> dict[str, Any]:
        with self.lock:
            statuses: dict[str, int] = {}
            for shipment_id in self.shipments:
                status = self._settle(shipment_id)
                statuses[status] = statuses.get(status, 0) + 1
            return {"orders": len(self.orders), "queued notifications": len(self.queue),
                    "listings": len(self.listings), "invoices": statuses}


__all__ = ["MARKETPLACE_CNPJ", "AmazonSandbox", "AmazonSettings", "cnpj"]
