"""HTTP to the Selling Partner API on the core's :class:`hub.ApiClient`: the options, the LWA access token in
``x-amz-access-token``, a token bucket per operation and seller (the models' usage plans), SP-API error bodies mapped
onto hub's taxonomy, and the SQS queue the notifications arrive in.

Usage plans: each operation has its own bucket (rate per second, burst), per selling partner. The client paces
every call on the operation's bucket, shared by every worker (``ctx.throttle``), a few percent under the plan; the
last ``x-amzn-RateLimit-Limit`` Amazon announced for an operation replaces the default rate (sellers may get more).
A 429 ``QuotaExceeded`` carries no rate header (the models say it is no longer returned on 429), so the wait is one
period of the operation's plan: a read sleeps through a short one, a longer one (searchOrders: about 3 minutes) is
handed to the core, which reschedules the push or the route without counting an attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from hub import READS, ApiClient, Budget, ConnectorContext, ErrorRule, ErrorTable, HeaderAuth
from hub.errors import AuthExpired, Fatal, HubError, InvalidRecord, NotFound, RateLimited, Retriable
from pydantic import BaseModel, Field

from hub_amazon_fba import spec

SP_API_HOST = "https://sellingpartnerapi-na.amazon.com"
"""Brazil is in the North America selling region (SP-API endpoints page)."""
LWA_URL = "https://api.amazon.com/auth/o2/token"
BRAZIL = "A2Q3Y263D00KWC"
ORDERS = "/orders/2026-01-01/orders"
SHIPMENTS = "/fba/outbound/brazil/v0/shipments"
LISTINGS = "/listings/2021-08-01/items"
RDT = "/tokens/2021-03-01/restrictedDataToken"


@dataclass(frozen=True)
class Plan:
    rate: float
    burst: int


PLANS: dict[str, Plan] = {
    "searchOrders": Plan(0.0056, 20), "getOrder": Plan(0.5, 30),
    "getShipmentDetails": Plan(1.133, 25), "submitInvoice": Plan(1.133, 25), "getInvoiceStatus": Plan(1.133, 25),
    "putListingsItem": Plan(5, 10), "patchListingsItem": Plan(5, 5), "getListingsItem": Plan(5, 10),
    "deleteListingsItem": Plan(5, 5), "searchListingsItems": Plan(5, 5),
    "createRestrictedDataToken": Plan(1, 10),
    **{op: Plan(1, 5) for op in ("getDestinations", "createDestination", "getDestination", "deleteDestination",
                                 "getSubscription", "createSubscription", "getSubscriptionById",
                                 "deleteSubscriptionById")},
}
"""Default usage plans, from each operation's description in the models (rate per second, burst)."""
HEADROOM = 0.97


class AmazonOptions(BaseModel):
    """An Amazon FBA Onsite connection's options (``hub routes validate`` checks them)."""

    base_url: str = Field(default=SP_API_HOST, description="the SP-API endpoint of the North America region")
    lwa_url: str = Field(default=LWA_URL, description="Login with Amazon's token endpoint")
    marketplace_id: str = Field(default=BRAZIL, description="Amazon.com.br")
    seller_id: str | None = Field(default=None, description="the selling partner id (listings are written under it)")
    queue_url: str | None = Field(default=None, description="the SQS queue FBA_OUTBOUND_SHIPMENT_STATUS and "
                                                            "ORDER_CHANGE notifications are delivered to")
    sqs_region: str = Field(default="us-east-1", description="the queue's AWS region (SigV4)")
    queue_arn: str | None = Field(default=None, description="the queue's ARN for the notifications destination "
                                                            "(default: read from queue_url and sqs_region)")
    store: str = Field(default="fba_onsite", description="the store key sales carry (map it to the ERP's FBA "
                                                         "Onsite depósito with the route's stores mapping)")
    queue_wait_seconds: int = Field(default=0, ge=0, le=20, description="SQS long polling: a run's first receive "
                                    "waits up to this long for a notification and returns the moment one arrives "
                                    "(AWS's advice: no empty receives, no poll interval added to an order's way); "
                                    "the run holds its worker thread meanwhile")
    sweep_minutes: float = Field(default=15, gt=0, description="how often searchOrders sweeps for orders a lost "
                                                               "notification would miss")
    overlap_minutes: float = Field(default=10, ge=2, description="a sweep starts this far before the last one")
    page_size: int = Field(default=100, ge=1, le=100, description="orders per searchOrders page (maxResultsPerPage)")
    product_type: str = Field(default="PRODUCT", description="the listings productType of offers the hub creates")
    fulfillment_channel_code: str = Field(default="AMAZON_NA", description="the FBA channel code of offers "
                                                                           "(AMAZON_NA for Brazil is unconfirmed)")
    invoice_poll_seconds: float = Field(default=60, gt=0, description="how often a Processing invoice is re-read")
    plan_scale: float | None = Field(default=1.0, description="multiplies every usage plan (sandboxes run faster); "
                                                              "None: no client-side pacing")
    authorization_days: int = Field(default=365, ge=1, description="how long a seller's authorization lasts")
    timeout_seconds: float = Field(default=30, gt=0, description="seconds before a call counts as timed out")


def where(ctx: ConnectorContext) -> str:
    return f"tenant {ctx.tenant}, connection {ctx.connection}"


def options(ctx: ConnectorContext) -> AmazonOptions:
    parsed: AmazonOptions = AMAZON.options(ctx)
    return parsed


def body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _errors(body: Any) -> list[dict[str, Any]]:
    found = body.get("errors") if isinstance(body, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _code(body: Any) -> str:
    first = _errors(body)
    return str(first[0].get("code") or "") if first else ""


def _text(body: Any) -> str:
    return " ".join(f"{e.get('message') or ''} {e.get('details') or ''}" for e in _errors(body)).strip()


_TEMPLATE_ID = re.compile(r"/[^/]*\d[^/]*")


class Amazon(ApiClient):
    platform = "amazon_fba"
    options_model = AmazonOptions
    auth = HeaderAuth("x-amz-access-token")
    read_attempts = 4
    max_wait_seconds = 20.0
    errors = ErrorTable([
        ErrorRule(403, AuthExpired, when=lambda b: _code(b) == "Unauthorized" and any(
            word in _text(b).lower() for word in ("expired", "revoked", "invalid", "malformed")),
            fix="The access token expired or was revoked; the hub renews it through Login with Amazon."),
        ErrorRule(403, Fatal, fix="Amazon denied {action} ({detail}): the app needs the role for it (Tax Invoicing "
                                  "(Restricted) for shipment invoicing, Product Listing for listings). Add the role "
                                  "in Developer Central and have the seller re-authorize the app "
                                  "(hub auth amazon_fba {tenant})."),
        ErrorRule(400, InvalidRecord, when=lambda b: _code(b) == "InvalidInput",
                  message="{platform} {action} ({where}): {status} InvalidInput: {detail}",
                  fix="Correct {field} of {record} ({detail}) on the source and save it again."),
        ErrorRule(404, NotFound, fix="Amazon has no such resource; check the id, the seller and the marketplace."),
    ])

    def budget(self, ctx: ConnectorContext, operation: str) -> Budget | None:
        scale = options(ctx).plan_scale
        plan = PLANS.get(operation)
        if plan is None or scale is None:
            return None
        seen = ctx.cache.get(f"amazon:rate:{operation}")
        rate = float(seen) if isinstance(seen, float) and seen > 0 else plan.rate
        return Budget(f"amazon_fba:{ctx.tenant}:{ctx.connection}:{operation}", rate=rate * scale * HEADROOM,
                      burst=plan.burst)

    def tries(self, ctx: ConnectorContext, method: str) -> int:
        """Reads are tried again in pulls; a push's calls are sent once, so the outbox counts the failure (or
        reschedules a 429 without an attempt)."""
        return self.read_attempts if ctx.scratch.get("amazon:patient") and method in READS else 1

    def field_of(self, body: Any) -> str | None:
        text = _text(body)
        found = re.search(r"(?:attribute|field|parameter|property)\s+'?([A-Za-z_][\w.\[\]]*)", text)
        return found.group(1) if found else None

    def detail_of(self, body: Any, default: str) -> str:
        return _text(body) or default

    def classify(self, ctx: ConnectorContext, response: httpx.Response, body: Any) -> HubError | None:
        operation = spec.operation_id(response.request.method, response.request.url.path) or "?"
        limit = response.headers.get("x-amzn-ratelimit-limit")
        if limit:
            try:
                ctx.cache.set(f"amazon:rate:{operation}", float(limit), ttl=3600)
            except ValueError:
                pass
        if response.status_code == 429:
            plan = PLANS.get(operation, Plan(1, 1))
            seen = ctx.cache.get(f"amazon:rate:{operation}")
            rate = float(seen) if isinstance(seen, float) and seen > 0 else plan.rate
            scale = options(ctx).plan_scale or 1.0
            return RateLimited(f"amazon_fba {operation} ({where(ctx)}): 429 {_code(body) or 'QuotaExceeded'}: "
                               f"{_text(body)} ({request_id(response)})", retry_after=round(1 / (rate * scale), 3),
                               fix=f"Nothing to do: {operation}'s usage plan allows {rate:g} requests/s; the hub "
                                   "waits for the next slot (no attempt is counted).")
        return None

    def error_for(self, ctx: ConnectorContext, response: httpx.Response, *, record: str | None = None,
                  action: str | None = None) -> HubError | None:
        """The core's error, with ``x-amzn-RequestId`` in the message: Amazon's support needs it."""
        error = super().error_for(ctx, response, record=record, action=action)
        if error is not None and "x-amzn-RequestId" not in error.message and request_id(response):
            error.message = f"{error.message} ({request_id(response)})"
            error.args = (error.message,)
        return error

    def call(self, ctx: ConnectorContext, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call named after its operation (the usage plan's bucket)."""
        operation = spec.operation_id(method, path) or f"{method} {_TEMPLATE_ID.sub('/{id}', path)}"
        return self.request(ctx, method, path, operation=operation, **kwargs)


def request_id(response: httpx.Response) -> str:
    rid = response.headers.get("x-amzn-requestid")
    return f"x-amzn-RequestId {rid}" if rid else ""


AMAZON = Amazon()


# --- the SQS queue (JSON protocol, SigV4) --------------------------------------------------------------------------


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4(method: str, url: str, body: bytes, headers: Mapping[str, str], key_id: str, secret: str, region: str,
          service: str = "sqs", now: datetime | None = None) -> dict[str, str]:
    """AWS Signature Version 4 headers for a request (``headers``: the ones to sign beside host and x-amz-date)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    parts = urlsplit(url)
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = stamp
    names = ";".join(sorted(signed))
    canonical = "\n".join([method, parts.path or "/", parts.query,
                           "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)), names,
                           hashlib.sha256(body).hexdigest()])
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), stamp[:8]), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {"x-amz-date": stamp, "Authorization": f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
                                                  f"SignedHeaders={names}, Signature={signature}"}


class Sqs(ApiClient):
    """Amazon SQS's JSON protocol at the queue's endpoint; every request signed with the queue's IAM key."""

    platform = "amazon_fba"
    auth = None
    read_attempts = 4
    max_wait_seconds = 20.0
    errors = ErrorTable([
        ErrorRule((400, 403), Fatal, when=lambda b: "InvalidClientTokenId" in str(b.get("__type", ""))
                  or "SignatureDoesNotMatch" in str(b.get("__type", "")),
                  fix="Check credentials.sqs_access_key_id and sqs_secret_access_key of connection {connection}: "
                      "the IAM user must be allowed sqs:ReceiveMessage and sqs:DeleteMessage on the queue."),
        ErrorRule(400, Fatal, fix="SQS refused {action} ({detail}); check options.queue_url of connection "
                                  "{connection}."),
    ])

    def base_url(self, ctx: ConnectorContext) -> str:
        queue = options(ctx).queue_url
        if not queue:
            raise Fatal(f"amazon_fba ({where(ctx)}): options.queue_url is not set",
                        fix=f"Set options.queue_url of connection {ctx.connection} to the SQS queue subscribed to "
                            "FBA_OUTBOUND_SHIPMENT_STATUS and ORDER_CHANGE, and re-apply the routes.")
        parts = urlsplit(queue)
        return f"{parts.scheme}://{parts.netloc}"

    def detail_of(self, body: Any, default: str) -> str:
        return str(body.get("message") or body.get("__type") or default) if isinstance(body, dict) else default

    def action(self, ctx: ConnectorContext, target: str, payload: dict[str, Any], *, read: bool,
               wait_seconds: float = 0.0) -> dict[str, Any]:
        """One SQS action (``ReceiveMessage``, ``DeleteMessage``): signed, retried when it is a read;
        ``wait_seconds``: a long poll's ``WaitTimeSeconds``, added to the timeout."""
        opts = options(ctx)
        key_id, secret = ctx.credentials.get("sqs_access_key_id"), ctx.credentials.get("sqs_secret_access_key")
        if not key_id or not secret:
            raise Fatal(f"amazon_fba ({where(ctx)}): no SQS key (sqs_access_key_id, sqs_secret_access_key)",
                        fix=f"Set credentials.sqs_access_key_id and sqs_secret_access_key of connection "
                            f"{ctx.connection} (an IAM user allowed to receive and delete on the queue).")
        payload = {"QueueUrl": opts.queue_url, **payload}
        content = self.encode(payload)
        headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{target}"}

        # Signed once: a retry within the client's backoff stays well inside SigV4's five-minute window.
        signed = {**headers, **sigv4("POST", f"{self.base_url(ctx)}/", content, headers, key_id, secret,
                                     opts.sqs_region)}
        response = self.request(ctx, "POST", "/", json=payload, headers=signed, operation=f"sqs:{target}",
                                attempts=self.read_attempts if read else 1, wait_seconds=wait_seconds)
        found = body_of(response)
        return found if isinstance(found, dict) else {}


SQS = Sqs()


def is_read(method: str) -> bool:
    return method.upper() in READS


__all__ = ["AMAZON", "BRAZIL", "LISTINGS", "LWA_URL", "ORDERS", "PLANS", "RDT", "SHIPMENTS", "SP_API_HOST", "SQS",
           "AmazonOptions", "Plan", "Retriable", "body_of", "options", "request_id", "sigv4", "where"]
