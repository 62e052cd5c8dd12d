"""Every request the connector sent during a full round (auth, pulls, pushes, actions, NF-e) conforms to Bling's
published OpenAPI file, read from shared/specs (not a copy); what a strict reading of it requires (``valorLista`` on
order items) the sandbox enforces; and Bling's category tree is read without doubling a self-parent."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from hub.models import Category, PaymentMethod
from hub.store.schema import Record
from hub_bling import spec
from sqlalchemy import select

from tests.bling.conftest import World, customer, final_consumer_id, parents, sale
from tests.bling.test_bling_sales import MAPPINGS, TRANSITIONS

SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "bling" / "bling-openapi-reference.json"


def test_the_packaged_spec_is_the_published_file():
    assert SPEC.exists(), f"the published spec is expected at {SPEC}"
    assert spec.load_spec() == json.loads(SPEC.read_text())


def test_every_request_the_connector_sends_validates_against_the_published_spec(world: World):
    world.box.seed("categories", 4)
    world.box.seed("products", 30)
    world.box.seed("stock", 30)
    world.box.seed("sellers", 2)
    world.box.seed("payment_methods", 5)
    world.box.seed("customers", 5)
    world.route("catalog", ["categories", "products", "stock", "prices", "sellers", "payment_methods", "customers"],
                pull=True)
    assert world.pull("catalog").ok
    world.route("sales", ["sales"], mappings=MAPPINGS, transitions=TRANSITIONS, emit_invoices=True)
    simple = [p for p in parents(world.box) if not p.get("variacoes") and p["situacao"] == "A"]
    first = sale("S-1", [(simple[0]["codigo"], "10.00")], status="closed", buyer=customer())
    world.stage("sales", "sales", first, sale("S-2", [(simple[1]["codigo"], "12.00")], status="closed"))
    world.drain()
    world.stage("sales", "sales", first.model_copy(update={"status": "canceled"}))
    world.drain()
    world.route("methods", ["payment_methods"])
    world.stage("methods", "payment_methods", PaymentMethod(code="zy-1", name="Boleto Zydon", tpag="15"))
    world.drain()
    world.route("orders", ["sales"], pull=True)
    assert world.pull("orders").ok
    published = json.loads(SPEC.read_text())
    log = [r for r in world.box.request_log if not r["path"].startswith("/oauth")]
    assert len(log) > 40
    problems = []
    for r in log:
        problems += [f"{r['method']} {r['path']}: {p}" for p in
                     spec.request_problems(r["method"], r["path"], r["query"], r["body"], document=published)]
    assert problems == []
    kinds = {(r["method"], spec.match(r["method"], r["path"], document=published)[0]) for r in log}
    for needed in [("GET", "/produtos"), ("GET", "/produtos/{idProduto}"), ("POST", "/pedidos/vendas"),
                   ("POST", "/pedidos/vendas/{idPedidoVenda}/lancar-estoque"),
                   ("PATCH", "/pedidos/vendas/{idPedidoVenda}/situacoes/{idSituacao}"),
                   ("POST", "/pedidos/vendas/{idPedidoVenda}/gerar-nfe"), ("POST", "/nfe/{idNotaFiscal}/enviar"),
                   ("GET", "/pedidos/vendas"), ("GET", "/pedidos/vendas/{idPedidoVenda}"),
                   ("POST", "/formas-pagamentos")]:
        assert needed in kinds, needed


def _token(world: World) -> dict[str, str]:
    refresh = world.box.connection(world.served.base_url)["credentials"]["refresh_token"]
    answer = httpx.post(f"{world.served.base_url}/Api/v3/oauth/token",
                        data={"grant_type": "refresh_token", "refresh_token": refresh},
                        auth=(world.box.client_id, world.box.client_secret), timeout=10)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_an_order_item_without_valor_lista_is_refused_as_bling_refuses_it(world: World):
    world.box.seed("products", 2)
    world.box.seed("payment_methods", 1)
    product = next(p for p in parents(world.box) if not p.get("variacoes"))
    method = world.box.records("payment_methods")[0]
    item = {"produto": {"id": product["id"]}, "codigo": product["codigo"], "descricao": product["nome"],
            "quantidade": 1, "valor": 10.0}
    body = {"contato": {"id": final_consumer_id(world.box)}, "data": "2026-11-20", "dataSaida": "2026-11-20",
            "dataPrevista": "2026-11-20", "itens": [item],
            "parcelas": [{"dataVencimento": "2026-11-20", "valor": 10.0, "formaPagamento": {"id": method["id"]}}]}
    assert "POST /pedidos/vendas body: itens[0].valorLista: O campo itens[0].valorLista é obrigatório" in \
        spec.request_problems("POST", "/pedidos/vendas", [], body), "the published spec requires valorLista"
    url = f"{world.served.base_url}/Api/v3/pedidos/vendas"
    refused = httpx.post(url, json=body, headers=_token(world), timeout=10)
    assert refused.status_code == 400, f"a missing valorLista must be refused, got {refused.status_code}"
    error = refused.json()["error"]
    assert error["type"] == "VALIDATION_ERROR"
    assert [f["element"] for f in error["fields"]] == ["itens[0].valorLista"], error
    accepted = httpx.post(url, json={**body, "itens": [{**item, "valorLista": 10.0}]}, headers=_token(world),
                          timeout=10)
    assert accepted.status_code == 201, accepted.text


def _category_paths(world: World) -> list[list[str]]:
    with world.rt.store.sessions() as s:
        return sorted(Category.model_validate(r.payload).path
                      for r in s.scalars(select(Record).where(Record.entity == "categories")))


def test_a_category_that_is_its_own_parent_or_in_a_cycle_gets_a_single_path(world: World):
    top = world.box.create("categories", {"id": 910, "descricao": "Roupas", "categoriaPai": {"id": 910}})
    world.box.create("categories", {"descricao": "Camisetas", "categoriaPai": {"id": int(top)}})
    world.box.create("categories", {"descricao": "Acessórios", "categoriaPai": {"id": 0}})
    world.box.create("categories", {"id": 920, "descricao": "Bonés", "categoriaPai": {"id": 921}})
    world.box.create("categories", {"id": 921, "descricao": "Chapéus", "categoriaPai": {"id": 920}})
    world.route("catalog", ["categories"], pull=True)
    assert world.pull("catalog").ok
    paths = _category_paths(world)
    assert ["Roupas"] in paths and ["Roupas", "Camisetas"] in paths and ["Acessórios"] in paths, paths
    assert ["Roupas", "Roupas"] not in paths, "a category that is its own parent is not doubled"
    assert all(len(set(p)) == len(p) for p in paths), f"no path repeats a category: {paths}"
    assert len(paths) == 5, paths
