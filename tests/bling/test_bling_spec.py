"""Every request the connector sent during a full round (auth, pulls, pushes, actions, NF-e) conforms to Bling's
published OpenAPI file, read from shared/specs (not a copy)."""

from __future__ import annotations

import json
from pathlib import Path

from hub_bling import spec

from tests.bling.conftest import World, customer, parents, sale
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
    world.route("catalog", ["categories", "products", "stock", "sellers", "payment_methods", "customers"],
                pull=True)
    assert world.pull("catalog").ok
    world.route("sales", ["sales"], mappings=MAPPINGS, transitions=TRANSITIONS, emit_invoices=True)
    simple = [p for p in parents(world.box) if not p.get("variacoes") and p["situacao"] == "A"]
    first = sale("S-1", [(simple[0]["codigo"], "10.00")], status="closed", buyer=customer())
    world.stage("sales", "sales", first, sale("S-2", [(simple[1]["codigo"], "12.00")], status="closed"))
    world.drain()
    world.stage("sales", "sales", first.model_copy(update={"status": "canceled"}))
    world.drain()
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
                   ("POST", "/pedidos/vendas/{idPedidoVenda}/gerar-nfe"), ("POST", "/nfe/{idNotaFiscal}/enviar")]:
        assert needed in kinds, needed
