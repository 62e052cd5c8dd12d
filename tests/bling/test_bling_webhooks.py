"""Bling webhooks: signature checked over the raw body, duplicates dropped by eventId, and each event turned into
an incremental sync of its stream (which re-reads Bling, so the order of delivery does not matter)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from hub import webhooks
from hub.runner.service import schedule_once
from hub.sandbox import serve
from hub.store.schema import Connection, Record, Route, WebhookEvent
from sqlalchemy import select, update

from tests.bling.conftest import TENANT, World


def _signed(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Bling-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


def know_company(world: World) -> None:
    """The connection as after an authorization that read the account's company id (webhooks are checked
    against it)."""
    from hub.sync.loading import credentials_of

    with world.rt.store.begin() as s:
        conn = s.get_one(Connection, world.bling_id)
        creds = dict(credentials_of(world.rt.vault, conn))
        creds["company_id"] = str(world.box.company_id)
        conn.credentials = world.rt.vault.encrypt(creds)


def _event(world: World, event_id: str = "evt-1", data: object = None, company: object = None) -> bytes:
    return json.dumps({"eventId": event_id, "date": "2026-11-24T12:00:00Z", "version": "v1",
                       "event": "stock.updated", "companyId": company or world.box.company_id,
                       "data": {"produto": {"id": 1}} if data is None else data}).encode()


def test_signed_events_trigger_an_incremental_sync_once(world: World):
    from hub.sync.loading import ensure_auth

    ids = world.box.seed("products", 5)
    world.route("catalog", ["products"], pull=True)
    assert world.pull("catalog").ok
    ensure_auth(world.rt, world.bling_id)
    know_company(world)
    with world.rt.store.begin() as s:
        s.execute(update(Route).values(next_run_at=None))
    receiver = serve(webhooks.app(world.rt))
    try:
        world.box.webhook_url = f"{receiver.base_url}/webhooks/{TENANT}/erp"
        world.box.touch("products", ids[2])  # Bling sends product.updated
        started: list[tuple[str, str]] = []
        assert schedule_once(world.rt, lambda t, r, _lease: started.append((t, r))) == 1
        assert started == [(TENANT, "catalog")]
        assert world.pull("catalog").streams[0].counts.changed == 1

        body = json.dumps({"eventId": "evt-1", "date": "2026-11-24T12:00:00Z", "version": "v1",
                           "event": "stock.updated", "companyId": world.box.company_id,
                           "data": {"produto": {"id": int(ids[0])}}}).encode()
        url = world.box.webhook_url
        first = httpx.post(url, content=body, headers=_signed(world.box.client_secret, body))
        again = httpx.post(url, content=body, headers=_signed(world.box.client_secret, body))
        assert first.status_code == 200 and first.json()["accepted"] == 1
        assert again.status_code == 200 and again.json() == {"accepted": 0, "duplicates": 1, "routes": []}
        forged = httpx.post(url, content=body.replace(b"evt-1", b"evt-2"),
                            headers=_signed("not-the-secret", body))
        assert forged.status_code == 401
    finally:
        receiver.stop()
    with world.rt.store.sessions() as s:
        assert s.scalar(select(Record).where(Record.entity == "products").limit(1)) is not None


def test_malformed_events_are_refused_with_a_4xx_never_a_500(world: World):
    world.route("catalog", ["products", "stock"], pull=True)
    know_company(world)
    secret = world.box.client_secret
    with serve(webhooks.app(world.rt)) as receiver:
        url = f"{receiver.base_url}/webhooks/{TENANT}/erp"
        cases = {"an eventId of 101 characters": _event(world, event_id="e" * 101),
                 "data that is a list": _event(world, data=[1, 2]),
                 "data that is a string": _event(world, data="produto"),
                 "an empty eventId": _event(world, event_id="")}
        answers = {name: httpx.post(url, content=body, headers=_signed(secret, body)).status_code
                   for name, body in cases.items()}
    assert all(400 <= code < 500 for code in answers.values()), f"expected a 4xx for each malformed event: {answers}"
    assert world.count(WebhookEvent) == 0, "a refused event was remembered"


def test_concurrent_duplicate_deliveries_are_accepted_once(world: World):
    world.route("catalog", ["products", "stock"], pull=True)
    know_company(world)
    body = _event(world, event_id="evt-dup")
    headers = _signed(world.box.client_secret, body)
    with serve(webhooks.app(world.rt)) as receiver:
        url = f"{receiver.base_url}/webhooks/{TENANT}/erp"
        start = threading.Barrier(20)

        def deliver(_: int) -> httpx.Response:
            with httpx.Client(timeout=30) as client:
                start.wait()
                return client.post(url, content=body, headers=headers)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(deliver, range(20)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 20, f"expected 20 answers of 200 (one accepted, the rest deduplicated), got {codes}"
    assert sum(a.json()["accepted"] for a in answers) == 1, "the event must be accepted exactly once"
    assert sum(a.json()["duplicates"] for a in answers) == 19, "the other deliveries must be counted as duplicates"
    assert world.count(WebhookEvent) == 1


def test_an_event_whose_company_cannot_be_checked_is_refused(world: World, caplog):
    world.route("catalog", ["products", "stock"], pull=True)
    body = _event(world)
    with serve(webhooks.app(world.rt)) as receiver:
        url = f"{receiver.base_url}/webhooks/{TENANT}/erp"
        with caplog.at_level(logging.WARNING, logger="hub.webhooks"):
            unknown = httpx.post(url, content=body, headers=_signed(world.box.client_secret, body))
        know_company(world)
        other_body = _event(world, event_id="evt-other", company="999999")
        other = httpx.post(url, content=other_body, headers=_signed(world.box.client_secret, other_body))
        fine = httpx.post(url, content=body, headers=_signed(world.box.client_secret, body))
    assert 400 <= unknown.status_code < 500, "an event was accepted although its company could not be checked"
    assert "hub auth bling" in caplog.text, f"the refusal must log how to fix it, got: {caplog.text}"
    assert 400 <= other.status_code < 500, "an event of another company was accepted"
    assert fine.status_code == 200 and fine.json()["accepted"] == 1, "the same event, once checkable, is accepted"
