"""Each rule of Zydon's help page "Integração Zydon↔Bling", checked end to end: the shipped route file, both
sandboxes over real HTTP (Bling's webhooks delivered to the hub's receiver), the real store and the outbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hub.runner.service import schedule_once
from hub.status import quarantined
from hub.store.schema import Route
from sqlalchemy import update

from tests.integration.zydon_pair import TENANT, ZydonPair, zpair_fixture  # noqa: F401 (the fixture "zpair")


def _activate(z: ZydonPair, products: int = 10, **changes: Any) -> None:
    """Bling's account as the merchant has it, then the first activation: catalog, stock and prices."""
    z.bling.seed("categories", 3)
    z.bling.seed("products", products)
    z.bling.seed("stock", products)
    z.bling.edit("customers", z.bling.seed("customers", 5)[0], {"situacao": "I"})  # an inactive contact
    z.bling.seed("payment_methods", 4)
    z.bling.create("customers", {"nome": "Padaria Sem Documento", "tipo": "J", "situacao": "A"})
    z.apply(**changes)
    assert z.sync("catalog").ok
    assert z.sync("stock_prices").ok


def _active(z: ZydonPair) -> list[dict[str, Any]]:
    return [p for p in z.bling.records("products") if p["situacao"] == "A" and not p.get("variacao")]


def _stock_holders(z: ZydonPair) -> list[dict[str, Any]]:
    """Active simple products (their own balance), as Bling's stock screen lists them."""
    return [p for p in _active(z) if not p.get("variacoes")]


def _balance(z: ZydonPair, product_id: int) -> Decimal:
    row = next(r for r in z.bling.records("stock") if r["produto"]["id"] == product_id)
    return Decimal(str(sum(float(d["saldoFisico"]) for d in row.get("depositos") or [])))


def test_first_activation_syncs_active_products_customers_payment_methods_stock_and_prices(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 12)
    remote = {p["sku"]: p for p in z.zydon.records("products")}
    bling = _active(z)
    assert set(remote) == {p["codigo"] for p in bling}, "active products only, each grid once"
    inactive = [p["codigo"] for p in z.bling.records("products") if p["situacao"] != "A"]
    assert not set(inactive) & set(remote)
    for product in bling:
        mine = remote[product["codigo"]]
        assert mine["name"] == product["nome"]
        assert Decimal(str(mine["price"])) == Decimal(str(product["preco"]))
        if product.get("variacoes"):
            assert {v["sku"] for v in mine["variations"]} == {v["codigo"] for v in product["variacoes"]}
            assert all(v["values"] for v in mine["variations"]), "each variation carries its attributes"
    assert any(c["situacao"] == "I" for c in z.bling.records("customers"))
    with_document = [c for c in z.bling.records("customers") if c["situacao"] == "A" and c.get("numeroDocumento")]
    documents = {"".join(ch for ch in c["numeroDocumento"] if ch.isdigit()) for c in with_document}
    assert {c["fiscal_registration_number"] for c in z.zydon.records("customers")} == documents
    (refused,) = [q for q in quarantined(z.rt, TENANT) if q["entity"] == "customers"]
    assert "Padaria Sem Documento" in refused["reason"] and "CPF/CNPJ" in refused["fix"]
    assert {m["name"] for m in z.zydon.records("payment_methods")} >= \
        {m["descricao"] for m in z.bling.records("payment_methods")}, "all of Bling's payment methods"
    for product in _stock_holders(z):
        assert z.zydon.stock_of(product["codigo"]) == _balance(z, product["id"]), product["codigo"]
    prices = {p["sku"]: Decimal(str(p["price"])) for p in z.zydon.records("prices")}
    assert all(prices[p["codigo"]] == Decimal(str(p["preco"])) for p in bling)


def test_stock_and_prices_follow_every_change_in_bling(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 8)
    product = _stock_holders(z)[0]
    z.bling.age("products", 3600)
    with z.rt.store.begin() as s:  # as between two scheduled runs: nothing is due until something happens
        s.execute(update(Route).values(next_run_at=None))
    receiver = z.bling_webhooks()
    try:
        z.bling.touch("stock", str(product["id"]))  # one unit enters the depósito; Bling sends stock.updated
        z.bling.touch("products", str(product["id"]))  # the price goes up 0.10; Bling sends product.updated
    finally:
        receiver.stop()
    answers = [(w["event"], w["status"]) for w in z.bling.webhook_log]
    assert answers == [("stock.updated", 200), ("product.updated", 200)], answers
    started: list[str] = []
    assert schedule_once(z.rt, lambda _tenant, route, _lease: started.append(route)) >= 1
    assert "stock_prices" in started, "the events bring the route's next run forward"
    assert z.sync("stock_prices").ok
    assert z.zydon.stock_of(product["codigo"]) == _balance(z, product["id"])
    price = next(p["preco"] for p in z.bling.records("products") if p["id"] == product["id"])
    assert Decimal(str(price)) == Decimal(str(product["preco"])) + Decimal("0.1")
    mine = next(p for p in z.zydon.records("prices") if p["sku"] == product["codigo"])
    assert Decimal(str(mine["price"])) == Decimal(str(price))


def test_a_burst_of_stock_changes_is_one_write_per_product_and_warehouse_with_the_latest_value(
        zpair: ZydonPair) -> None:
    from hub.sync.drain import drain
    from hub.sync.pull import sync_route

    z = zpair
    _activate(z, 8)
    chosen = _stock_holders(z)[:5]
    before = len(z.overrides())
    for _ in range(10):  # 50 changes over 5 products, read before the worker sends anything
        for product in chosen:
            z.bling.touch("stock", str(product["id"]))
        assert sync_route(z.rt, TENANT, "stock_prices").ok
    drain(z.rt, max_wait=5)
    writes = z.overrides()[before:]
    assert len(writes) == len(chosen), [w["path"] for w in writes]
    for product in chosen:
        assert z.zydon.stock_of(product["codigo"]) == _balance(z, product["id"])
    states = [o.state for o in z.ops(entity="stock")]
    assert set(states) <= {"done", "superseded"} and states.count("superseded") >= 9 * len(chosen), states


def test_no_echo_a_stock_value_written_to_zydon_is_not_sent_again(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 8)
    writes, operations = len(z.overrides()), z.op_count()
    assert z.sync("stock_prices").ok
    assert z.sync("catalog").ok
    assert len(z.overrides()) == writes and z.op_count() == operations, "nothing changed, nothing written"


def _orders(z: ZydonPair, count: int, **kwargs: Any) -> list[str]:
    """Orders entering from the portal, of products the first activation brought."""
    skus = [p["codigo"] for p in _stock_holders(z)]
    return [z.zydon.place_order(items=[{"sku": skus[i % len(skus)], "quantity": 2}], **kwargs) for i in range(count)]


def _bling_order(z: ZydonPair, zydon_id: str) -> dict[str, Any]:
    return next(o for o in z.bling.records("sales") if str(o.get("numeroLoja")) == str(zydon_id))


def test_orders_go_to_bling_creating_a_zydon_only_customer_and_payment_method_once(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 6)
    (partner,) = z.zydon.seed("customers", 1)
    (method,) = z.zydon.seed("payment_methods", 1)
    document = next(c["fiscal_registration_number"] for c in z.zydon.records("customers") if str(c["id"]) == partner)
    name = next(m["name"] for m in z.zydon.records("payment_methods") if str(m["id"]) == method)
    assert name not in {m["descricao"] for m in z.bling.records("payment_methods")}
    contacts = len(z.bling.records("customers"))
    placed = _orders(z, 2, partner_id=partner, payment_method_id=method)
    report = z.sync("orders")
    assert report.ok, report
    assert not [o.last_error for o in z.ops(entity="sales") if o.state != "done"]
    made = [c for c in z.bling.records("customers")
            if "".join(ch for ch in c.get("numeroDocumento") or "" if ch.isdigit()) == document]
    assert len(made) == 1 and len(z.bling.records("customers")) == contacts + 1, "one contact, found the 2nd time"
    methods = [m for m in z.bling.records("payment_methods") if m["descricao"] == name]
    assert len(methods) == 1, "one forma de pagamento"
    for zid in placed:
        order = _bling_order(z, zid)
        assert str(order["contato"]["id"]) == str(made[0]["id"])
        assert [p["formaPagamento"]["id"] for p in order["parcelas"]] == [methods[0]["id"]]
    assert z.sync("orders").ok and len(z.bling.records("sales")) == 2, "never twice"


def test_a_bling_status_change_sets_the_same_named_zydon_status_with_no_echo(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 6)
    (zid,) = _orders(z, 1)
    assert z.sync("orders").ok
    assert z.sync("statuses").ok
    assert z.zydon.order_status(zid) == "Em aberto"
    z.bling.set_order_status(_bling_order(z, zid)["id"], "Atendido")
    assert z.sync("statuses").ok
    assert z.zydon.order_status(zid) == "Atendido"
    operations, requests = z.op_count(), len(z.bling.request_log)
    for route in ("orders", "statuses", "orders", "statuses"):
        assert z.sync(route).ok
    assert z.op_count() == operations, [(o.kind, o.entity, o.state) for o in z.ops()[operations:]]
    assert not [r for r in z.bling.request_log[requests:] if r["method"] != "GET" and "oauth" not in r["path"]]
    assert z.zydon.order_status(zid) == "Atendido" and len(z.zydon.records("sales")) == 1


def test_a_bling_status_missing_in_zydon_is_reported_once_with_the_fix_and_other_orders_go_on(
        zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 6)
    z.bling.add_situacao("Em separação")
    first, second = _orders(z, 2)
    assert z.sync("orders").ok
    z.bling.set_order_status(_bling_order(z, first)["id"], "Em separação")
    z.bling.set_order_status(_bling_order(z, second)["id"], "Atendido")
    z.sync("statuses")
    assert z.zydon.order_status(second) == "Atendido", "the other orders go on"
    assert z.zydon.order_status(first) == "Em aberto"
    failed = [o for o in z.ops(entity="sales") if o.state == "failed"]
    assert len(failed) == 1
    assert "Em separação" in (failed[0].last_error or "")
    fix = (failed[0].fix or "").replace("Create", "create")
    assert "create the status 'Em separação' in Zydon" in fix and "exactly Bling's name" in fix
    reported = [q for q in z.quarantined() if q.entity == "sales"]
    assert len(reported) == 1
    z.sync("statuses")
    z.sync("statuses")
    assert len([o for o in z.ops(entity="sales") if o.state == "failed"]) == 1, "reported once"
    assert len([q for q in z.quarantined() if q.entity == "sales"]) == 1


def test_routes_check_lists_the_bling_statuses_with_no_same_named_zydon_status_before_any_order_meets_one(
        zpair: ZydonPair, settings: Any, tmp_path: Any, monkeypatch: Any) -> None:
    import json

    from click.testing import CliRunner
    from hub.cli import cli
    from hub.settings import get_settings

    z = zpair
    z.apply()
    z.bling.add_situacao("Em separação")
    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["routes", "check", TENANT, "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    problems = [p for route in json.loads(result.stdout)["routes"]["statuses"] for p in route["problems"]]
    zydon_names = sorted(str(s["name"]) for s in z.zydon.statuses())
    assert any("'Em separação'" in p and "create them in zydon with exactly bling's names" in p.lower()
               for p in problems), problems
    assert not any(f"{name!r}" in p for p in problems for name in zydon_names), \
        "a Bling situação Zydon has (case and accents aside) is not reported"


def test_emit_invoices_attaches_blings_nfe_key_and_xml_to_the_zydon_order_once(zpair: ZydonPair) -> None:
    z = zpair
    _activate(z, 6, **{"routes.orders.emit_invoices": True})
    (zid,) = _orders(z, 1)
    assert z.sync("orders").ok
    z.sync("orders")
    (note,) = [n for n in z.bling.records("nfe") if n.get("chaveAcesso")]
    (attached,) = z.zydon.records("invoices")
    assert str(attached["order_id"]) == zid
    assert attached["invoice_key"] == note["chaveAcesso"] and attached["xml_resource_id"] is not None
    z.sync("orders")
    z.sync("statuses")
    assert len(z.zydon.records("invoices")) == 1, "once"


def test_pause_keeps_changes_queued_resume_sends_them_in_order_uninstall_keeps_the_store(
        zpair: ZydonPair, settings: Any, tmp_path: Any, monkeypatch: Any) -> None:
    import json

    from click.testing import CliRunner
    from hub.cli import cli
    from hub.runner.service import relay_once
    from hub.settings import get_settings
    from hub.sync.operations import execute
    from hub.sync.pull import sync_route

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()

    def hub(*args: str) -> Any:
        return runner.invoke(cli, list(args))

    z = zpair
    _activate(z, 6)
    first, second = _stock_holders(z)[:2]
    for product in (first, second, first):
        z.bling.touch("stock", str(product["id"]))
    assert sync_route(z.rt, TENANT, "stock_prices").ok  # read, not yet written
    queued = [o.id for o in z.ops(entity="stock", state="pending")]
    assert len(queued) == 2

    paused = hub("pause", TENANT, "zydon", "--json")
    assert paused.exit_code == 0, paused.output
    assert json.loads(paused.stdout)["queued_operations"] == 2
    writes, sent = len(z.overrides()), list[int]()
    assert relay_once(z.rt, sent.append) == 0 and not sent, "nothing goes out while paused"
    refused = hub("sync", TENANT, "stock_prices")
    assert refused.exit_code == 1 and "paused by the operator" in refused.stderr
    assert len(z.overrides()) == writes and [o.id for o in z.ops(entity="stock", state="pending")] == queued

    assert hub("resume", TENANT, "zydon").exit_code == 0
    assert relay_once(z.rt, sent.append) == 2 and sent == queued, "in the order they were queued"
    assert [execute(z.rt, i) for i in sent] == ["done", "done"]
    for product in (first, second):
        assert z.zydon.stock_of(product["codigo"]) == _balance(z, product["id"])

    records = {e: len(z.stored(e)) for e in ("products", "customers", "payment_methods", "stock", "prices")}
    gone = hub("uninstall", TENANT, "zydon", "--json")
    assert gone.exit_code == 0, gone.output
    assert sorted(json.loads(gone.stdout)["routes"]) == ["catalog", "orders", "statuses", "stock_prices"]
    status = json.loads(hub("status", TENANT, "--json").stdout)
    assert not any(r["enabled"] for r in status["routes"]), "its routes are stopped"
    z.bling.touch("stock", str(first["id"]))
    assert schedule_once(z.rt, lambda *_: None) == 0 and relay_once(z.rt, sent.append) == 0
    assert {e: len(z.stored(e)) for e in records} == records, "the store keeps its records"
    get_settings.cache_clear()


def test_the_demo_scenario_runs_with_no_failed_operation_but_the_customer_zydon_cannot_take(tmp_path: Any) -> None:
    from hub.demo import run_demo

    from tests.integration.zydon_pair import DEMO_FILE

    lines: list[str] = []
    result = run_demo(str(DEMO_FILE), echo=lines.append, home=tmp_path / "demo")
    failed = {(r["name"], s["stream"]): s["failed"] for r in result["status"]["routes"] for s in r["streams"]
              if s["failed"]}
    assert failed == {("catalog", "customers"): 1}, "\n".join(lines)
    (refused,) = result["quarantined"]
    assert "Padaria Sem Documento" in refused["reason"] and "CPF/CNPJ or the IE/RG" in refused["fix"]
    assert not [line for line in lines if "FAILED" in line], "\n".join(lines)
    assert result["after"]["zydon"]["orders"] == 6 and result["after"]["bling"]["orders"] == 6
    assert any("moves to Atendido" in line for line in lines)
