"""The Notifications API v1 in the sandbox: SQS destinations and the seller's subscriptions to them.

As the model ``notifications.json`` says: the destination operations (and ``getSubscriptionById``,
``deleteSubscriptionById``) are grantless, called with an LWA token from the ``client_credentials`` grant (scope
``sellingpartnerapi::notifications``) rather than a seller's; ``createSubscription`` and ``getSubscription``
subscribe a seller, so they take the seller's token. One destination per queue ARN and one subscription per
notification type: a second one is a 409 ``Conflict``. With ``require_subscriptions`` set, a notification reaches
the queue only when its type is subscribed to a destination that is this sandbox's queue.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

NOTIFICATIONS = "/notifications/v1"
GRANTLESS = frozenset({"getDestinations", "createDestination", "getDestination", "deleteDestination",
                       "getSubscriptionById", "deleteSubscriptionById", "sendTestNotification"})
"""The operations whose description in notifications.json says they are grantless."""
SCOPES = frozenset({"sellingpartnerapi::notifications", "sellingpartnerapi::client_credential:rotation"})
"""The grantless scopes Login with Amazon issues tokens for (Amazon's "Grantless operations" guide)."""
SUPPORTED = {"FBA_OUTBOUND_SHIPMENT_STATUS": "1.0", "ORDER_CHANGE": "1.0"}
"""The notification types this sandbox sends, with their payload versions."""


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status)


class Destinations:
    """Mixed into the sandbox: state under ``self.lock``; the handlers go behind the sandbox's gate."""

    lock: Any
    queue_name: str
    destinations: dict[str, dict[str, Any]]
    subscriptions: dict[str, dict[str, Any]]
    unsubscribed: int

    def _init_destinations(self) -> None:
        self.destinations = {}
        self.subscriptions = {}
        self.unsubscribed = 0
        """Notifications dropped because their type had no subscription to this queue."""

    @property
    def queue_arn(self) -> str:
        """The ARN of the queue the sandbox's connection names (region us-east-1, the options' default)."""
        return f"arn:aws:sqs:us-east-1:123456789012:{self.queue_name}"

    def subscribed(self, kind: str) -> bool:
        """Whether notifications of ``kind`` are delivered to this sandbox's queue (call under the lock)."""
        found = self.subscriptions.get(kind)
        destination = self.destinations.get(found["destinationId"]) if found else None
        return bool(destination and (destination["resource"].get("sqs") or {}).get("arn") == self.queue_arn)

    async def _destinations(self, request: Request) -> Response:
        if request.method == "GET":
            with self.lock:
                return JSONResponse({"payload": [dict(d) for d in self.destinations.values()]})
        body = await request.json()
        spec = body.get("resourceSpecification") or {}
        if "sqs" not in spec:
            return _error(400, "InvalidInput", "Only SQS destinations are emulated here (resourceSpecification.sqs)")
        arn = str(spec["sqs"]["arn"])
        with self.lock:
            if any((d["resource"].get("sqs") or {}).get("arn") == arn for d in self.destinations.values()):
                return _error(409, "Conflict", f"A destination for {arn} already exists.")
            destination: dict[str, Any] = {"destinationId": str(uuid.uuid4()), "name": str(body["name"]),
                                           "resource": {"sqs": {"arn": arn}}}
            self.destinations[destination["destinationId"]] = destination
            return JSONResponse({"payload": dict(destination)})

    async def _destination(self, request: Request) -> Response:
        destination_id = request.path_params["destinationId"]
        with self.lock:
            found = self.destinations.get(destination_id)
            if found is None:
                return _error(404, "NotFound", f"Destination {destination_id} not found.")
            if request.method == "DELETE":
                del self.destinations[destination_id]
                return JSONResponse({})
            return JSONResponse({"payload": dict(found)})

    async def _subscription(self, request: Request) -> Response:
        kind = request.path_params["notificationType"]
        if kind not in SUPPORTED:
            return _error(400, "InvalidInput", f"Notification type {kind} is not available to this application "
                                               f"here (supported: {', '.join(SUPPORTED)}).")
        if request.method == "GET":
            with self.lock:
                found = self.subscriptions.get(kind)
                if found is None:
                    return _error(404, "NotFound", f"No subscription to {kind}.")
                return JSONResponse({"payload": dict(found)})
        body = await request.json()
        with self.lock:
            if body["destinationId"] not in self.destinations:
                return _error(400, "InvalidInput", f"Destination {body['destinationId']} does not exist.")
            if str(body["payloadVersion"]) != SUPPORTED[kind]:
                return _error(400, "InvalidInput", f"payloadVersion {body['payloadVersion']} is not available for "
                                                   f"{kind} ({SUPPORTED[kind]}).")
            if kind in self.subscriptions:
                return _error(409, "Conflict", f"A subscription to {kind} already exists.")
            subscription = {"subscriptionId": str(uuid.uuid4()), "payloadVersion": str(body["payloadVersion"]),
                            "destinationId": str(body["destinationId"])}
            if body.get("processingDirective"):
                subscription["processingDirective"] = body["processingDirective"]
            self.subscriptions[kind] = subscription
            return JSONResponse({"payload": dict(subscription)})

    async def _subscription_by_id(self, request: Request) -> Response:
        kind, wanted = request.path_params["notificationType"], request.path_params["subscriptionId"]
        with self.lock:
            found = self.subscriptions.get(kind)
            if found is None or found["subscriptionId"] != wanted:
                return _error(404, "NotFound", f"Subscription {wanted} to {kind} not found.")
            if request.method == "DELETE":
                del self.subscriptions[kind]
                return JSONResponse({})
            return JSONResponse({"payload": dict(found)})


__all__ = ["GRANTLESS", "NOTIFICATIONS", "SCOPES", "SUPPORTED", "Destinations"]
