"""The one-time notifications setup: the SQS queue as a destination, and the seller subscribed to it.

Amazon sends ``FBA_OUTBOUND_SHIPMENT_STATUS`` (a shipment Created or Cancelled: the order to invoice) and
``ORDER_CHANGE`` only to a destination the app created and only for the types the seller is subscribed to
(Notifications API v1, ``notifications.json``). The destination operations are grantless (a ``client_credentials``
token, scope ``sellingpartnerapi::notifications``); a subscription is the seller's, so ``createSubscription`` and
``getSubscription`` take the seller's token. Both are looked up before anything is created, so running the setup
again (or after every re-authorization) changes nothing that is already right.

``ORDER_CHANGE`` is filtered to buyer-requested changes (a cancellation request) on Amazon.com.br: the shipment
notification already says Created and Cancelled, and every order status change would cost one more ``getOrder``
per order, which the usage plan (0.5/s) cannot take at 1,000 orders an hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from hub import ConnectorContext
from hub.errors import AuthExpired, Fatal, HubError, NotFound

from hub_amazon_fba import auth
from hub_amazon_fba.client import AMAZON, body_of, options, where

DESTINATIONS = "/notifications/v1/destinations"
SUBSCRIPTIONS = "/notifications/v1/subscriptions"
TYPES = ("FBA_OUTBOUND_SHIPMENT_STATUS", "ORDER_CHANGE")
PAYLOAD_VERSION = "1.0"
DESTINATION_NAME = "hub-fba-onsite"


@dataclass
class Setup:
    """What the setup found or made."""

    arn: str
    destination_id: str
    destination_created: bool
    subscriptions: dict[str, str] = field(default_factory=dict)
    """Notification type -> its subscription id."""
    created: list[str] = field(default_factory=list)
    """The types subscribed by this run (the others were already)."""

    def summary(self) -> str:
        made = "created" if self.destination_created else "already there"
        subs = ", ".join(f"{t} ({'subscribed now' if t in self.created else 'already subscribed'})"
                         for t in self.subscriptions)
        return f"destination {self.destination_id} for {self.arn} ({made}); {subs}"


def queue_arn(ctx: ConnectorContext) -> str:
    """The queue's ARN: ``options.queue_arn`` when given, else read from ``options.queue_url``
    (``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``) and ``options.sqs_region``."""
    opts = options(ctx)
    if opts.queue_arn:
        return opts.queue_arn
    parts = [p for p in urlsplit(opts.queue_url or "").path.split("/") if p]
    if len(parts) < 2 or not parts[-2].isdigit():
        raise Fatal(f"amazon_fba ({where(ctx)}): options.queue_url {opts.queue_url!r} does not name an SQS queue "
                    "(https://sqs.REGION.amazonaws.com/ACCOUNT_ID/QUEUE_NAME)",
                    fix=f"Set options.queue_url of connection {ctx.connection} to the queue's URL (SQS console > "
                        "the queue > Details) and re-apply the routes.")
    return f"arn:aws:sqs:{opts.sqs_region}:{parts[-2]}:{parts[-1]}"


def _grantless(ctx: ConnectorContext, method: str, path: str, **kwargs: Any) -> Any:
    token = auth.grantless_token(ctx)
    return body_of(AMAZON.call(ctx, method, path, headers={"x-amz-access-token": token}, **kwargs))


def _seller(ctx: ConnectorContext, call: Callable[[], Any]) -> Any:
    """A call with the seller's token, renewed once when it lapsed (a command's context has no renewal)."""
    try:
        if not ctx.credentials.get("access_token"):
            raise AuthExpired("no access token yet")
        return call()
    except AuthExpired:
        ctx.credentials.update(auth.authenticate(ctx).values)
        return call()


def _destination(ctx: ConnectorContext, arn: str) -> tuple[str, bool]:
    def find() -> str | None:
        listed = _grantless(ctx, "GET", DESTINATIONS)
        for destination in (listed or {}).get("payload") or []:
            if ((destination.get("resource") or {}).get("sqs") or {}).get("arn") == arn:
                return str(destination["destinationId"])
        return None

    found = find()
    if found:
        return found, False
    try:
        made = _grantless(ctx, "POST", DESTINATIONS,
                          json={"name": DESTINATION_NAME, "resourceSpecification": {"sqs": {"arn": arn}}})
        return str(made["payload"]["destinationId"]), True
    except HubError:
        found = find()  # another run created it meanwhile (409 Conflict): use it
        if found:
            return found, False
        raise


def _directive(ctx: ConnectorContext, kind: str) -> dict[str, Any] | None:
    if kind != "ORDER_CHANGE":
        return None
    return {"eventFilter": {"eventFilterType": "ORDER_CHANGE", "marketplaceIds": [options(ctx).marketplace_id],
                            "orderChangeTypes": ["BuyerRequestedChange"]}}


def _subscribe(ctx: ConnectorContext, kind: str, destination: str, replace: bool) -> tuple[str, bool]:
    path = f"{SUBSCRIPTIONS}/{quote(kind, safe='')}"
    try:
        current = _seller(ctx, lambda: body_of(AMAZON.call(ctx, "GET", path,
                                                           params={"payloadVersion": PAYLOAD_VERSION})))
        existing = (current or {}).get("payload") or {}
    except NotFound:
        existing = {}
    if existing.get("destinationId") == destination:
        return str(existing["subscriptionId"]), False
    if existing:
        if not replace:
            raise Fatal(f"amazon_fba ({where(ctx)}): the seller is subscribed to {kind} with destination "
                        f"{existing.get('destinationId')}, not this queue's ({destination}); notifications go there",
                        fix=f"If that destination is not used any more, run `hub amazon-fba notifications "
                            f"{ctx.tenant} --replace` (it deletes subscription {existing.get('subscriptionId')} and "
                            "subscribes the queue).")
        _grantless(ctx, "DELETE", f"{path}/{quote(str(existing['subscriptionId']), safe='')}")
    body: dict[str, Any] = {"payloadVersion": PAYLOAD_VERSION, "destinationId": destination}
    directive = _directive(ctx, kind)
    if directive:
        body["processingDirective"] = directive
    made = _seller(ctx, lambda: body_of(AMAZON.call(ctx, "POST", path, json=body)))
    return str(made["payload"]["subscriptionId"]), True


def setup(ctx: ConnectorContext, types: tuple[str, ...] = TYPES, *, replace: bool = False) -> Setup:
    """Find or create the queue's destination, then find or create the seller's subscription to each type."""
    arn = queue_arn(ctx)
    destination, created = _destination(ctx, arn)
    done = Setup(arn=arn, destination_id=destination, destination_created=created)
    for kind in types:
        subscription, new = _subscribe(ctx, kind, destination, replace)
        done.subscriptions[kind] = subscription
        if new:
            done.created.append(kind)
    return done


__all__ = ["TYPES", "Setup", "queue_arn", "setup"]
