"""The notifications setup through real HTTP to the sandbox: the SQS queue becomes the app's destination with a
grantless token (client_credentials, scope sellingpartnerapi::notifications), the seller is subscribed to
FBA_OUTBOUND_SHIPMENT_STATUS and ORDER_CHANGE with the seller's token, once (what exists is found first), every
request valid against the Notifications API model; the sandbox refuses the wrong kind of token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hub.cli import with_plugins
from hub.store.schema import Binding, Connection
from hub.sync.loading import connection_context
from hub.testing import Harness
from hub_amazon_fba import spec, subscriptions
from sqlalchemy import select

NOTIFICATION_OPS = ("getDestinations", "createDestination", "getSubscription", "createSubscription",
                    "deleteSubscriptionById")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness.start(tmp_path, "amazon_fba", "sales", "invoices",
                      sandbox_options={"plan_scale": None, "require_subscriptions": True})
    yield h
    h.stop()


@pytest.fixture
def hub_env(harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """`hub ...` on the harness's store (HUB_* in the environment, the cached settings forgotten)."""
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("HUB_DATABASE_URL", harness.rt.store.engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def context(h: Harness) -> Any:
    h.authenticate()
    with h.rt.store.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.name == "platform"))
        assert conn is not None
        return connection_context(h.rt, conn)


def notification_calls(h: Harness) -> list[dict[str, Any]]:
    return [r for r in h.sandbox.request_log if r.get("operation") in NOTIFICATION_OPS]


def token(h: Harness, **form: str) -> httpx.Response:
    creds = h.sandbox.connection(h.served.base_url)["credentials"]
    return httpx.post(f"{h.served.base_url}/auth/o2/token", data={
        "client_id": creds["client_id"], "client_secret": creds["client_secret"], **form})


def test_the_queue_becomes_a_destination_with_a_grantless_token_and_the_seller_is_subscribed(
        harness: Harness) -> None:
    h = harness
    h.sandbox.seed("sales", 1)
    assert h.sandbox.unsubscribed == 1 and h.sandbox.queue == [], "no subscription yet: Amazon sends nothing"
    ctx = context(h)
    try:
        done = subscriptions.setup(ctx)
    finally:
        ctx.close()
    assert done.destination_created and done.arn == h.sandbox.queue_arn
    assert sorted(done.created) == ["FBA_OUTBOUND_SHIPMENT_STATUS", "ORDER_CHANGE"]
    (destination,) = h.sandbox.destinations.values()
    assert destination["resource"] == {"sqs": {"arn": "arn:aws:sqs:us-east-1:123456789012:hub-fba-onsite"}}
    assert {k: s["destinationId"] for k, s in h.sandbox.subscriptions.items()} == {
        "FBA_OUTBOUND_SHIPMENT_STATUS": destination["destinationId"], "ORDER_CHANGE": destination["destinationId"]}
    directive = h.sandbox.subscriptions["ORDER_CHANGE"]["processingDirective"]["eventFilter"]
    assert directive["orderChangeTypes"] == ["BuyerRequestedChange"], "status changes would cost a getOrder each"
    grants = [r.get("grant_type") for r in h.sandbox.request_log if r.get("path") == "/auth/o2/token"]
    assert "client_credentials" in grants
    calls = notification_calls(h)
    assert [c["operation"] for c in calls if c["method"] == "POST"] == [
        "createDestination", "createSubscription", "createSubscription"]
    for call in calls:  # every request as the Notifications API model has it
        assert spec.request_problems(call["method"], call["path"], call["query"], call["body"]) == [], call
    (shipment,) = h.sandbox.seed("sales", 1)
    assert len(h.sandbox.queue) == 1, "subscribed: the shipment's notification reaches the queue"
    assert h.pull().ok
    assert h.sandbox.queue == [], "read and deleted"
    with h.rt.store.sessions() as s:
        assert s.scalar(select(Binding.id).where(Binding.entity == "sales", Binding.external_id == shipment))


def test_the_setup_run_again_finds_what_exists_and_creates_nothing(harness: Harness) -> None:
    h = harness
    ctx = context(h)
    try:
        first = subscriptions.setup(ctx)
        h.sandbox.stats(clear_log=True)
        again = subscriptions.setup(ctx)
    finally:
        ctx.close()
    assert not again.destination_created and again.created == []
    assert again.destination_id == first.destination_id and again.subscriptions == first.subscriptions
    assert [c for c in notification_calls(h) if c["method"] != "GET"] == [], "only lookups the second time"
    assert len(h.sandbox.destinations) == 1 and len(h.sandbox.subscriptions) == 2


def test_a_subscription_to_another_destination_is_reported_with_the_fix_and_moved_on_request(
        harness: Harness) -> None:
    from hub.errors import Fatal

    h = harness
    grantless = {"x-amz-access-token": token(h, grant_type="client_credentials",
                                             scope="sellingpartnerapi::notifications").json()["access_token"]}
    other = httpx.post(f"{h.served.base_url}/notifications/v1/destinations", headers=grantless, json={
        "name": "old", "resourceSpecification": {"sqs": {"arn": "arn:aws:sqs:us-east-1:123456789012:old"}}})
    assert other.status_code == 200, other.text
    h.sandbox.subscriptions["FBA_OUTBOUND_SHIPMENT_STATUS"] = {
        "subscriptionId": "sub-old", "payloadVersion": "1.0", "destinationId": other.json()["payload"]["destinationId"]}
    ctx = context(h)
    try:
        with pytest.raises(Fatal) as refused:
            subscriptions.setup(ctx)
        assert "--replace" in (refused.value.fix or "") and "sub-old" in (refused.value.fix or "")
        done = subscriptions.setup(ctx, replace=True)
    finally:
        ctx.close()
    assert "FBA_OUTBOUND_SHIPMENT_STATUS" in done.created
    assert h.sandbox.subscriptions["FBA_OUTBOUND_SHIPMENT_STATUS"]["destinationId"] == done.destination_id
    assert h.sandbox.subscribed("FBA_OUTBOUND_SHIPMENT_STATUS")


def test_the_sandbox_takes_only_a_grantless_token_for_destinations_and_only_the_sellers_for_subscriptions(
        harness: Harness) -> None:
    h = harness
    creds = h.sandbox.connection(h.served.base_url)["credentials"]
    seller = {"x-amz-access-token": token(h, grant_type="refresh_token",
                                          refresh_token=creds["refresh_token"]).json()["access_token"]}
    url = f"{h.served.base_url}/notifications/v1"
    refused = httpx.get(f"{url}/destinations", headers=seller)
    assert refused.status_code == 403 and "grantless" in refused.text
    wrong_scope = token(h, grant_type="client_credentials", scope="sellingpartnerapi::orders")
    assert wrong_scope.status_code == 400 and wrong_scope.json()["error"] == "invalid_scope"
    grantless = {"x-amz-access-token": token(h, grant_type="client_credentials",
                                             scope="sellingpartnerapi::notifications").json()["access_token"]}
    assert httpx.get(f"{url}/destinations", headers=grantless).status_code == 200
    made = httpx.post(f"{url}/destinations", headers=grantless, json={
        "name": "hub", "resourceSpecification": {"sqs": {"arn": h.sandbox.queue_arn}}})
    again = httpx.post(f"{url}/destinations", headers=grantless, json={
        "name": "hub", "resourceSpecification": {"sqs": {"arn": h.sandbox.queue_arn}}})
    assert made.status_code == 200 and again.status_code == 409
    invalid = httpx.post(f"{url}/destinations", headers=grantless, json={"name": "hub"})
    assert invalid.status_code == 400 and "resourceSpecification" in invalid.text, "validated against the model"
    body = {"payloadVersion": "1.0", "destinationId": made.json()["payload"]["destinationId"]}
    assert httpx.post(f"{url}/subscriptions/ORDER_CHANGE", headers=grantless, json=body).status_code == 403
    assert httpx.post(f"{url}/subscriptions/ORDER_CHANGE", headers=seller, json=body).status_code == 200


def test_hub_amazon_fba_notifications_sets_up_once_from_the_command_line(harness: Harness, hub_env: None) -> None:
    h = harness
    h.authenticate()
    runner = CliRunner()
    first = runner.invoke(with_plugins(), ["amazon_fba", "notifications", "conformance"])
    assert first.exit_code == 0, first.output
    assert "created" in first.output and "subscribed now" in first.output
    second = runner.invoke(with_plugins(), ["amazon_fba", "notifications", "conformance"])
    assert second.exit_code == 0, second.output
    assert "already there" in second.output and "subscribed now" not in second.output
    assert len(h.sandbox.destinations) == 1 and len(h.sandbox.subscriptions) == 2


def test_hub_auth_amazon_fba_sets_up_the_notifications_once_the_seller_authorized(harness: Harness,
                                                                                  hub_env: None) -> None:
    h = harness
    renewed = h.sandbox.reauthorize()  # the seller authorized the app again in Seller Central
    result = CliRunner().invoke(with_plugins(), ["auth", "amazon_fba", "conformance", "--refresh-token", renewed])
    assert result.exit_code == 0, result.output
    assert "authorized conformance/platform" in result.output and "subscribed now" in result.output
    assert h.sandbox.subscribed("FBA_OUTBOUND_SHIPMENT_STATUS") and h.sandbox.subscribed("ORDER_CHANGE")
