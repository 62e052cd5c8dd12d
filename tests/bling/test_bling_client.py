"""Bling's client on the core's ApiClient, against the served sandbox: each of Bling's error shapes becomes the hub
error a person expects (a wait, a pause until midnight, a refused field), and reads of a pull outlast them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hub.errors import Fatal, HubError, InvalidRecord, QuotaExhausted, RateLimited
from hub.ratelimit import LocalThrottle, next_midnight
from hub.sandbox import Served, serve
from hub.sync.context import ConnectorContext
from hub_bling import client
from hub_bling.auth import authenticate
from hub_bling.options import TIME_ZONE
from hub_bling.sandbox import BlingSandbox


@pytest.fixture
def box() -> Iterator[tuple[BlingSandbox, Served]]:
    sandbox = BlingSandbox(rate_per_second=None)
    served = serve(sandbox.app)
    yield sandbox, served
    served.stop()


def connect(box: BlingSandbox, served: Served, **options: Any) -> ConnectorContext:
    info = box.connection(served.base_url)
    ctx = ConnectorContext(tenant="acme", connection="erp", platform="bling",
                           options={**info["options"], **options}, credentials=info["credentials"],
                           budget=LocalThrottle())
    ctx.credentials.update(authenticate(ctx).values)
    return ctx


def raised(call: Any) -> HubError:
    try:
        call()
    except HubError as exc:
        return exc
    raise AssertionError("the call should have raised")


def test_a_per_second_429_is_a_wait_and_a_day_429_pauses_until_midnight_in_sao_paulo(
        box: tuple[BlingSandbox, Served]) -> None:
    sandbox, served = box
    ctx = connect(sandbox, served)
    sandbox.inject_fault("429", 1)
    limited = raised(lambda: client.get(ctx, "/depositos"))
    assert type(limited) is RateLimited and limited.retry_after == 1.0, \
        f"a push's 429 (period: second) should be a one-second wait, not a failed attempt: {limited!r}"
    sandbox.inject_fault("429", 1)
    started = time.monotonic()
    assert "data" in client.read(ctx, "/depositos"), "a pull's read waits the second out and goes on"
    assert time.monotonic() - started >= 1.0, "the read waited Bling's second"
    sandbox.inject_fault("429-day", 1)
    spent = raised(lambda: client.read(ctx, "/depositos"))
    assert isinstance(spent, QuotaExhausted) and spent.until == next_midnight(TIME_ZONE), \
        f"period: day should pause the connection until midnight in São Paulo: {spent!r}"
    assert "120,000 requests/day" in spent.fix and "/Api/v3/depositos" in spent.message


def test_an_ip_block_is_a_long_wait_and_a_missing_scope_is_fatal_with_the_fix(
        box: tuple[BlingSandbox, Served]) -> None:
    sandbox, served = box
    ctx = connect(sandbox, served)
    with sandbox.state.lock:
        sandbox.state.blocked_until = sandbox.state.clock.time() + 600
    started = time.monotonic()
    blocked = raised(lambda: client.read(ctx, "/depositos"))
    assert type(blocked) is RateLimited and blocked.retry_after == 600.0 and "blocked" in blocked.fix, \
        f"an IP block should wait ten minutes: {blocked!r}"
    assert time.monotonic() - started < 2, "a pull does not sleep through a ten-minute block: the core schedules it"
    sandbox.advance(601)
    assert "data" in client.read(ctx, "/depositos")


def test_validation_errors_name_the_field_and_an_order_number_request_names_the_setting(
        box: tuple[BlingSandbox, Served]) -> None:
    sandbox, served = box
    ctx = connect(sandbox, served)
    refused = raised(lambda: client.request(ctx, "POST", "/produtos", json_body={
        "nome": "Camiseta", "codigo": "CAM-1", "tipo": "P", "formato": "S", "preco": 10, "categoria": {"id": 999}}))
    assert isinstance(refused, InvalidRecord) and refused.field, f"a VALIDATION_ERROR names its field: {refused!r}"
    assert "Bling refused the record" in refused.message and f"Correct {refused.field}" in refused.fix
    body = {"error": {"type": "VALIDATION_ERROR", "fields": [{"element": "numero", "msg": "Informe o número"}]}}
    answer = httpx.Response(400, json=body, request=httpx.Request("POST", f"{served.base_url}/Api/v3/pedidos/vendas"))
    numero = client.error_for(ctx, answer)
    assert isinstance(numero, Fatal) and numero.fix == client.NUMERO_FIX, f"numero asks for a setting: {numero!r}"


def test_a_burst_of_errors_pauses_before_bling_blocks_the_address(box: tuple[BlingSandbox, Served],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, served = box
    ctx = connect(sandbox, served)
    monkeypatch.setattr(client.Bling, "error_ceiling", (5, 1.0))
    started = time.monotonic()
    for _ in range(5):
        raised(lambda: client.get(ctx, "/produtos/424242"))
    assert time.monotonic() - started >= 0.5, "the fifth error within a second paused the process's calls"
