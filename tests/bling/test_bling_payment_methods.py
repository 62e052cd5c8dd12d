"""Payment methods and customers that exist only on the source (Zydon's help page "Integração Zydon↔Bling": "Caso o
pedido contiver forma de pagamento ou cliente existente apenas no Zydon, estes dados serão criados automaticamente
no Bling"): found by name first, created once, looked for again after a create that timed out."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hub.models import Customer, Payment, PaymentMethod, Sale, SaleItem
from hub.store.schema import Connection
from sqlalchemy import update

from tests.bling.conftest import World, final_consumer_id, parents


def _named(world: World, name: str) -> list[dict]:
    return [m for m in world.box.records("payment_methods") if m["descricao"] == name]


def _zydon_sale(number: str, sku: str, method: str, name: str | None, buyer: Customer | None = None) -> Sale:
    return Sale(number=number, channel="zydon", issued_at=datetime(2026, 11, 20, 15, tzinfo=UTC), customer=buyer,
                items=[SaleItem(sku=sku, quantity=Decimal("1"), unit_price=Decimal("25.00"))], status="Em aberto",
                payments=[Payment(method=method, name=name, amount=Decimal("25.00"), tpag="15")])


def _options(world: World, **changes: object) -> None:
    with world.rt.store.begin() as s:
        conn = s.get_one(Connection, world.bling_id)
        s.execute(update(Connection).where(Connection.id == world.bling_id)
                  .values(options={**conn.options, **changes}))


def test_a_payment_method_only_the_source_has_is_created_once_and_an_existing_one_is_found(world: World):
    world.box.seed("payment_methods", 5)
    world.route("methods", ["payment_methods"])
    world.stage("methods", "payment_methods",
                PaymentMethod(code="zy-boleto-28", name="Boleto 28 dias", tpag="15"),
                PaymentMethod(code="zy-pix", name="pix", tpag="17"))
    assert world.drain().get("failed", 0) == 0
    (created,) = _named(world, "Boleto 28 dias")
    assert created["tipoPagamento"] == 15 and created["situacao"] == 1 and created["finalidade"] == 2
    assert len(_named(world, "PIX")) == 1, "Bling's own PIX is found by name (case ignored), not created again"
    bound = world.bound("payment_methods")
    assert str(created["id"]) in bound.values() and str(_named(world, "PIX")[0]["id"]) in bound.values()


def test_a_create_that_timed_out_is_looked_for_by_name_and_not_repeated(world: World):
    world.box.seed("payment_methods", 2)
    _options(world, timeout_seconds=0.5)
    world.box.fault_delay = 1.0
    world.box.inject_fault("timeout-after-write", 1)
    world.route("methods", ["payment_methods"])
    world.stage("methods", "payment_methods", PaymentMethod(code="zy-7", name="Cartão Zydon", tpag="03"))
    assert world.drain().get("failed", 0) == 0
    (created,) = _named(world, "Cartão Zydon")
    assert list(world.bound("payment_methods").values()) == [str(created["id"])]
    posts = [c for c in world.box.request_log if c["method"] == "POST" and c["path"] == "/formas-pagamentos"]
    assert len(posts) == 1, "found by name after the timeout: never posted again"
    assert any("POST" in c.action and c.error for c in world.api_errors()), "the timeout is in the API log"


def test_a_sale_with_a_method_bling_lacks_creates_it_by_name_when_the_connection_allows(world: World):
    world.box.seed("products", 3)
    world.box.seed("payment_methods", 3)
    sku = next(p["codigo"] for p in parents(world.box) if not p.get("variacoes"))
    world.route("orders", ["sales"])
    # Off (the default, CPlug's strict DE-PARA): refused naming the DE-PARA.
    world.stage("orders", "sales", _zydon_sale("Z-1", sku, "zy-boleto", "Boleto Zydon"), prefix="zy")
    world.drain()
    (q,) = world.quarantined()
    assert q.field == "payments.0.method" and "mappings.payment_methods" in q.fix
    assert _named(world, "Boleto Zydon") == []
    # On: two sales paying with it make one forma de pagamento, and both orders use it.
    _options(world, create_payment_methods=True)
    world.stage("orders", "sales", _zydon_sale("Z-2", sku, "zy-boleto", "Boleto Zydon"),
                _zydon_sale("Z-3", sku, "zy-boleto", "Boleto Zydon"), prefix="zy")
    world.drain()
    (method,) = _named(world, "Boleto Zydon")
    assert method["tipoPagamento"] == 15
    orders = {o["numeroLoja"]: o for o in world.box.records("sales")}
    assert {o["parcelas"][0]["formaPagamento"]["id"] for n, o in orders.items() if n in ("Z-2", "Z-3")} \
        == {method["id"]}


def test_a_customer_without_cpf_or_cnpj_goes_to_the_final_consumer_with_a_warning(world: World):
    world.box.seed("products", 3)
    world.box.seed("payment_methods", 3)
    sku = next(p["codigo"] for p in parents(world.box) if not p.get("variacoes"))
    contacts = len(world.box.records("customers"))
    world.route("orders", ["sales"], mappings={"payment_methods": {"cash": "Dinheiro"}})
    world.stage("orders", "sales", _zydon_sale("Z-9", sku, "cash", None, buyer=Customer(name="Cliente Sem Documento")),
                prefix="zy")
    assert world.drain().get("failed", 0) == 0
    (order,) = [o for o in world.box.records("sales") if o["numeroLoja"] == "Z-9"]
    assert order["contato"]["id"] == final_consumer_id(world.box)
    assert len(world.box.records("customers")) == contacts, "no contact without a document is created"
    assert any("Consumidor Final" in (c.error or "") and "Cliente Sem Documento" in (c.error or "")
               for c in world.api_errors())
