"""Each rule of CPlug's articles "Integração Bling" and "Dúvidas comuns - Integração Bling", checked end to end:
the shipped route file, both sandboxes over real HTTP, the real store and the outbox."""

from __future__ import annotations

from decimal import Decimal

from hub.config import apply as applying
from hub.config import routes as config
from hub.status import tenant_status
from hub.store.schema import Binding
from sqlalchemy import select

from tests.integration.conftest import ROUTE_FILE, TENANT, Pair


def _simple_products(pair: Pair) -> list[dict]:
    return [p for p in pair.bling.records("products") if p["situacao"] == "A" and not p.get("variacoes")]


def _ring(pair: Pair, count: int, *, customer: bool | None = None, store: int = 1, seller: str | None = None
          ) -> list[str]:
    """POS sales of Bling's products (after the catalog sync), optionally with an identified customer."""
    cplug_products = {p["sku"]: p for p in pair.cplug.records("products")}
    skus = [p["codigo"] for p in _simple_products(pair) if p["codigo"] in cplug_products]
    customers = [c for c in pair.cplug.records("customers")]
    ids = []
    for i in range(count):
        buyer = customers[i % len(customers)]["id"] if customer and customers else None
        ids.append(pair.cplug.sale(items=[{"sku": skus[i % len(skus)], "amount": 1}], customer_id=buyer,
                                   store_id=store, seller_id=seller))
    return ids


def _stock(pair: Pair, product_code: str, deposit: str) -> Decimal:
    product = next(p for p in pair.bling.records("products") if p["codigo"] == product_code)
    dep = next(d for d in pair.bling.records("deposits") if d["descricao"] == deposit)
    moves = [m for m in pair.bling.records("stock_movements")
             if m["produto"]["id"] == product["id"] and m["deposito"]["id"] == dep["id"]]
    return sum((Decimal(str(m["quantidade"])) * (-1 if m["operacao"] == "S" else 1) for m in moves), Decimal(0))


# --- CPlug's "Integração Bling", "Sincronização de produtos": Bling -> CPlug ------------------------------------------


def test_seed002_products_go_bling_to_cplug_with_name_grid_fiscal_category_price_and_barcode(pair: Pair):
    pair.catalog(20)
    pair.apply()
    assert pair.sync("catalog").ok
    remote = {p["sku"]: p for p in pair.cplug.records("products")}
    for product in [p for p in pair.bling.records("products") if p["situacao"] == "A"]:
        mine = remote[product["codigo"]]
        assert mine["name"] == product["nome"]
        assert Decimal(str(mine["unitary_value"]["amount"])) == Decimal(str(product["preco"]))
        assert mine["fiscal"]["ncm"] == product["tributacao"]["ncm"].replace(".", "")
        assert mine["fiscal"]["origin"] == product["tributacao"]["origem"]
        assert mine["barcodes"] == ([product["gtin"]] if product.get("gtin") else [])
        if product.get("variacoes"):
            assert mine["option_type"]["type"] == "grid"
            assert {v["sku"] for v in mine["variations"]} == {v["codigo"] for v in product["variacoes"]}
    categories = {c["id"]: c for c in pair.cplug.records("categories")}
    assert all(categories[p["category_id"]] for p in remote.values())


def test_seed002_other_tax_fields_are_left_alone_in_cplug(pair: Pair):
    pair.catalog(3)
    pair.apply()
    pair.sync("catalog")
    product = pair.cplug.records("products")[0]
    edited = {**product, "fiscal": {**product["fiscal"], "cfop": "5102", "icms_cst": "00"}}
    pair.cplug.create("products", edited)
    bling_id = next(p["id"] for p in pair.bling.records("products") if p["codigo"] == product["sku"])
    pair.bling.touch("products", str(bling_id))
    pair.sync("catalog")
    after = next(p for p in pair.cplug.records("products") if p["sku"] == product["sku"])
    assert after["fiscal"]["cfop"] == "5102" and after["fiscal"]["icms_cst"] == "00"


def test_seed002_sku_as_barcode_is_set_before_the_first_sync_and_changing_it_forces_a_full_resync(pair: Pair):
    pair.catalog(6)
    pair.apply(**{"connections.cplug.options.sku_as_barcode": True})
    pair.sync("catalog")
    assert all(p["barcodes"] == [p["sku"]] for p in pair.cplug.records("products"))
    counts = pair.apply(**{"connections.cplug.options.sku_as_barcode": False})
    assert counts["resynced"] == 1
    pair.sync("catalog")
    by_sku = {p["codigo"]: p for p in pair.bling.records("products")}
    assert all(p["barcodes"] == ([by_sku[p["sku"]]["gtin"]] if by_sku[p["sku"]].get("gtin") else [])
               for p in pair.cplug.records("products"))


def test_seed002_cplugs_categories_are_replaced_by_blings(pair: Pair):
    pair.cplug.seed("categories", 3)
    before = {c["name"] for c in pair.cplug.records("categories")}
    pair.catalog(8)
    pair.apply()
    pair.sync("catalog")
    names = {c["name"] for c in pair.cplug.records("categories")}
    bling_names = {c["descricao"] for c in pair.bling.records("categories")}
    assert not names & (before - bling_names), "CPlug's own categories are gone"
    assert names - bling_names <= {"Sem categoria"}, "what is left came from Bling (or files uncategorized ones)"


# --- CPlug's "Integração Bling", "Sincronização de vendas" and "de cadastro de clientes": CPlug -> Bling --------------


def test_seed002_sales_go_cplug_to_bling_with_customer_linked_by_cpf_never_duplicated(pair: Pair):
    pair.catalog(6)
    pair.apply()
    pair.sync("catalog")
    pair.cplug.seed("customers", 2)
    customer = pair.cplug.records("customers")[0]
    document = next(d["identify"] for d in customer["documents"] if d["type"] in ("cpf", "cnpj"))
    pair.bling.create("customers", {"nome": "Já cadastrado no Bling", "tipo": "F", "situacao": "A",
                                    "numeroDocumento": document})
    sales = [pair.cplug.sale(items=[{"sku": _simple_products(pair)[0]["codigo"]}], customer_id=customer["id"])
             for _ in range(2)]
    assert pair.sync("sales").ok
    contacts = [c for c in pair.bling.records("customers") if c.get("numeroDocumento") == document]
    assert len(contacts) == 1, "linked to the existing contact, never duplicated"
    numbers = {str(s["number"]) for s in pair.cplug.records("sales") if str(s["id"]) in sales}
    assert {str(pair.bling_orders()[n]["contato"]["id"]) for n in numbers} == {str(contacts[0]["id"])}


def test_a_new_customer_and_its_sales_make_one_contact_with_one_lookup(pair: Pair):
    """The customers stream and the sales are written side by side, the sales first (they are urgent): whichever
    makes the contact, the other takes it without asking Bling again."""
    pair.catalog(4)
    pair.apply()
    pair.sync("catalog")
    pair.cplug.seed("customers", 1)
    (customer,) = pair.cplug.records("customers")
    document = next(d["identify"] for d in customer["documents"] if d["type"] in ("cpf", "cnpj"))
    for _ in range(2):
        pair.cplug.sale(items=[{"sku": _simple_products(pair)[0]["codigo"]}], customer_id=customer["id"])
    before = len(pair.bling.request_log)
    assert pair.sync("sales").ok
    calls = [(r["method"], r["path"]) for r in pair.bling.request_log[before:] if r["path"].startswith("/contatos")]
    assert calls == [("GET", "/contatos"), ("POST", "/contatos")], calls
    (contact,) = [c for c in pair.bling.records("customers") if c.get("numeroDocumento") == document]
    assert {o["contato"]["id"] for o in pair.bling_orders().values()} == {contact["id"]}
    with pair.rt.store.sessions() as s:
        bound = s.scalars(select(Binding.external_id).where(Binding.entity == "customers",
                                                            Binding.external_id == str(contact["id"]))).all()
    assert len(bound) == 1, "the customer's own write is bound to the contact its sale made"


def test_seed002_sales_without_a_customer_go_to_the_final_consumer(pair: Pair):
    pair.catalog(4)
    pair.apply()
    pair.sync("catalog")
    (sale_id,) = _ring(pair, 1, customer=False)
    pair.sync("sales")
    number = next(str(s["number"]) for s in pair.cplug.records("sales") if str(s["id"]) == sale_id)
    st = pair.bling.state
    with st.lock:
        final = st.final_consumer
    assert pair.bling_orders()[number]["contato"]["id"] == final


def test_seed002_customers_go_cplug_to_bling_only(pair: Pair):
    pair.catalog(2)
    pair.bling.seed("customers", 5)
    pair.cplug.seed("customers", 3)
    pair.apply()
    pair.sync("catalog")
    pair.sync("sales")
    bling_docs = {c.get("numeroDocumento") for c in pair.bling.records("customers")}
    for c in pair.cplug.records("customers"):
        docs = [d["identify"] for d in c["documents"] if d["type"] in ("cpf", "cnpj")]
        assert not docs or docs[0] in bling_docs
    assert len(pair.cplug.records("customers")) == 3, "Bling's customers are never brought into CPlug"
    parsed = config.load(ROUTE_FILE)
    parsed.tenants[TENANT].routes["catalog"].streams.append("customers")
    errors, _ = applying.check(parsed, pair.rt.registry, "routes.yaml")
    assert any("cplug cannot receive 'customers'" in e for e in errors)


def test_seed002_the_seller_is_sent_only_when_synced_between_bling_and_cplug(pair: Pair):
    pair.catalog(4)
    pair.apply()
    pair.sync("catalog")
    synced = pair.cplug.records("sellers")[0]
    local = pair.cplug.create("sellers", {"name": "Vendedora só do PDV", "document": None, "status": "available"})
    sku = _simple_products(pair)[0]["codigo"]
    a = pair.cplug.sale(items=[{"sku": sku}], seller_id=synced["id"])
    b = pair.cplug.sale(items=[{"sku": sku}], seller_id=local)
    pair.sync("sales")
    numbers = {str(s["id"]): str(s["number"]) for s in pair.cplug.records("sales")}
    orders = pair.bling_orders()
    assert (orders[numbers[a]].get("vendedor") or {}).get("id")
    assert not (orders[numbers[b]].get("vendedor") or {}).get("id")


def test_seed002_payment_methods_need_a_de_para_and_an_unmapped_one_stops_the_sync(pair: Pair):
    pair.catalog(3)
    pair.apply(**{"routes.sales.mappings.payment_methods": {"101": "Dinheiro"}})
    pair.sync("catalog")
    _ring(pair, 2)
    report = pair.sync("sales")
    assert not report.ok
    assert "DE-PARA" in (report.streams[0].error or "") and "PIX" in (report.streams[0].error or "")
    assert pair.bling_orders() == {}, "nothing moved, nothing was guessed"


def test_seed002_cancellations_in_cplug_reverse_stock_and_accounts_in_bling(pair: Pair):
    pair.catalog(4)
    pair.apply()
    pair.sync("catalog")
    (sale_id,) = _ring(pair, 1)
    pair.sync("sales")
    sku = _simple_products(pair)[0]["codigo"]
    assert _stock(pair, sku, "Loja Centro") == -1
    pair.cplug.cancel_sale(sale_id)
    pair.sync("sales")
    number = next(str(s["number"]) for s in pair.cplug.records("sales") if str(s["id"]) == sale_id)
    order = pair.bling_orders()[number]
    cancelado = next(s for s in pair.bling.records("situacoes") if s["nome"] == "Cancelado")
    assert order["situacao"]["id"] == cancelado["id"]
    assert _stock(pair, sku, "Loja Centro") == 0
    accounts = [a for a in pair.bling.records("accounts") if str(a["pedido"]["id"]) == str(order["id"])]
    assert len(accounts) == 2, "posted once, reversed once"


# --- CPlug's "Integração Bling", "Limitações" -------------------------------------------------------------------------


def test_seed002_stock_lives_only_in_bling_and_sales_debit_it(pair: Pair):
    pair.catalog(4)
    pair.apply()
    pair.sync("catalog")
    _ring(pair, 3)
    pair.sync("sales")
    assert not any("stock" in r["path"] for r in pair.cplug.request_log), "no stock is synced into CPlug"
    debits = [m for m in pair.bling.records("stock_movements") if m["operacao"] == "S"]
    assert len(debits) == 3


def test_seed002_several_stores_debit_the_deposit_of_the_store_that_sold(pair: Pair):
    pair.catalog(4)
    pair.apply()
    pair.sync("catalog")
    sku = _simple_products(pair)[0]["codigo"]
    pair.cplug.sale(items=[{"sku": sku}], store_id=1)
    pair.cplug.sale(items=[{"sku": sku}], store_id=2)
    pair.cplug.sale(items=[{"sku": sku}], store_id=2)
    pair.sync("sales")
    assert _stock(pair, sku, "Loja Centro") == -1
    assert _stock(pair, sku, "Loja Shopping") == -2


# --- CPlug's "Integração Bling", section 5: the transition manager ----------------------------------------------------


def test_seed002_section5_fulfilled_posts_stock_and_accounts_exactly_once(pair: Pair):
    pair.catalog(4)
    pair.apply()
    pair.sync("catalog")
    _ring(pair, 2)
    pair.sync("sales")
    pair.sync("sales")
    for order in pair.bling_orders().values():
        moves = [m for m in pair.bling.records("stock_movements") if str(m["pedido"]["id"]) == str(order["id"])]
        accounts = [a for a in pair.bling.records("accounts") if str(a["pedido"]["id"]) == str(order["id"])]
        assert [m["operacao"] for m in moves] == ["S"] and len(accounts) == 1


def test_seed002_section5_the_transition_table_is_configurable_per_tenant(pair: Pair):
    pair.catalog(4)
    pair.apply(**{"routes.sales.transitions": [{"from": "*", "to": "Atendido", "actions": ["lancar-contas"]}]})
    pair.sync("catalog")
    _ring(pair, 1)
    pair.sync("sales")
    assert pair.bling.records("stock_movements") == []
    assert len(pair.bling.records("accounts")) == 1


# --- CPlug's "Integração Bling", "Processo de devolução/troca no PDV" -------------------------------------------------


def test_seed002_exchange_sends_the_new_sale_and_cancels_the_original_in_bling_once(pair: Pair):
    pair.catalog(6)
    pair.apply()
    pair.sync("catalog")
    pair.cplug.seed("customers", 2)
    _ring(pair, 2, customer=True)
    pair.sync("sales")
    message = pair.cplug.demo_exchange()
    pair.sync("sales")
    pair.sync("sales")
    sales = pair.cplug.records("sales")
    new = next(s for s in sales if s.get("exchange_of_sale_id"))
    original = next(s for s in sales if s["id"] == new["exchange_of_sale_id"])
    assert original["status"] == "closed", "in CPlug the original stays as it was"
    orders = pair.bling_orders()
    cancelado = next(s["id"] for s in pair.bling.records("situacoes") if s["nome"] == "Cancelado")
    atendido = next(s["id"] for s in pair.bling.records("situacoes") if s["nome"] == "Atendido")
    assert orders[str(original["number"])]["situacao"]["id"] == cancelado, message
    assert orders[str(new["number"])]["situacao"]["id"] == atendido, "the new sale is never cancelled"
    moves = [m for m in pair.bling.records("stock_movements")
             if str(m["pedido"]["id"]) == str(orders[str(original["number"])]["id"])]
    assert sorted(m["operacao"] for m in moves) == ["E", "S"], "reversed exactly once"
    assert f"Troca/devolução da venda {original['number']}" in orders[str(new["number"])]["observacoes"]


# --- CPlug's "Integração Bling", "Sincronizar dados", "Logs de API" and "Fluxos resolutivos" --------------------------


def test_seed002_first_sync_is_full_later_ones_move_only_changes_and_status_shows_each_models_last_sync(pair: Pair):
    pair.catalog(10)
    pair.cplug.seed("customers", 2)
    pair.apply()
    first = pair.sync("catalog")
    assert first.ok and sum(s.counts.new for s in first.streams) > 10
    second = pair.sync("catalog")
    assert sum(s.counts.new + s.counts.changed for s in second.streams) == 0
    pair.sync("sales")
    status = tenant_status(pair.rt, TENANT)
    last = {s["stream"]: s["last_success_at"] for r in status["routes"] for s in r["streams"]}
    for model in ("customers", "categories", "products", "sellers"):  # Cliente, Categoria, Produto, Vendedor
        assert last[model] is not None, model


def test_seed002_api_logs_suggest_the_check_when_editar_numero_do_pedido_blocks_sales(pair: Pair):
    pair.catalog(3)
    pair.apply()
    pair.sync("catalog")
    pair.bling.editar_numero_pedido = True
    _ring(pair, 1)
    pair.sync("sales")
    fixes = [c.fix or "" for c in pair.api_log() if c.error]
    assert any("Editar número do pedido de venda" in f for f in fixes)
    pair.bling.editar_numero_pedido = False
    from hub.sync.operations import retry_failed

    assert retry_failed(pair.rt, TENANT) >= 1
    pair.sync("sales")
    assert len(pair.bling_orders()) == 1


# --- CPlug's "Dúvidas comuns - Integração Bling" ----------------------------------------------------------------------


def test_seed003_bling_sales_do_not_go_up_to_cplug(pair: Pair):
    parsed = config.load(ROUTE_FILE)
    routes = parsed.tenants[TENANT].routes
    routes["catalog"].streams.append("sales")
    errors, _ = applying.check(parsed, pair.rt.registry, "routes.yaml")
    assert any("cplug cannot receive 'sales'" in e or "bling cannot be read for 'sales'" in e for e in errors)


def test_seed003_payment_methods_are_not_synced_automatically(pair: Pair):
    pair.catalog(2)
    pair.apply()
    pair.sync("catalog")
    pair.sync("sales")
    with pair.rt.store.sessions() as s:
        pushed = list(s.scalars(select(Binding).where(Binding.entity == "payment_methods",
                                                      Binding.origin == "push")))
    assert pushed == [] and len(pair.cplug.records("payment_methods")) >= 0
