"""The Bling sandbox itself, through real HTTP: if it drifts from Bling, every connector test built on it lies."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from hub.models.types import access_key_check_digit
from hub.sandbox import Served, serve
from hub_bling import spec
from hub_bling.sandbox import BlingSandbox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Bling:
    box: BlingSandbox
    served: Served
    client: httpx.Client
    headers: dict[str, str] = field(default_factory=dict)

    def token(self, data: dict[str, str], *, jwt: bool = False, auth: bool = True) -> httpx.Response:
        headers = {"enable-jwt": "1"} if jwt else {}
        return self.client.post("/oauth/token", data=data, headers=headers,
                                auth=(self.box.client_id, self.box.client_secret) if auth else None)

    def login(self, *, jwt: bool = False) -> dict[str, Any]:
        refresh = self.box.connection(self.served.base_url)["credentials"]["refresh_token"]
        answer = self.token({"grant_type": "refresh_token", "refresh_token": refresh}, jwt=jwt)
        assert answer.status_code == 200, answer.text
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        return dict(answer.json())

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("POST", path, **kwargs)

    def data(self, path: str, **kwargs: Any) -> Any:
        answer = self.get(path, **kwargs)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]


@pytest.fixture
def bling() -> Iterator[Any]:
    started: list[Bling] = []

    def start(login: bool = True, **options: Any) -> Bling:
        options.setdefault("rate_per_second", None)
        box = BlingSandbox(**options)
        served = serve(box.app)
        b = Bling(box, served, httpx.Client(base_url=served.base_url + "/Api/v3", timeout=10))
        started.append(b)
        if login:
            b.login()
        return b

    yield start
    for b in started:
        b.client.close()
        b.served.stop()


def error(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


def sale_body(box: BlingSandbox, **changes: Any) -> dict[str, Any]:
    """A valid POST /pedidos/vendas body over the sandbox's own records."""
    product = next(p for p in box.records("products") if p["formato"] == "S" and p["tributacao"]["ncm"])
    contact = next(c for c in box.records("customers") if c["nome"] != "Consumidor Final")
    method = box.records("payment_methods")[0]
    body = {"contato": {"id": contact["id"]}, "data": "2026-01-10", "dataSaida": "2026-01-10",
            "dataPrevista": "2026-01-15", "numeroLoja": "PDV-1",
            "itens": [{"produto": {"id": product["id"]}, "codigo": product["codigo"], "descricao": product["nome"],
                       "quantidade": 2, "valor": product["preco"], "valorLista": product["preco"]}],
            "parcelas": [{"dataVencimento": "2026-01-10", "valor": round(2 * product["preco"], 2),
                          "formaPagamento": {"id": method["id"]}}]}
    body.update(changes)
    return body


def seeded(b: Bling) -> None:
    b.box.seed("products", 12)
    b.box.seed("customers", 4)
    b.box.seed("payment_methods", 5)
    b.box.seed("sellers", 1)


# --- OAuth --------------------------------------------------------------------------------------------


def test_authorization_code_flow_single_use_codes_and_basic_only(bling: Any) -> None:
    b = bling(login=False)
    redirect = b.client.get("/oauth/authorize", params={"response_type": "code", "client_id": b.box.client_id,
                                                        "state": "xyz"})
    assert redirect.status_code == 302
    target = urlparse(redirect.headers["location"])
    assert target.geturl().startswith(b.box.redirect_uri)
    params = parse_qs(target.query)
    assert params["state"] == ["xyz"]
    code = params["code"][0]

    in_body = b.client.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                                  "client_id": b.box.client_id,
                                                  "client_secret": b.box.client_secret})
    assert in_body.status_code == 400 and error(in_body)["type"] == "invalid_request"
    wrong = b.client.post("/oauth/token", data={"grant_type": "authorization_code", "code": code},
                          auth=(b.box.client_id, "nope"))
    assert wrong.status_code == 401 and error(wrong)["type"] == "invalid_client"

    issued = b.token({"grant_type": "authorization_code", "code": code})
    assert issued.status_code == 200
    tokens = issued.json()
    assert set(tokens) == {"access_token", "expires_in", "token_type", "scope", "refresh_token"}
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 21600
    assert len(tokens["access_token"]) == 40  # opaque without enable-jwt
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert b.client.get("/empresas/me/dados-basicos", headers=auth).json()["data"]["id"] == b.box.company_id

    reused = b.token({"grant_type": "authorization_code", "code": code})
    assert reused.status_code == 400
    assert "already been used" in error(reused)["description"]
    # ...and the whole grant is revoked.
    assert b.client.get("/depositos", headers=auth).status_code == 401
    dead = b.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert dead.status_code == 400 and error(dead)["type"] == "invalid_grant"

    late = b.box.authorize()
    b.box.advance(61)
    expired = b.token({"grant_type": "authorization_code", "code": late})
    assert expired.status_code == 400 and "expired" in error(expired)["description"]
    assert b.box.token_calls == 6


def test_refresh_rotates_and_jwt_on_request(bling: Any) -> None:
    b = bling(login=False)
    first = b.login(jwt=True)
    parts = first["access_token"].split(".")
    assert len(parts) == 3 and len(first["access_token"]) > 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts)
    assert b.get("/depositos").status_code == 200

    second = b.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert second.status_code == 200 and len(second.json()["access_token"]) < 100
    old = b.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert old.status_code == 400 and error(old)["type"] == "invalid_grant"
    third = b.token({"grant_type": "refresh_token", "refresh_token": second.json()["refresh_token"]})
    assert third.status_code == 200


def test_access_tokens_expire_and_can_be_revoked(bling: Any) -> None:
    b = bling(token_ttl_seconds=100)
    assert b.get("/depositos").status_code == 200
    b.box.advance(101)
    expired = b.get("/depositos")
    assert expired.status_code == 401
    assert error(expired) == {"type": "invalid_token", "message": "invalid_token",
                              "description": "The access token provided has expired"}
    tokens = b.login()
    b.box.expire_access_tokens()
    assert b.get("/depositos").status_code == 401
    again = b.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert again.status_code == 200
    b.headers = {"Authorization": f"Bearer {again.json()['access_token']}"}
    b.box.inject_fault("401")
    assert b.get("/depositos").status_code == 401
    after = b.token({"grant_type": "refresh_token", "refresh_token": again.json()["refresh_token"]})
    assert after.status_code == 200  # the 401 fault leaves refresh tokens alone
    b.headers = {"Authorization": f"Bearer {after.json()['access_token']}"}
    b.box.revoke_all()
    assert b.get("/depositos").status_code == 401
    revoked = b.token({"grant_type": "refresh_token", "refresh_token": after.json()["refresh_token"]})
    assert revoked.status_code == 400 and error(revoked)["type"] == "invalid_grant"


# --- limits and faults --------------------------------------------------------------------------------


def test_rate_limits_answer_blings_429_bodies(bling: Any) -> None:
    b = bling(rate_per_second=3, daily_limit=6)
    statuses = [b.get("/depositos").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    last = b.get("/depositos")
    assert last.status_code == 429 and b.box.throttled == 2
    assert last.json() == {"error": {
        "type": "TOO_MANY_REQUESTS", "message": "Limite de requisições atingido.",
        "description": "O limite de requisições por segundo foi atingido, tente novamente mais tarde.",
        "limit": 3, "period": "second"}}
    b.box.advance(1.01)
    assert b.get("/depositos").status_code == 200
    b.box.set_rate(None)
    assert [b.get("/depositos").status_code for _ in range(3)] == [200, 200, 429]
    day = error(b.get("/depositos"))
    assert (day["limit"], day["period"]) == (6, "day")
    b.box.advance(86400)
    b.login()  # the access token lasted 6 h; the new day's count starts at zero
    assert b.get("/depositos").status_code == 200


def test_injected_faults(bling: Any) -> None:
    b = bling(fault_delay=0.5)
    seeded(b)
    b.box.inject_fault("500")
    assert b.get("/depositos").status_code == 500
    b.box.inject_fault("429")
    assert error(b.get("/depositos"))["period"] == "second"
    b.box.inject_fault("429-day")
    assert error(b.get("/depositos"))["period"] == "day"
    b.box.inject_fault("timeout")
    with pytest.raises(httpx.ReadTimeout):
        b.get("/depositos", timeout=0.2)
    b.box.inject_fault("slow")
    assert b.get("/depositos").status_code == 200

    first = b.get("/produtos", params={"criterio": 5, "filtroSaldoEstoque": 1, "limite": 2, "pagina": 1}).json()
    b.box.inject_fault("repeat_page")
    repeated = b.get("/produtos", params={"criterio": 5, "filtroSaldoEstoque": 1, "limite": 2, "pagina": 2})
    assert repeated.json() == first
    second = b.get("/produtos", params={"criterio": 5, "filtroSaldoEstoque": 1, "limite": 2, "pagina": 2}).json()
    assert second != first

    b.box.inject_fault("timeout-after-write")
    assert b.get("/depositos", timeout=0.3).status_code == 200  # reads are not delayed
    before = len(b.box.records("sales"))
    with pytest.raises(httpx.ReadTimeout):
        b.post("/pedidos/vendas", json=sale_body(b.box), timeout=0.2)
    assert len(b.box.records("sales")) == before + 1  # the write happened


def test_ip_blocks_after_error_bursts_and_token_floods(bling: Any) -> None:
    b = bling()
    anonymous = httpx.Client(base_url=b.client.base_url, timeout=10)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: anonymous.get("/depositos").status_code, range(300)))
    anonymous.close()
    assert statuses.count(401) == 300
    blocked = b.get("/depositos")
    assert blocked.status_code == 403
    assert error(blocked)["type"] == "FORBIDDEN" and error(blocked)["message"] == "IP bloqueado"
    assert b.token({"grant_type": "refresh_token", "refresh_token": "x"}).status_code == 403
    b.box.advance(601)
    assert b.get("/depositos").status_code == 200

    codes = [b.token({"grant_type": "refresh_token", "refresh_token": "x"}).status_code for _ in range(21)]
    assert codes[:20] == [400] * 20 and codes[20] == 403
    assert b.get("/depositos").status_code == 403
    b.box.advance(3601)
    assert b.get("/depositos").status_code == 200


# --- lists --------------------------------------------------------------------------------------------


def _pull_all(b: Bling, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for stock in (0, 1, 2):
        page = 1
        while True:
            body = b.get("/produtos", params={**params, "filtroSaldoEstoque": stock, "pagina": page,
                                              "limite": 100}).json()
            assert set(body) == {"data"}  # no totals, no next link
            rows += body["data"]
            if len(body["data"]) < 100:
                break
            page += 1
    return rows


def test_product_list_defaults_hide_data(bling: Any) -> None:
    b = bling()
    b.box.seed("products", 150)
    everything = b.box.records("products")
    assert len(everything) == 150
    listed = len(everything) + sum(len(p.get("variacoes", [])) for p in everything)
    default = b.data("/produtos", params={"limite": 100})
    pulled = _pull_all(b, criterio=5)
    assert len(pulled) == len({r["id"] for r in pulled}) == listed  # the list shows parents and variations
    assert len(default) < len(everything) / 4
    zero = [r for r in pulled if r["estoque"]["saldoVirtualTotal"] == 0]
    assert len(zero) >= len(pulled) / 4
    assert not {r["id"] for r in zero} & {r["id"] for r in b.data("/produtos", params={"criterio": 5})}

    variations = [r for r in pulled if "idProdutoPai" in r]
    assert variations, "about one product in five has variations"
    assert set(pulled[0]) <= {"id", "idProdutoPai", "nome", "codigo", "preco", "precoCusto", "estoque", "tipo",
                              "situacao", "formato", "descricaoCurta", "imagemURL"}
    parent = b.data(f"/produtos/{variations[0]['idProdutoPai']}")
    assert parent["formato"] == "V" and 2 <= len(parent["variacoes"]) <= 4
    assert re.fullmatch(r"Cor:\w+;Tamanho:\w+", parent["variacoes"][0]["variacao"]["nome"])
    simple = next(r for r in everything if r["formato"] == "S")
    assert len(simple["gtin"]) == 13 and len(simple["tributacao"]["ncm"]) == 8
    assert simple["midia"]["imagens"]["imagensURL"][0]["link"].startswith("https://")
    assert b.data("/produtos", params=[("codigos[]", simple["codigo"]), ("criterio", 5),
                                       ("filtroSaldoEstoque", 0 if simple["estoque"]["saldoVirtualTotal"] == 0
                                        else 1)])[0]["id"] == simple["id"]
    assert {r["situacao"] for r in pulled} == {"A", "I"}
    assert len(_pull_all(b, criterio=2)) + len(_pull_all(b, criterio=3)) == len(pulled)

    too_many = b.get("/produtos", params={"limite": 101})
    assert too_many.status_code == 400 and error(too_many)["type"] == "VALIDATION_ERROR"
    assert b.get("/produtos", params={"pagina": 0}).status_code == 400


def test_change_filters_compare_minutes_and_refuse_long_ranges(bling: Any) -> None:
    b = bling()
    b.box.seed("products", 30)
    target = next(p for p in b.box.records("products") if p["estoque"]["saldoVirtualTotal"] > 0)
    b.box.touch("products", str(target["id"]))
    changed = b.box.state.pmeta[target["id"]].changed  # local time text, as Bling stores it
    same_minute = changed[:16] + ":59"
    found = b.data("/produtos", params={"criterio": 5, "dataAlteracaoInicial": same_minute})
    assert [r["id"] for r in found] == [target["id"]]
    minute_before = (datetime.strptime(changed[:16], "%Y-%m-%d %H:%M") - timedelta(minutes=1)).strftime(
        "%Y-%m-%d %H:%M:59")
    year_ago = (datetime.strptime(changed, "%Y-%m-%d %H:%M:%S") - timedelta(days=300)).strftime("%Y-%m-%d %H:%M:%S")
    earlier = b.data("/produtos", params={"criterio": 5, "dataAlteracaoInicial": year_ago,
                                          "dataAlteracaoFinal": minute_before, "limite": 100})
    assert target["id"] not in {r["id"] for r in earlier}
    long = b.get("/produtos", params={"dataAlteracaoInicial": "2024-01-01 00:00:00",
                                      "dataAlteracaoFinal": "2025-01-02 00:00:00"})
    assert long.status_code == 400 and error(long)["fields"][0]["element"] == "dataAlteracaoFinal"


def test_the_change_date_index_lists_what_a_scan_lists_in_listing_order(bling: Any) -> None:
    """The sandbox answers change-date filters from an index (a 100,000-product bench must measure the hub, not a
    scan per request): per stock filter, the same products in the same order as the whole list shows them, and a
    later change is seen at once."""
    b = bling()
    b.box.seed("products", 40)
    b.box.age("products", 3600)

    def ids(**params: Any) -> list[int]:
        return [r["id"] for r in b.data("/produtos", params={"criterio": 5, "limite": 100, **params})]

    listed = [r["id"] for r in _pull_all(b, criterio=5)]
    touched = {listed[30], listed[2], listed[17]}
    for pid in (listed[30], listed[2], listed[17]):  # out of listing order
        b.box.touch("products", str(pid))
    since = b.box.state.pmeta[listed[30]].changed
    for stock in (0, 1, 2):
        scan = [pid for pid in ids(filtroSaldoEstoque=stock) if pid in touched]
        assert ids(filtroSaldoEstoque=stock, dataAlteracaoInicial=since) == scan
    b.box.touch("products", str(listed[5]))
    again = {pid for stock in (0, 1, 2) for pid in ids(filtroSaldoEstoque=stock, dataAlteracaoInicial=since)}
    assert again == touched | {listed[5]}


def test_other_lists_and_lookups(bling: Any) -> None:
    b = bling()
    b.box.seed("categories", 10)
    seeded(b)
    b.box.seed("stock", 3)
    deposits = b.data("/depositos")
    assert [(d["descricao"], d["padrao"]) for d in deposits] == [("Geral", True), ("Loja Centro", False),
                                                                       ("Loja Shopping", False)]
    categories = b.data("/categorias/produtos")
    assert any(c["categoriaPai"]["id"] for c in categories) and any(not c["categoriaPai"]["id"] for c in categories)
    kinds = {m["descricao"]: m["tipoPagamento"] for m in b.data("/formas-pagamentos")}
    assert kinds["Dinheiro"] == 1 and kinds["PIX"] == 17 and kinds["Cartão de Crédito"] == 3
    sellers = b.data("/vendedores")
    assert sellers[0]["contato"]["nome"] and sellers[0]["contato"]["situacao"] == "A"
    final = b.data("/contatos/consumidor-final")
    assert final["nome"] == "Consumidor Final"
    assert final["id"] not in {c["id"] for c in b.data("/contatos", params={"criterio": 1})}  # not listed
    ids = [p["id"] for p in b.box.records("products")][:5]
    balances = b.data("/estoques/saldos", params=[("idsProdutos[]", i) for i in ids] + [("filtroSaldoEstoque", 0)])
    for row in balances:
        assert row["saldoFisicoTotal"] == sum(d["saldoFisico"] for d in row["depositos"]) == 0
    assert b.get("/estoques/saldos").status_code == 400
    assert b.get("/estoques/saldos", params=[("idsProdutos[]", i) for i in range(101)]).status_code == 400
    empresa = b.data("/empresas/me/dados-basicos")
    assert re.fullmatch(r"[0-9a-f]{32}", empresa["id"]) and empresa["cnpj"]


# --- writes -------------------------------------------------------------------------------------------


def test_contacts_validate_documents_but_allow_duplicates(bling: Any) -> None:
    b = bling()
    body = {"nome": "Maria Oliveira", "tipo": "F", "situacao": "A", "numeroDocumento": "529.982.247-25",
            "endereco": {"geral": {"endereco": "Rua A", "numero": "1", "bairro": "Centro", "municipio": "São Paulo",
                                   "uf": "SP", "cep": "01310-100"}}}
    first = b.post("/contatos", json=body)
    assert first.status_code == 201 and set(first.json()["data"]) == {"id"}
    assert b.post("/contatos", json=body).status_code == 201  # Bling does not refuse a duplicate document
    found = b.data("/contatos", params={"numeroDocumento": "52998224725"})
    assert len(found) == 2 and set(found[0]) == {"id", "nome", "codigo", "situacao", "numeroDocumento",
                                                 "telefone", "celular"}
    bad = b.post("/contatos", json={**body, "numeroDocumento": "529.982.247-26"})
    assert bad.status_code == 400
    assert [f["element"] for f in error(bad)["fields"]] == ["numeroDocumento"]
    missing = b.post("/contatos", json={"tipo": "X"})
    assert {f["element"] for f in error(missing)["fields"]} == {"nome", "situacao", "tipo"}
    assert all(set(f) == {"code", "msg", "element", "namespace"} for f in error(missing)["fields"])
    put = b.call("PUT", f"/contatos/{first.json()['data']['id']}", json={**body, "nome": "Maria O. Souza"})
    assert put.status_code == 204
    invalid_id = b.box.seed_invalid("customers")
    assert b.data(f"/contatos/{invalid_id}")["numeroDocumento"]


def test_sales_rules_alerts_and_filters(bling: Any) -> None:
    b = bling()
    seeded(b)
    box = b.box
    created = b.post("/pedidos/vendas", json=sale_body(box))
    assert created.status_code == 201, created.text
    assert set(created.json()["data"]) == {"id", "alertas"} and created.json()["data"]["alertas"] == []
    order = b.data(f"/pedidos/vendas/{created.json()['data']['id']}")
    assert order["situacao"]["id"] == box.situacao_id("Em aberto") and order["total"] == order["totalProdutos"]
    assert b.post("/pedidos/vendas", json=sale_body(box)).status_code == 201  # same numeroLoja: accepted
    assert len(b.data("/pedidos/vendas", params=[("numerosLojas[]", "PDV-1")])) == 2

    bad_payment = sale_body(box)
    bad_payment["parcelas"][0]["formaPagamento"]["id"] = 1
    refused = error(b.post("/pedidos/vendas", json=bad_payment))
    assert refused["type"] == "VALIDATION_ERROR"
    assert refused["fields"][0]["collection"][0] == {"index": 1, "code": 12, "msg": "Id da forma de pagamento "
                                                     "inválido.", "element": "formaPagamento", "namespace": "VENDAS"}
    assert error(b.post("/pedidos/vendas", json=sale_body(box, contato={"id": 1})))["fields"][0]["element"] == \
        "contato"
    schema = error(b.post("/pedidos/vendas", json={"contato": {"id": 1}}))
    assert {"data", "itens", "parcelas"} <= {f["element"] for f in schema["fields"]}

    loose = sale_body(box)
    loose["itens"].append({"descricao": "Embalagem para presente", "quantidade": 1, "valor": 0, "valorLista": 0})
    alerted = b.post("/pedidos/vendas", json=loose)
    assert alerted.status_code == 201 and alerted.json()["data"]["alertas"][0]["element"] == "itens"

    box.editar_numero_pedido = True
    numbered = error(b.post("/pedidos/vendas", json=sale_body(box)))
    assert numbered["fields"] == [{"code": 45, "msg": "O número do pedido deve ser informado", "element": "numero",
                                   "namespace": "VENDAS"}]
    assert b.post("/pedidos/vendas", json=sale_body(box, numero=9001)).status_code == 201
    assert b.data("/pedidos/vendas", params={"numero": 9001})[0]["numero"] == 9001


def test_actions_post_ledgers_exactly_once(bling: Any) -> None:
    b = bling()
    seeded(b)
    sid = b.post("/pedidos/vendas", json=sale_body(b.box)).json()["data"]["id"]
    item = b.data(f"/pedidos/vendas/{sid}")["itens"][0]
    before = b.data("/estoques/saldos", params=[("idsProdutos[]", item["produto"]["id"]),
                                                ("filtroSaldoEstoque", 0)])
    before_total = before[0]["saldoFisicoTotal"] if before else None
    assert b.post(f"/pedidos/vendas/{sid}/lancar-estoque").status_code == 204
    again = b.post(f"/pedidos/vendas/{sid}/lancar-estoque")
    assert again.status_code == 400 and error(again)["fields"][0]["msg"] == "O estoque já foi lançado"
    moves = b.box.records("stock_movements")
    assert [(m["operacao"], m["quantidade"], m["pedido"]["id"]) for m in moves] == [("S", 2, sid)]
    after = b.box.records("stock")
    mine = next(r for r in after if r["produto"]["id"] == item["produto"]["id"])
    if before_total is not None:
        assert mine["saldoFisicoTotal"] == before_total - 2
    assert b.post(f"/pedidos/vendas/{sid}/estornar-estoque").status_code == 204
    assert b.post(f"/pedidos/vendas/{sid}/estornar-estoque").status_code == 400
    loja = next(d for d in b.data("/depositos") if not d["padrao"])
    assert b.post(f"/pedidos/vendas/{sid}/lancar-estoque/{loja['id']}").status_code == 204
    assert b.box.records("stock_movements")[-1]["deposito"]["id"] == loja["id"]

    assert b.post(f"/pedidos/vendas/{sid}/estornar-contas").status_code == 400
    assert b.post(f"/pedidos/vendas/{sid}/lancar-contas").status_code == 204
    assert b.post(f"/pedidos/vendas/{sid}/lancar-contas").status_code == 400
    assert [a["operacao"] for a in b.box.records("accounts")] == ["lancamento"]


def test_situacoes_are_per_account_and_transitions_run_actions(bling: Any) -> None:
    one, two = bling(), bling(account_seed=2)
    assert one.box.situacao_id("Em aberto") != two.box.situacao_id("Em aberto")
    (vendas, *_) = [m for m in one.data("/situacoes/modulos") if m["nome"] == "Vendas"]
    names = {s["nome"]: s for s in one.data(f"/situacoes/modulos/{vendas['id']}")}
    assert {"Em aberto", "Atendido", "Cancelado", "Em andamento", "Venda Agenciada", "Em digitação",
            "Verificado"} <= set(names)
    assert set(names["Atendido"]) == {"id", "nome", "idHerdado", "cor"}
    actions = {a["nome"]: a["id"] for a in one.data(f"/situacoes/modulos/{vendas['id']}/acoes")}
    assert set(actions) == {"lancarEstoque", "lancarContas", "estornarEstoque", "estornarContas"}

    seeded(one)
    one.box.set_transition("Em aberto", "Atendido", ["lancarEstoque", "lancarContas"])
    (transition,) = one.data(f"/situacoes/modulos/{vendas['id']}/transicoes")
    assert transition["acoes"] == [actions["lancarEstoque"], actions["lancarContas"]] and transition["ativo"]
    assert transition["situacaoOrigem"] == {"id": names["Em aberto"]["id"], "nome": "Em aberto"}
    sid = one.post("/pedidos/vendas", json=sale_body(one.box)).json()["data"]["id"]
    moved = one.call("PATCH", f"/pedidos/vendas/{sid}/situacoes/{names['Atendido']['id']}")
    assert moved.status_code == 204
    assert one.data(f"/pedidos/vendas/{sid}")["situacao"] == {"id": names["Atendido"]["id"], "valor": 1}
    assert len(one.box.records("stock_movements")) == 1 and len(one.box.records("accounts")) == 1
    assert one.post(f"/pedidos/vendas/{sid}/lancar-estoque").status_code == 400  # the transition posted it
    assert one.call("PATCH", f"/pedidos/vendas/{sid}/situacoes/{two.box.situacao_id('Atendido')}").status_code == 400


# --- NF-e ---------------------------------------------------------------------------------------------


def test_nfe_lifecycle_and_duplicate_rejection(bling: Any) -> None:
    b = bling(nfe_delay_seconds=30)
    seeded(b)
    sid = b.post("/pedidos/vendas", json=sale_body(b.box)).json()["data"]["id"]
    generated = b.post(f"/pedidos/vendas/{sid}/gerar-nfe")
    assert generated.status_code == 201
    nid = generated.json()["data"]["idNotaFiscal"]
    assert b.data(f"/pedidos/vendas/{sid}")["notaFiscal"]["id"] == nid
    sent = b.post(f"/nfe/{nid}/enviar")
    assert sent.status_code == 200 and sent.json() == {"data": {"xml": ""}}
    assert b.data(f"/nfe/{nid}")["situacao"] == 8
    b.box.advance(31)
    note = b.data(f"/nfe/{nid}")
    assert note["situacao"] == 5 and note["serie"] == 1 and note["numero"]
    key = note["chaveAcesso"]
    assert re.fullmatch(r"\d{44}", key) and int(key[-1]) == access_key_check_digit(key[:43])
    assert key in note["xml"] and "<nfeProc" in note["xml"] and key in note["linkDanfe"]
    assert note["numeroPedidoLoja"] == "PDV-1"

    twin = b.post(f"/pedidos/vendas/{sid}/gerar-nfe").json()["data"]["idNotaFiscal"]
    assert twin != nid  # a second note for the same order, as the real API allows
    duplicate = b.post(f"/nfe/{twin}/enviar")
    assert duplicate.status_code == 400
    assert error(duplicate)["fields"][0]["msg"].startswith("Rejeição 539")
    assert b.data(f"/nfe/{twin}")["situacao"] == 4

    assert {n["id"] for n in b.data("/nfe", params={"numeroLoja": "PDV-1"})} == {nid, twin}
    b.box.cancel_nfe(nid)
    assert [n["id"] for n in b.data("/nfe")] == [twin]  # cancelled notes are hidden by default
    assert [n["id"] for n in b.data("/nfe", params={"situacao": 2})] == [nid]


def test_nfe_rejection_names_each_problem_and_resend_after_fix(bling: Any) -> None:
    b = bling(nfe_delay_seconds=0)
    seeded(b)
    body = sale_body(b.box)
    product, contact = body["itens"][0]["produto"]["id"], body["contato"]["id"]
    b.box.edit("products", product, {"tributacao": {"ncm": ""}})
    b.box.edit("customers", contact, {"endereco": {"geral": {"bairro": "", "cep": ""}}, "numeroDocumento": "123"})
    sid = b.post("/pedidos/vendas", json=body).json()["data"]["id"]
    nid = b.post(f"/pedidos/vendas/{sid}/gerar-nfe").json()["data"]["idNotaFiscal"]
    rejected = b.post(f"/nfe/{nid}/enviar")
    assert rejected.status_code == 400
    assert {f["element"] for f in error(rejected)["fields"]} == {
        "itens[0].classificacaoFiscal", "contato.endereco.bairro", "contato.endereco.cep",
        "contato.numeroDocumento"}
    assert b.data(f"/nfe/{nid}")["situacao"] == 4
    b.box.edit("products", product, {"tributacao": {"ncm": "61091000"}})
    b.box.edit("customers", contact, {"endereco": {"geral": {"bairro": "Centro", "cep": "01310-100"}},
                                      "numeroDocumento": "529.982.247-25"})
    assert b.post(f"/nfe/{nid}/enviar").status_code == 200
    assert b.data(f"/nfe/{nid}")["situacao"] == 5


# --- webhooks -----------------------------------------------------------------------------------------


def test_webhooks_are_signed_v1_envelopes(bling: Any) -> None:
    received: list[tuple[bytes, str]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers.get("x-bling-signature-256", "")))
        return Response(status_code=200)

    receiver = serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    try:
        b = bling(login=False)
        b.box.seed("products", 3)
        b.box.seed("sales", 1)
        b.box.webhook_url = receiver.base_url + "/hook"
        assert b.box.send_webhook("product.updated", {"id": 1}, event_id="e-1", date="2026-01-10T12:00:00Z") == 200
        product = b.box.records("products")[0]["id"]
        b.box.touch("products", str(product))
        b.box.touch("stock", str(next(p["id"] for p in b.box.records("products") if "variacoes" not in p)))
        b.box.touch("sales", b.box.records("sales")[0]["id"])
    finally:
        receiver.stop()
    assert len(received) == 4
    for raw, signature in received:
        expected = hmac.new(b.box.client_secret.encode(), raw, hashlib.sha256).hexdigest()
        assert signature == f"sha256={expected}"
    envelopes = [json.loads(raw) for raw, _ in received]
    assert envelopes[0] == {"eventId": "e-1", "date": "2026-01-10T12:00:00Z", "version": "v1",
                            "event": "product.updated", "companyId": b.box.company_id, "data": {"id": 1}}
    assert [e["event"] for e in envelopes[1:]] == ["product.updated", "stock.updated", "order.updated"]
    assert set(envelopes[1]["data"]) == {"id", "nome", "codigo", "tipo", "situacao", "preco", "unidade", "formato",
                                         "idProdutoPai", "categoria", "descricaoCurta", "descricaoComplementar"}
    assert set(envelopes[2]["data"]) == {"produto", "deposito", "operacao", "quantidade", "saldoFisicoTotal",
                                         "saldoVirtualTotal"}
    assert set(envelopes[3]["data"]) == {"id", "data", "numero", "numeroLoja", "total", "contato", "vendedor",
                                         "loja", "situacao"}


# --- the spec -----------------------------------------------------------------------------------------


def test_spec_copies_and_helpers(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    shared = spec.spec_path()
    assert shared.name == spec.SPEC_NAME and shared.suffix == ".json"
    packaged = spec.__file__.replace("spec.py", "data/bling-openapi-reference.json.gz")
    with open(packaged, "rb") as f:
        assert gzip.decompress(f.read()) == shared.read_bytes()
    monkeypatch.setenv("HUB_BLING_SPEC", str(tmp_path / "x.json"))
    assert spec.spec_path() == tmp_path / "x.json"

    assert spec.match("GET", "/contatos/consumidor-final")[0] == "/contatos/consumidor-final"  # type: ignore[index]
    assert spec.match("GET", "/Api/v3/produtos/123")[0] == "/produtos/{idProduto}"  # type: ignore[index]
    assert spec.match("PUT", "/pedidos/vendas/1/lancar-estoque") is None
    assert spec.request_problems("GET", "/produtos", [("codigo", "X")], None) == [
        "query parameter 'codigo' is not declared for GET /produtos"]
    assert spec.request_problems("GET", "/produtos", [("codigos[]", "X"), ("criterio", "5")], None) == []
    assert spec.request_problems("GET", "/estoques/saldos", [], None)
    fields = spec.body_errors("POST", "/contatos", {"nome": 1, "situacao": "A", "tipo": "F"})
    assert fields == [{"code": 2, "msg": "O campo nome deve ser do tipo texto", "element": "nome",
                       "namespace": "CONTATOS"}]


def test_every_request_the_sandbox_saw_conforms_to_the_spec(bling: Any) -> None:
    b = bling()
    seeded(b)
    sid = b.post("/pedidos/vendas", json=sale_body(b.box)).json()["data"]["id"]
    b.get("/produtos", params=[("criterio", 5), ("idsProdutos[]", 1), ("idsProdutos[]", 2)])
    b.get("/contatos", params={"pesquisa": "Silva", "criterio": 1})
    b.get(f"/pedidos/vendas/{sid}")
    b.post(f"/pedidos/vendas/{sid}/lancar-estoque")
    b.get("/produtos", params={"sku": "nope"})
    log = b.box.request_log
    assert all(set(entry) == {"method", "path", "query", "body", "headers"} for entry in log)
    problems = [p for e in log for p in spec.request_problems(e["method"], e["path"], e["query"], e["body"])]
    assert problems == ["query parameter 'sku' is not declared for GET /produtos"]
