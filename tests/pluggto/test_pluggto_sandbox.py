"""The Plugg.to sandbox refuses what the plugin must never send: over real HTTP, no store involved."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hub.sandbox import Served, serve
from hub_pluggto.sandbox import PluggtoSandbox


@pytest.fixture
def box() -> Iterator[tuple[PluggtoSandbox, httpx.Client]]:
    sandbox = PluggtoSandbox(rate_per_second=None)
    served: Served = serve(sandbox.app)
    token = httpx.post(f"{served.base_url}/oauth/token", data={
        "grant_type": "password", "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
        "username": sandbox.username, "password": sandbox.password}).json()
    client = httpx.Client(base_url=served.base_url, headers={"Authorization": f"Bearer {token['access_token']}"})
    yield sandbox, client
    client.close()
    served.stop()


def test_tokens_last_an_hour_and_expire(box: tuple[PluggtoSandbox, httpx.Client]) -> None:
    sandbox, client = box
    assert client.get("/users").json()["data"]["id"] == 129
    sandbox.expire_tokens()
    expired = client.get("/users")
    assert expired.status_code == 401 and expired.json()["details"] == "Access token expired"
    refused = httpx.post(f"{client.base_url}/oauth/token", data={
        "grant_type": "password", "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
        "username": sandbox.username, "password": "wrong"})
    assert refused.status_code == 400 and refused.json()["error_description"] == "User credentials are invalid"


def test_sku_upserts_are_validated(box: tuple[PluggtoSandbox, httpx.Client]) -> None:
    _, client = box
    for body, field in (({"name": "X", "price": -1}, "price"), ({"name": "X", "ncm": "6109"}, "ncm"),
                        ({"name": "X", "cest": "12"}, "cest"), ({"name": "X", "nbm": "abc"}, "nbm"),
                        ({"price": 10}, "name"), ({"name": "X", "variations": [{"price": 1}]}, "variations[0].sku"),
                        ({"name": "X", "stock_table": [{"code": "A", "type": "x"}]}, "stock_table[0].type")):
        answer = client.put("/skus/S-1", json=body)
        assert answer.status_code == 400 and answer.json()["details"].startswith(f"field {field}:"), answer.text
    created = client.put("/skus/S-1", json={"name": "X", "price": 10, "ncm": "61091000", "nbm": "61091000",
                                            "cest": "2806300"})
    assert created.status_code == 200 and created.json()["Product"]["cest"] == "2806300"
    assert client.put("/skus/S-1/stock", json={"action": "update", "quantity": -1}).status_code == 400
    assert client.put("/skus/S-1/stock", json={"action": "increase", "quantity": 4}).json()["Product"]["quantity"] == 4


def test_lists_page_with_next_and_filter_modified_by_day(box: tuple[PluggtoSandbox, httpx.Client]) -> None:
    sandbox, client = box
    ids = sandbox.seed("sales", 7)
    first = client.get("/orders", params={"limit": 5}).json()
    assert first["total"] == 7 and [r["Order"]["id"] for r in first["result"]] == ids[:5]
    rest = client.get("/orders", params={"limit": 5, "next": ids[4]}).json()
    assert [r["Order"]["id"] for r in rest["result"]] == ids[5:]
    assert client.get("/orders", params={"modified": "2000-01-01to2000-01-02"}).json()["result"] == []
    assert client.get("/orders", params={"limit": 101}).status_code == 400


def test_a_shipment_without_id_is_a_second_delivery_and_a_repeat_is_not_updated(
        box: tuple[PluggtoSandbox, httpx.Client]) -> None:
    sandbox, client = box
    order_id = sandbox.create_order()
    shipment = sandbox.order(order_id)["shipments"][0]["id"]
    key = "35261211222333000181550010000000011000000010"
    note = {"status": "invoiced", "shipments": [{"id": shipment, "nfe_key": key, "nfe_number": "1"}]}
    assert client.put(f"/orders/{order_id}", json=note).status_code == 200
    again = client.put(f"/orders/{order_id}", json=note)
    assert again.status_code == 400 and again.json()["type"] == "not_updated"
    assert again.json()["details"] == "Changes not found in the order"
    other = {"shipments": [{"id": shipment, "nfe_key": key[:-1] + "9"}]}
    assert client.put(f"/orders/{order_id}", json=other).status_code == 400, "a shipment keeps its note"
    blind = client.put(f"/orders/{order_id}", json={"shipments": [{"nfe_key": key}]})
    assert blind.status_code == 200 and len(blind.json()["Order"]["shipments"]) == 2
    assert sandbox.duplicate_deliveries == 1, "the trap the docs warn about: no id, a new delivery"


def test_the_rate_limit_answers_pluggtos_429(box: tuple[PluggtoSandbox, httpx.Client]) -> None:
    sandbox, client = box
    sandbox.update_settings(rate_per_second=1)
    answers = [client.get("/users") for _ in range(3)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and limited[0].json()["type"] == "too_many_requests" and limited[0].headers["retry-after"]
