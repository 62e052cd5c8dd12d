"""Bling webhooks: signature checked over the raw body, duplicates dropped by eventId, and each event turned into
an incremental sync of its stream (which re-reads Bling, so the order of delivery does not matter)."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
from hub import webhooks
from hub.runner.service import schedule_once
from hub.sandbox import serve
from hub.store.schema import Record, Route
from sqlalchemy import select, update

from tests.bling.conftest import TENANT, World


def _signed(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Bling-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


def test_signed_events_trigger_an_incremental_sync_once(world: World):
    from hub.sync.loading import ensure_auth

    ids = world.box.seed("products", 5)
    world.route("catalog", ["products"], pull=True)
    assert world.pull("catalog").ok
    ensure_auth(world.rt, world.bling_id)
    with world.rt.store.begin() as s:
        s.execute(update(Route).values(next_run_at=None))
    receiver = serve(webhooks.app(world.rt))
    try:
        world.box.webhook_url = f"{receiver.base_url}/webhooks/{TENANT}/erp"
        world.box.touch("products", ids[2])  # Bling sends product.updated
        started: list[tuple[str, str]] = []
        assert schedule_once(world.rt, lambda t, r: started.append((t, r))) == 1
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
