"""The parts every sandbox is built from (:mod:`hub.sandbox`): OAuth variants, rate limits, faults, idempotency,
NF-e XML. The OAuth pieces are driven on a clock moved by hand; the rest through real HTTP to served sandboxes."""

from __future__ import annotations

import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hub.cli import with_plugins
from hub.sandbox import Sandbox, SandboxBase, serve
from hub.sandbox.oauth import (
    AuthorizationCode,
    ClientCredentials,
    OAuthError,
    PasswordGrant,
    StaticToken,
    TokenStore,
    WallClock,
)
from hub.sandbox.ratelimit import Limits, TokenBucket
from hub_bling.sandbox import BlingSandbox
from hub_cplug.sandbox import CPlugSandbox
from hub_example.sandbox import LojinhaSandbox

NFE = "{http://www.portalfiscal.inf.br/nfe}"


def refused(call: Any) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    return caught.value


# --- OAuth variants -----------------------------------------------------------------------------------------


def test_authorization_code_is_single_use_and_expires() -> None:
    clock = WallClock()
    store = TokenStore(clock, access_ttl=600, refresh_ttl=3600, code_ttl=60)
    flow = AuthorizationCode(store)
    code = store.new_code()
    pair = flow.grant({"grant_type": "authorization_code", "code": code})
    assert store.check(pair.access_token) is None and pair.refresh_token, "a fresh code gives a live pair"
    again = refused(lambda: flow.grant({"grant_type": "authorization_code", "code": code}))
    assert again.error == "invalid_grant", "a code works once"
    assert store.check(pair.access_token) == "invalid", "a reused code revokes the grant it made"
    late = store.new_code()
    clock.advance(61)
    expired = refused(lambda: flow.grant({"grant_type": "authorization_code", "code": late}))
    assert expired.error == "invalid_grant" and "expired" in expired.description, "a code dies after code_ttl"


def test_refresh_rotation_spends_the_old_token_and_access_tokens_expire() -> None:
    clock = WallClock()
    store = TokenStore(clock, access_ttl=600, refresh_ttl=3600)
    flow = AuthorizationCode(store)
    first = store.refresh_token()
    pair = flow.grant({"grant_type": "refresh_token", "refresh_token": first})
    assert pair.refresh_token and pair.refresh_token != first, "each refresh issues a new refresh token"
    assert refused(lambda: flow.grant({"grant_type": "refresh_token", "refresh_token": first})).error \
        == "invalid_grant", "the spent refresh token is refused (no grace window by default)"
    clock.advance(601)
    assert store.check(pair.access_token) == "expired", "the access token expires after access_ttl"
    assert flow.grant({"grant_type": "refresh_token", "refresh_token": pair.refresh_token}).access_token


def test_grace_window_returns_the_same_pair_then_refuses() -> None:
    clock = WallClock()
    store = TokenStore(clock, access_ttl=600, refresh_ttl=3600, grace=30)
    flow = AuthorizationCode(store)
    spent = store.refresh_token()
    pair = flow.grant({"grant_type": "refresh_token", "refresh_token": spent})
    clock.advance(10)
    assert flow.grant({"grant_type": "refresh_token", "refresh_token": spent}) == pair, \
        "within the grace window a spent token returns the pair it was exchanged for"
    clock.advance(30)
    assert refused(lambda: flow.grant({"grant_type": "refresh_token", "refresh_token": spent})).error \
        == "invalid_grant", "after the grace window the spent token is refused"


def test_password_grant_over_cplugs_token_endpoint() -> None:
    box = CPlugSandbox(rate_per_second=None)
    with serve(box.app) as served, httpx.Client(base_url=served.base_url) as http:
        creds = box.connection(served.base_url)["credentials"]
        wrong = http.post("/oauth/token", json={**creds, "grant_type": "password", "password": "nope"})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", wrong.text
        pair = http.post("/oauth/token", json={**creds, "grant_type": "password"}).json()
        refresh = {**creds, "grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
        assert http.post("/oauth/token", json=refresh).status_code == 200, "the refresh token works once"
        reused = http.post("/oauth/token", json=refresh)
        assert reused.status_code == 400 and reused.json()["error_description"] == "The refresh token is invalid."
    assert box.token_calls == 4, "every token call is counted"


def test_client_credentials_over_lojinhas_token_endpoint() -> None:
    box = LojinhaSandbox(token_ttl_seconds=60)
    with serve(box.app) as served, httpx.Client(base_url=served.base_url) as http:
        creds = box.connection(served.base_url)["credentials"]
        bad = http.post("/oauth/token", data={**creds, "grant_type": "client_credentials", "client_secret": "x"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_client", bad.text
        answer = http.post("/oauth/token", data={**creds, "grant_type": "client_credentials"}).json()
        assert "refresh_token" not in answer and answer["expires_in"] == 60, answer
        headers = {"Authorization": f"Bearer {answer['access_token']}"}
        assert http.get("/products", headers=headers).status_code == 200
        box.tokens.clock.advance(61)  # type: ignore[attr-defined]
        assert http.get("/products", headers=headers).status_code == 401, "the token expired after its TTL"
    store = TokenStore(WallClock())
    assert ClientCredentials(store, "id", "secret").grant(
        {"grant_type": "client_credentials", "client_id": "id", "client_secret": "secret"}).refresh_token is None


def test_static_token_and_password_grant_pieces() -> None:
    key = StaticToken("api-key-123")
    assert key.check("api-key-123") is None and key.check("other") == "invalid"
    key.alive = False
    assert key.check("api-key-123") == "invalid", "a revoked API key stops working"
    store = TokenStore(WallClock(), rotate=False)
    login = PasswordGrant(store, "user", "pass")
    pair = login.grant({"grant_type": "password", "username": "user", "password": "pass"})
    assert pair.refresh_token is not None
    again = login.grant({"grant_type": "refresh_token", "refresh_token": pair.refresh_token})
    assert again.refresh_token is None and login.grant(
        {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}).access_token, \
        "without rotation (Amazon LWA) the refresh token stays valid and only access tokens are issued"


# --- rate limits ----------------------------------------------------------------------------------------------


def test_rate_window_answers_with_the_platforms_429_body() -> None:
    box = BlingSandbox(rate_per_second=2, daily_limit=None)
    with serve(box.app) as served, httpx.Client(base_url=served.base_url + "/Api/v3") as http:
        refresh = box.connection(served.base_url)["credentials"]["refresh_token"]
        token = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh},
                          auth=(box.client_id, box.client_secret)).json()["access_token"]
        answers = [http.get("/depositos", headers={"Authorization": f"Bearer {token}"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429], "the third request within a second is refused"
    assert answers[2].json()["error"]["period"] == "second" and answers[2].json()["error"]["limit"] == 2, \
        f"Bling's 429 body names the limit: {answers[2].text}"
    assert box.stats()["throttled"] == 1


def test_token_bucket_allows_a_burst_then_refills_per_key() -> None:
    limits = Limits(lambda operation: [TokenBucket(rate=0.5, burst=2, name=str(operation))])
    assert limits.take(0.0, "getOrders") is None and limits.take(0.0, "getOrders") is None
    refused_now = limits.take(0.0, "getOrders")
    assert refused_now is not None and refused_now.rule.name == "getOrders" and refused_now.retry_after == 2, \
        "after the burst, one request per 2 s (rate 0.5)"
    assert limits.take(0.0, "getOrder") is None, "each operation has its own bucket"
    assert limits.take(2.0, "getOrders") is None, "the bucket refills at its rate"


# --- faults ------------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_sandbox() -> Iterator[Any]:
    """Run ``hub sandbox ARGS`` through click's runner in a thread; yields a function returning (url, output)."""
    runner = CliRunner()
    threads: list[threading.Thread] = []

    def start(*args: str) -> tuple[str, Any]:
        isolation = runner.isolation()
        _stdout, _stderr, output = isolation.__enter__()
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with_plugins().main(["sandbox", *args], standalone_mode=False)
            except Exception as exc:  # the test reads it below
                result["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and thread.is_alive():
            found = re.search(r"sandbox at (http://\S+)", output.getvalue().decode())
            if found:
                return found.group(1), (isolation, output)
            time.sleep(0.05)
        thread.join(timeout=5)
        isolation.__exit__(None, None, None)
        return "", result.get("error")

    yield start
    for thread in threads:
        thread.join(timeout=15)


def test_cli_fault_rates_fail_that_share_of_requests(cli_sandbox: Any) -> None:
    url, (isolation, output) = cli_sandbox("lojinha", "--port", "0", "--fault", "500=0.5", "--fault-seed", "3",
                                           "--for", "3")
    try:
        assert url, "the sandbox started and printed its address"
        assert "faults: 500 0.5" in output.getvalue().decode()
        with httpx.Client(base_url=url) as http:
            token = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "demo",
                                                    "client_secret": "demo-secret"})
            assert token.status_code == 200, "the token endpoint is spared by random faults"
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            statuses = [http.get("/products", headers=headers).status_code for _ in range(100)]
    finally:
        time.sleep(3.2)
        isolation.__exit__(None, None, None)
    failed = statuses.count(500)
    assert 30 <= failed <= 70 and statuses.count(200) == 100 - failed, \
        f"about half the requests fail with 500 at --fault 500=0.5 (got {failed} of 100)"


def test_cli_refuses_an_unknown_fault_kind() -> None:
    result = CliRunner().invoke(with_plugins(), ["sandbox", "lojinha", "--fault", "explode=0.1", "--for", "0"])
    assert result.exit_code == 2, result.output
    assert "unknown fault kind 'explode'" in result.output and "timeout-after-write" in result.output, \
        f"the error names the kind and lists the known ones: {result.output}"


def test_fault_queue_keeps_a_fault_for_its_method_and_settings_are_declared() -> None:
    box = CPlugSandbox()
    box.inject_fault("500", method="POST")
    with box.lock:
        assert box.faults.next("GET") is None and box.faults.next("POST") == "500", \
            "a fault kept for POST skips the GETs before it"
    with pytest.raises(ValueError, match="unknown fault 'boom'"):
        box.inject_fault("boom")
    with pytest.raises(ValueError, match="known settings: rate_per_second"):
        CPlugSandbox(rate_per_secnd=3)
    box.lift_limits()
    assert box.settings.rate_per_second is None and isinstance(box, SandboxBase) and isinstance(box, Sandbox)
    bling = BlingSandbox()
    bling.lift_limits()
    assert (bling.rate_per_second, bling.daily_limit) == (None, None), "Bling's daily quota is a limit too"


# --- idempotency ------------------------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer() -> None:
    box = CPlugSandbox(rate_per_second=None)
    with serve(box.app) as served, httpx.Client(base_url=served.base_url) as http:
        creds = box.connection(served.base_url)["credentials"]
        token = http.post("/oauth/token", json={**creds, "grant_type": "password"}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "CPlug-Company-Id": str(box.company_id),
                   "Idempotency-Key": str(uuid.uuid4())}
        body = {"name": "Vendedora Ana", "document": "52998224725"}
        first = http.post("/api/v3/sellers", json=body, headers=headers)
        second = http.post("/api/v3/sellers", json=body, headers=headers)
    assert first.status_code == second.status_code == 201 and first.content == second.content, \
        "the same Idempotency-Key replays the first answer byte for byte"
    assert len(box.records("sellers")) == 1, "and the seller is created once"


# --- NF-e XML ---------------------------------------------------------------------------------------------------


def test_an_ampersand_in_a_customer_name_gives_well_formed_nfe_xml() -> None:
    box = BlingSandbox(rate_per_second=None, nfe_delay_seconds=0)
    box.seed("products", 3)
    box.seed("payment_methods", 1)
    (cid,) = box.seed("customers", 1)
    name = "Tom & Jerry <Comércio> Ltda"
    box.edit("customers", cid, {"nome": name})
    with serve(box.app) as served, httpx.Client(base_url=served.base_url + "/Api/v3") as http:
        refresh = box.connection(served.base_url)["credentials"]["refresh_token"]
        token = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh},
                          auth=(box.client_id, box.client_secret)).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        product = next(p for p in box.records("products") if p["formato"] == "S" and p["tributacao"]["ncm"])
        method = box.records("payment_methods")[0]
        order = http.post("/pedidos/vendas", json={
            "contato": {"id": int(cid)}, "data": "2026-01-10", "dataSaida": "2026-01-10",
            "dataPrevista": "2026-01-15", "numeroLoja": "PDV-9",
            "itens": [{"produto": {"id": product["id"]}, "codigo": product["codigo"], "descricao": product["nome"],
                       "quantidade": 1, "valor": product["preco"], "valorLista": product["preco"]}],
            "parcelas": [{"dataVencimento": "2026-01-10", "valor": product["preco"],
                          "formaPagamento": {"id": method["id"]}}]})
        assert order.status_code == 201, order.text
        note = http.post(f"/pedidos/vendas/{order.json()['data']['id']}/gerar-nfe").json()["data"]["idNotaFiscal"]
        sent = http.post(f"/nfe/{note}/enviar")
        assert sent.status_code == 200, sent.text
        box.advance(1)
        xml = http.get(f"/nfe/{note}").json()["data"]["xml"]
    root = ET.fromstring(xml.encode())
    assert root.findtext(f".//{NFE}dest/{NFE}xNome") == name, f"the name survives the XML as typed: {xml[:300]}"
