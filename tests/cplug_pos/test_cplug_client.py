"""CPlug's client on the core's ApiClient, against the served sandbox: a push's 429 is handed to the core at once,
a pull's read sleeps through it, writes carry their Idempotency-Key, and a wrong company names the option."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from hub.errors import Fatal, HubError, RateLimited, Retriable
from hub.sandbox import serve
from hub_cplug.client import request, state
from hub_cplug.sandbox import CPlugSandbox

from tests.cplug_pos.test_cplug_connector import connect


@pytest.fixture
def cplug() -> Iterator[tuple[CPlugSandbox, str]]:
    box = CPlugSandbox()
    with serve(box.app) as served:
        yield box, served.base_url


def raised(call: Callable[[], object]) -> HubError:
    try:
        call()
    except HubError as exc:
        return exc
    raise AssertionError("the call should have raised")


def test_a_pushs_429_goes_to_the_core_and_a_pulls_read_waits_it_out(cplug: tuple[CPlugSandbox, str]) -> None:
    box, url = cplug
    ctx = connect(box, url)
    box.inject_fault("429", 1)
    started = time.monotonic()
    limited = raised(lambda: request(ctx, "GET", "/api/v3/sellers"))
    assert type(limited) is RateLimited and limited.retry_after == 1.0, f"Retry-After reaches the core: {limited!r}"
    assert time.monotonic() - started < 0.5, "a push does not sleep on a 429: the outbox reschedules it"
    box.inject_fault("500", 1)
    assert isinstance(raised(lambda: request(ctx, "GET", "/api/v3/sellers")), Retriable), \
        "a push's lookup is not retried in the client: the outbox counts the attempt"
    state(ctx).patient = True
    box.inject_fault("429", 1)
    box.inject_fault("500", 2)
    assert request(ctx, "GET", "/api/v3/sellers").status_code == 200, "a pull's read outlasts a 429 and two 500s"
    assert time.monotonic() - started >= 1.0, "the read waited the 429's Retry-After"


def test_writes_carry_the_idempotency_key_and_a_wrong_company_names_the_option(cplug: tuple[CPlugSandbox, str]) -> None:
    box, url = cplug
    ctx = connect(box, url)
    key = str(uuid.uuid4())
    first = request(ctx, "POST", "/api/v3/sellers", json={"name": "Ana"}, idempotency_key=key)
    again = request(ctx, "POST", "/api/v3/sellers", json={"name": "Ana"}, idempotency_key=key)
    assert first.json() == again.json() and len(box.records("sellers")) == 1, \
        "the same Idempotency-Key replays the first answer instead of creating twice"
    wrong = connect(box, url, company_id=box.company_id + 1)
    refused = raised(lambda: request(wrong, "GET", "/api/v3/sellers"))
    assert isinstance(refused, Fatal) and "options.company_id of connection pdv" in refused.fix, refused
    assert wrong.calls[-1].error and wrong.calls[-1].fix == refused.fix, "the API log carries the error and its fix"
