"""Pedidos de venda, their situações (with the account's transition manager) and the stock/accounts actions.

The actions write two ledgers (``stock_movements``, ``accounts``) so tests can check a client posts each order
exactly once. Posting twice is refused, as is reversing what was never posted.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starlette.responses import Response

from .catalog import check_schema
from .common import ApiError, Call, field, in_minutes, invalid, money, no_content, not_found, ok, page_of
from .state import ACOES, SaleMeta, State

NS = "VENDAS"
LIST_FIELDS = ("id", "numero", "numeroLoja", "data", "dataSaida", "dataPrevista", "totalProdutos", "total",
               "contato", "situacao", "loja")
SAVE_ERROR = ("Não foi possível salvar a venda",
              "A venda não pode ser salva, pois ocorreram problemas em sua validação.")


# --- building and validating ---------------------------------------------------------------------------


def _contact_snapshot(st: State, contact_id: int) -> dict[str, Any]:
    c = st.contacts[contact_id]
    return {"id": contact_id, "nome": c["nome"], "tipoPessoa": c["tipo"], "numeroDocumento": c["numeroDocumento"]}


def line_total(item: dict[str, Any]) -> float:
    """An item's total as Bling computes it: ``VendasItemDTO.desconto`` is a percentage ("Valor percentual") off
    ``quantidade`` x ``valor``, rounded half up to the cent."""
    gross = Decimal(str(item["quantidade"])) * Decimal(str(item["valor"]))
    net = gross * (1 - Decimal(str(item.get("desconto") or 0)) / 100)
    return float(net.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _totals(sale: dict[str, Any]) -> None:
    products = money(sum(line_total(i) for i in sale["itens"]))
    discount = sale["desconto"]
    off = float(discount.get("valor") or 0.0)
    if discount.get("unidade") == "PERCENTUAL":
        off = products * off / 100
    sale["totalProdutos"] = products
    sale["total"] = money(products - off + float(sale.get("outrasDespesas") or 0.0)
                          + float(sale["transporte"].get("frete") or 0.0))


def build_sale(st: State, body: dict[str, Any], sale_id: int, numero: int, situacao_id: int) -> dict[str, Any]:
    """The stored order for a validated ``body`` (Bling fills what the client left out)."""
    items = []
    for item in body.get("itens") or []:
        pid = int((item.get("produto") or {}).get("id") or 0)
        product = st.products.get(pid, {})
        items.append({
            "id": st.new_id(), "codigo": item.get("codigo") or product.get("codigo", ""),
            "unidade": item.get("unidade") or product.get("unidade", "UN"), "quantidade": item["quantidade"],
            "desconto": item.get("desconto", 0.0), "valor": item["valor"],
            "valorLista": item.get("valorLista", item["valor"]), "aliquotaIPI": item.get("aliquotaIPI", 0.0),
            "descricao": item["descricao"], "descricaoDetalhada": item.get("descricaoDetalhada", ""),
            "produto": {"id": pid},
            "comissao": {"base": 0.0, "aliquota": 0.0, "valor": 0.0, **(item.get("comissao") or {})},
            "naturezaOperacao": {"id": (item.get("naturezaOperacao") or {}).get("id", 0)},
        })
    parcelas = [{"id": st.new_id(), "dataVencimento": p["dataVencimento"], "valor": p["valor"],
                 "observacoes": p.get("observacoes", ""), "caut": p.get("caut", ""),
                 "formaPagamento": {"id": int(p["formaPagamento"]["id"])}} for p in body.get("parcelas") or []]
    transporte: dict[str, Any] = {
        "fretePorConta": 0, "frete": 0.0, "quantidadeVolumes": 0, "pesoBruto": 0.0, "prazoEntrega": 0,
        "contato": {"id": 0, "nome": ""},
        "etiqueta": {"nome": "", "endereco": "", "numero": "", "complemento": "", "municipio": "", "uf": "", "cep": "",
                     "bairro": "", "nomePais": ""},
        "volumes": []}
    for key, value in (body.get("transporte") or {}).items():
        transporte[key] = {**transporte[key], **value} if isinstance(transporte.get(key), dict) else value
    transporte["volumes"] = [{"id": st.new_id(), **v} for v in transporte["volumes"]]
    loja = body.get("loja") or {}
    sale: dict[str, Any] = {
        "id": sale_id, "numero": numero, "numeroLoja": body.get("numeroLoja", ""), "data": body["data"],
        "dataSaida": body.get("dataSaida", body["data"]), "dataPrevista": body.get("dataPrevista", body["data"]),
        "totalProdutos": 0.0, "total": 0.0,
        "contato": _contact_snapshot(st, int(body["contato"]["id"])),
        "situacao": {"id": situacao_id, "valor": st.situacao_valor(situacao_id)},
        "loja": {"id": int(loja.get("id") or 0), "unidadeNegocio": {"id": (loja.get("unidadeNegocio") or {})
                                                                    .get("id", 0)}},
        "numeroPedidoCompra": body.get("numeroPedidoCompra", ""),
        "outrasDespesas": body.get("outrasDespesas", 0.0), "observacoes": body.get("observacoes", ""),
        "observacoesInternas": body.get("observacoesInternas", ""),
        "desconto": {"valor": 0.0, "unidade": "REAL", **(body.get("desconto") or {})},
        "categoria": {"id": (body.get("categoria") or {}).get("id", 0)}, "notaFiscal": {"id": 0},
        "tributacao": {"totalICMS": 0.0, "totalIPI": 0.0, **(body.get("tributacao") or {})},
        "itens": items, "parcelas": parcelas, "transporte": transporte,
        "vendedor": {"id": (body.get("vendedor") or {}).get("id", 0)},
        "intermediador": {"cnpj": "", "nomeUsuario": "", **(body.get("intermediador") or {})},
        "taxas": {"taxaComissao": 0.0, "custoFrete": 0.0, "valorBase": 0.0, **(body.get("taxas") or {})},
    }
    _totals(sale)
    return sale


def _check(st: State, body: dict[str, Any], sale_id: int | None) -> tuple[list[dict[str, Any]],
                                                                            list[dict[str, Any]]]:
    """Bling's business rules on a schema-valid body: (problems, alertas)."""
    problems: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    numero = body.get("numero")
    if sale_id is None and not numero and st.editar_numero_pedido:
        problems.append(field(45, "O número do pedido deve ser informado", "numero", NS))
    if numero and any(s["numero"] == numero and sid != sale_id for sid, s in st.sales.items()):
        problems.append(field(46, f"Já existe um pedido de venda com o número {numero}", "numero", NS))
    contact = int(body["contato"]["id"])
    if contact not in st.contacts or st.contacts[contact]["situacao"] == "E":
        problems.append(field(36, "Contato inválido ou inexistente", "contato", NS))
    bad_items = []
    for index, item in enumerate(body.get("itens") or [], start=1):
        pid = (item.get("produto") or {}).get("id")
        if pid and pid not in st.products:
            bad_items.append({"index": index, "code": 40, "msg": "Produto não encontrado.", "element": "produto",
                              "namespace": NS})
        elif not pid:
            alerts.append(field(61, f"O item {index} ({item.get('descricao', '')}) não está vinculado a um produto: "
                                    "o estoque não será movimentado.", "itens", NS))
    if bad_items:
        problems.append(field(48, "Um ou mais itens da venda possuem erros de validação", "itens", NS,
                              collection=bad_items))
    bad_parcelas = [{"index": index, "code": 12, "msg": "Id da forma de pagamento inválido.",
                     "element": "formaPagamento", "namespace": NS}
                    for index, p in enumerate(body.get("parcelas") or [], start=1)
                    if int(p["formaPagamento"]["id"]) not in st.payment_methods]
    if bad_parcelas:
        problems.append(field(49, "Uma ou mais parcelas da venda possuem erros de validação", "parcelas", NS,
                              collection=bad_parcelas))
    seller = (body.get("vendedor") or {}).get("id")
    if seller and seller not in st.sellers:
        problems.append(field(50, "Vendedor não encontrado", "vendedor", NS))
    situacao = (body.get("situacao") or {}).get("id")
    if situacao and situacao not in st.situacoes:
        problems.append(field(51, "Situação inválida para o módulo de vendas", "situacao", NS))
    return problems, alerts


def _parcelas_alert(sale: dict[str, Any]) -> list[dict[str, Any]]:
    paid = money(sum(float(p["valor"]) for p in sale["parcelas"]))
    if sale["parcelas"] and abs(paid - sale["total"]) > 0.009:
        return [field(62, f"A soma das parcelas ({paid:.2f}) difere do total da venda ({sale['total']:.2f}).",
                      "parcelas", NS)]
    return []


def insert_sale(st: State, sale: dict[str, Any], meta: SaleMeta) -> int:
    st.sales[sale["id"]] = sale
    st.ometa[sale["id"]] = meta
    st.next_numero = max(st.next_numero, int(sale["numero"]) + 1)
    st.changed()
    return int(sale["id"])


def create_sale(st: State, call: Call) -> Response:
    body = check_schema(call, "a venda")
    problems, alerts = _check(st, body, None)
    if problems:
        raise invalid(*SAVE_ERROR, problems)
    situacao = (body.get("situacao") or {}).get("id") or st.situacao_by_name("Em aberto")["id"]
    numero = int(body.get("numero") or st.next_numero)
    sale = build_sale(st, body, st.new_id(), numero, int(situacao))
    now = st.clock.stamp()
    sid = insert_sale(st, sale, SaleMeta(now, now))
    return ok({"id": sid, "alertas": alerts + _parcelas_alert(sale)}, 201)


def _sale_id(st: State, call: Call) -> int:
    sid = call.int_param("idPedidoVenda")
    if sid not in st.sales:
        raise not_found("pedido de venda")
    return sid


def update_sale(st: State, call: Call) -> Response:
    sid = _sale_id(st, call)
    body = check_schema(call, "a venda")
    problems, alerts = _check(st, body, sid)
    if problems:
        raise invalid(*SAVE_ERROR, problems)
    old = st.sales[sid]
    situacao = (body.get("situacao") or {}).get("id") or old["situacao"]["id"]
    sale = build_sale(st, body, sid, int(body.get("numero") or old["numero"]), int(situacao))
    sale["notaFiscal"] = old["notaFiscal"]
    st.sales[sid] = sale
    st.ometa[sid].changed = st.clock.stamp()
    st.changed()
    return ok({"id": sid, "alertas": alerts + _parcelas_alert(sale)})


def delete_sale(st: State, call: Call) -> Response:
    sid = _sale_id(st, call)
    del st.sales[sid]
    del st.ometa[sid]
    st.changed()
    return no_content()


def get_sale(st: State, call: Call) -> Response:
    return ok(st.sales[_sale_id(st, call)])


def _sale_ids(st: State, call: Call) -> list[int]:
    q = call.query
    key = ("vendas", q.key("pagina", "limite"))
    cached = st.list_cache.get(key)
    if cached is not None:
        return cached
    store_numbers = set(q.all("numerosLojas[]"))
    store = q.integer("idLoja")
    numero = q.integer("numero")
    contact = q.integer("idContato")
    seller = q.integer("idVendedor")
    unit = q.integer("idUnidadeNegocio")
    q.integer("idControleCaixa")
    situacoes = set(q.ints("idsSituacoes[]"))
    changed_from, changed_to = q.stamp_range("dataAlteracao")
    date_from, date_to = q.stamp_range("data")
    due_from, due_to = q.stamp_range("dataPrevista")
    out = []
    for sid, s in st.sales.items():
        if store_numbers and s["numeroLoja"] not in store_numbers:
            continue
        if store is not None and s["loja"]["id"] != store:
            continue
        if numero is not None and s["numero"] != numero:
            continue
        if contact is not None and s["contato"]["id"] != contact:
            continue
        if seller is not None and s["vendedor"]["id"] != seller:
            continue
        if unit is not None and s["loja"]["unidadeNegocio"]["id"] != unit:
            continue
        if situacoes and s["situacao"]["id"] not in situacoes:
            continue
        if (changed_from or changed_to) and not in_minutes(st.ometa[sid].changed, changed_from, changed_to):
            continue
        if (date_from and s["data"] < date_from[:10]) or (date_to and s["data"] > date_to[:10]):
            continue
        if (due_from and s["dataPrevista"] < due_from[:10]) or (due_to and s["dataPrevista"] > due_to[:10]):
            continue
        out.append(sid)
    st.list_cache[key] = out
    return out


def list_sales(st: State, call: Call) -> Response:
    pagina, limite = call.query.page()
    ids = _sale_ids(st, call)
    return ok([{k: st.sales[sid][k] for k in LIST_FIELDS} for sid in page_of(ids, pagina, limite)])


# --- actions -------------------------------------------------------------------------------------------


def _refused(message: str, msg: str, element: str) -> ApiError:
    return invalid(message, f"{msg}.", [field(70, msg, element, NS)])


def post_stock(st: State, sid: int, deposit: int | None = None, *, strict: bool = True) -> None:
    meta = st.ometa[sid]
    if meta.stock_deposit is not None:
        if strict:
            raise _refused("Não foi possível lançar o estoque", "O estoque já foi lançado", "estoque")
        return
    deposit = deposit or st.default_deposit
    for item in st.sales[sid]["itens"]:
        pid = item["produto"]["id"]
        if pid in st.products and not st.pmeta[pid].children:
            st.move_stock(pid, deposit, "S", float(item["quantidade"]), order=sid, origin="venda")
    meta.stock_deposit = deposit
    meta.changed = st.clock.stamp()


def reverse_stock(st: State, sid: int, *, strict: bool = True) -> None:
    meta = st.ometa[sid]
    if meta.stock_deposit is None:
        if strict:
            raise _refused("Não foi possível estornar o estoque", "O estoque não foi lançado", "estoque")
        return
    for item in st.sales[sid]["itens"]:
        pid = item["produto"]["id"]
        if pid in st.products and not st.pmeta[pid].children:
            st.move_stock(pid, meta.stock_deposit, "E", float(item["quantidade"]), order=sid, origin="estorno venda")
    meta.stock_deposit = None
    meta.changed = st.clock.stamp()


def post_accounts(st: State, sid: int, *, strict: bool = True) -> None:
    meta, sale = st.ometa[sid], st.sales[sid]
    if meta.accounts_posted:
        if strict:
            raise _refused("Não foi possível lançar as contas", "As contas já foram lançadas", "contas")
        return
    for index, p in enumerate(sale["parcelas"], start=1):
        st.accounts.append({"id": st.new_id(), "pedido": {"id": sid}, "contato": {"id": sale["contato"]["id"]},
                            "parcela": index, "valor": p["valor"], "vencimento": p["dataVencimento"],
                            "formaPagamento": p["formaPagamento"], "operacao": "lancamento",
                            "data": st.clock.stamp()})
    meta.accounts_posted = True
    meta.changed = st.clock.stamp()
    st.changed()


def reverse_accounts(st: State, sid: int, *, strict: bool = True) -> None:
    meta, sale = st.ometa[sid], st.sales[sid]
    if not meta.accounts_posted:
        if strict:
            raise _refused("Não foi possível estornar as contas", "As contas não foram lançadas", "contas")
        return
    for index, p in enumerate(sale["parcelas"], start=1):
        st.accounts.append({"id": st.new_id(), "pedido": {"id": sid}, "contato": {"id": sale["contato"]["id"]},
                            "parcela": index, "valor": p["valor"], "vencimento": p["dataVencimento"],
                            "formaPagamento": p["formaPagamento"], "operacao": "estorno",
                            "data": st.clock.stamp()})
    meta.accounts_posted = False
    meta.changed = st.clock.stamp()
    st.changed()


def action_post_stock(st: State, call: Call) -> Response:
    sid = _sale_id(st, call)
    deposit = None
    if "idDeposito" in call.params:
        deposit = call.int_param("idDeposito")
        if deposit not in st.deposits:
            raise not_found("depósito")
    post_stock(st, sid, deposit)
    return no_content()


def action_reverse_stock(st: State, call: Call) -> Response:
    reverse_stock(st, _sale_id(st, call))
    return no_content()


def action_post_accounts(st: State, call: Call) -> Response:
    post_accounts(st, _sale_id(st, call))
    return no_content()


def action_reverse_accounts(st: State, call: Call) -> Response:
    reverse_accounts(st, _sale_id(st, call))
    return no_content()


ACTION_RUNNERS = {"lancarEstoque": lambda st, sid: post_stock(st, sid, strict=False),
                  "estornarEstoque": lambda st, sid: reverse_stock(st, sid, strict=False),
                  "lancarContas": lambda st, sid: post_accounts(st, sid, strict=False),
                  "estornarContas": lambda st, sid: reverse_accounts(st, sid, strict=False)}
ACTION_NAMES = {aid: name for aid, name, _ in ACOES}


def change_situacao(st: State, sid: int, situacao_id: int) -> None:
    """Move an order to ``situacao_id`` and run what the account's transition manager has configured for that
    move (the same postings the action endpoints make; already-done ones are skipped, not refused)."""
    sale = st.sales[sid]
    old = sale["situacao"]["id"]
    sale["situacao"] = {"id": situacao_id, "valor": st.situacao_valor(situacao_id)}
    st.ometa[sid].changed = st.clock.stamp()
    for transition in st.transitions.values():
        if (transition["ativo"] and transition["situacaoOrigem"]["id"] == old
                and transition["situacaoDestino"]["id"] == situacao_id):
            for action in transition["acoes"]:
                runner = ACTION_RUNNERS.get(ACTION_NAMES.get(action, ""))
                if runner is not None:
                    runner(st, sid)
    st.changed()


def patch_situacao(st: State, call: Call) -> Response:
    sid = _sale_id(st, call)
    situacao = call.int_param("idSituacao")
    if situacao not in st.situacoes:
        raise invalid("Não foi possível alterar a situação", "A situação informada não pertence ao módulo de vendas.",
                      [field(51, "Situação inválida para o módulo de vendas", "idSituacao", NS)])
    change_situacao(st, sid, situacao)
    return no_content()


# --- situações -----------------------------------------------------------------------------------------


def situacao_view(s: dict[str, Any]) -> dict[str, Any]:
    return {"id": s["id"], "nome": s["nome"], "idHerdado": s["idHerdado"], "cor": s["cor"]}


def _module(st: State, call: Call) -> int:
    module = call.int_param("idModuloSistema")
    if module not in (st.module_id, st.module_id + 1):
        raise not_found("módulo")
    return module


def list_modules(st: State, call: Call) -> Response:
    return ok([{"id": st.module_id, "nome": "Vendas", "descricao": "Pedidos de Venda", "criarSituacoes": True},
               {"id": st.module_id + 1, "nome": "Compras", "descricao": "Pedidos de Compra",
                "criarSituacoes": True}])


def module_situacoes(st: State, call: Call) -> Response:
    if _module(st, call) != st.module_id:
        return ok([])
    return ok([situacao_view(s) for s in st.situacoes.values()])


def module_actions(st: State, call: Call) -> Response:
    if _module(st, call) != st.module_id:
        return ok([])
    return ok([{"id": aid, "nome": name, "descricao": text} for aid, name, text in ACOES])


def module_transitions(st: State, call: Call) -> Response:
    if _module(st, call) != st.module_id:
        return ok([])
    return ok(list(st.transitions.values()))


def get_situacao(st: State, call: Call) -> Response:
    situacao = call.int_param("idSituacao")
    if situacao not in st.situacoes:
        raise not_found("situação")
    return ok(situacao_view(st.situacoes[situacao]))


def get_transition(st: State, call: Call) -> Response:
    transition = call.int_param("idTransicao")
    if transition not in st.transitions:
        raise not_found("transição")
    return ok(st.transitions[transition])


ROUTES = [
    ("GET", "/pedidos/vendas", list_sales),
    ("POST", "/pedidos/vendas", create_sale),
    ("GET", "/pedidos/vendas/{idPedidoVenda}", get_sale),
    ("PUT", "/pedidos/vendas/{idPedidoVenda}", update_sale),
    ("DELETE", "/pedidos/vendas/{idPedidoVenda}", delete_sale),
    ("PATCH", "/pedidos/vendas/{idPedidoVenda}/situacoes/{idSituacao}", patch_situacao),
    ("POST", "/pedidos/vendas/{idPedidoVenda}/lancar-estoque", action_post_stock),
    ("POST", "/pedidos/vendas/{idPedidoVenda}/lancar-estoque/{idDeposito}", action_post_stock),
    ("POST", "/pedidos/vendas/{idPedidoVenda}/estornar-estoque", action_reverse_stock),
    ("POST", "/pedidos/vendas/{idPedidoVenda}/lancar-contas", action_post_accounts),
    ("POST", "/pedidos/vendas/{idPedidoVenda}/estornar-contas", action_reverse_accounts),
    ("GET", "/situacoes/modulos", list_modules),
    ("GET", "/situacoes/modulos/{idModuloSistema}", module_situacoes),
    ("GET", "/situacoes/modulos/{idModuloSistema}/acoes", module_actions),
    ("GET", "/situacoes/modulos/{idModuloSistema}/transicoes", module_transitions),
    ("GET", "/situacoes/{idSituacao}", get_situacao),
    ("GET", "/situacoes/transicoes/{idTransicao}", get_transition),
]
