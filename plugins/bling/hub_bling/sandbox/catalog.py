"""Produtos (with variations), categorias, depósitos and estoques.

``GET /produtos`` applies the spec's silent defaults (``criterio=1`` últimos incluídos, ``filtroSaldoEstoque=1``
positive stock): the trap a connector must see through. Filter results are cached until the next change, so
paging through 20,000 products costs one scan, not one per page.
"""

from __future__ import annotations

import bisect
import copy
from datetime import timedelta
from typing import Any

from starlette.responses import Response

from .. import spec
from .common import STAMP, ApiError, Call, field, in_minutes, invalid, no_content, not_found, ok, page_of
from .state import ProductMeta, State

NS = "PRODUTOS"
RECENT_DAYS = 30
"""``criterio=1`` ("Últimos incluídos") shows products included in the last 30 days."""

LIST_FIELDS = ("id", "idProdutoPai", "nome", "codigo", "preco", "precoCusto", "estoque", "tipo", "situacao",
               "formato", "descricaoCurta", "imagemURL")


def blank_product() -> dict[str, Any]:
    """Every field of ``ProdutosDadosDTO`` with Bling's empty values, so a GET always shows the full DTO."""
    return {
        "id": 0, "nome": "", "codigo": "", "preco": 0.0, "tipo": "P", "situacao": "A", "formato": "S",
        "descricaoCurta": "", "imagemURL": "", "unidade": "UN", "pesoLiquido": 0.0, "pesoBruto": 0.0, "volumes": 1,
        "itensPorCaixa": 0.0, "gtin": "", "gtinEmbalagem": "", "tipoProducao": "P", "condicao": 0,
        "freteGratis": False, "marca": "", "descricaoComplementar": "", "linkExterno": "", "observacoes": "",
        "descricaoEmbalagemDiscreta": "", "categoria": {"id": 0},
        "estoque": {"minimo": 0.0, "maximo": 0.0, "crossdocking": 0, "localizacao": ""},
        "fornecedor": {"id": 0, "contato": {"id": 0, "nome": ""}, "codigo": "", "precoCusto": 0.0,
                       "precoCompra": 0.0},
        "actionEstoque": "",
        "dimensoes": {"largura": 0.0, "altura": 0.0, "profundidade": 0.0, "unidadeMedida": 1},
        "tributacao": {
            "origem": 0, "nFCI": "", "ncm": "", "cest": "", "codigoListaServicos": "", "spedTipoItem": "",
            "codigoItem": "", "percentualTributos": 0.0, "valorBaseStRetencao": 0.0, "valorStRetencao": 0.0,
            "valorICMSSubstituto": 0.0, "codigoExcecaoTipi": "", "classeEnquadramentoIpi": "", "valorIpiFixo": 0.0,
            "codigoSeloIpi": "", "valorPisFixo": 0.0, "valorCofinsFixo": 0.0, "codigoANP": "", "descricaoANP": "",
            "percentualGLP": 0.0, "percentualGasNacional": 0.0, "percentualGasImportado": 0.0, "valorPartida": 0.0,
            "tipoArmamento": 0, "descricaoCompletaArmamento": "", "dadosAdicionais": "", "grupoProduto": {"id": 0},
        },
        "midia": {"video": {"url": ""}, "imagens": {"imagensURL": [], "externas": [], "internas": []}},
        "linhaProduto": {"id": 0},
        "estrutura": {"tipoEstoque": "F", "lancamentoEstoque": "A", "componentes": []},
        "camposCustomizados": [], "artigoPerigoso": False,
    }


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``changes``: nested objects merge, everything else (lists too) is replaced."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _sync_images(record: dict[str, Any]) -> None:
    """``imagensURL`` is write-only in the spec and shows back as ``externas``; keep both (the brief's readers
    look for either) and point ``imagemURL`` at the first."""
    images = record["midia"].setdefault("imagens", {})
    links = images.get("imagensURL") or images.get("externas") or []
    images["imagensURL"] = [{"link": i["link"]} for i in links if isinstance(i, dict) and "link" in i]
    images["externas"] = [dict(i) for i in images["imagensURL"]]
    images.setdefault("internas", [])
    record["imagemURL"] = images["imagensURL"][0]["link"] if images["imagensURL"] else ""


def insert_product(st: State, record: dict[str, Any], *, created: str, changed: str, parent: int | None = None,
                   variation: dict[str, Any] | None = None, cost: float = 0.0) -> int:
    """Store a product (lock held). ``record`` is completed with the DTO's empty values."""
    full = deep_merge(blank_product(), record)
    full.pop("variacoes", None)
    full.pop("variacao", None)
    full["id"] = full["id"] or st.new_id()
    _sync_images(full)
    pid = int(full["id"])
    st.products[pid] = full
    st.pmeta[pid] = ProductMeta(created, changed, parent, variation, [], cost)
    if parent is not None:
        st.pmeta[parent].children.append(pid)
    if full["codigo"]:
        st.by_code.setdefault(full["codigo"], []).append(pid)
    st.changed()
    return pid


def _reindex(st: State, pid: int, old_code: str) -> None:
    new_code = st.products[pid]["codigo"]
    if old_code == new_code:
        return
    if old_code and pid in st.by_code.get(old_code, []):
        st.by_code[old_code].remove(pid)
    if new_code:
        st.by_code.setdefault(new_code, []).append(pid)


def remove_product(st: State, pid: int) -> None:
    meta = st.pmeta.pop(pid)
    record = st.products.pop(pid)
    if record["codigo"] and pid in st.by_code.get(record["codigo"], []):
        st.by_code[record["codigo"]].remove(pid)
    if meta.parent is not None and pid in st.pmeta[meta.parent].children:
        st.pmeta[meta.parent].children.remove(pid)
    st.balances.pop(pid, None)
    st.changed()


def list_item(st: State, pid: int) -> dict[str, Any]:
    """``ProdutosDadosBaseDTO``: the list fields only (variations carry ``idProdutoPai``)."""
    p, meta = st.products[pid], st.pmeta[pid]
    item: dict[str, Any] = {"id": pid}
    if meta.parent is not None:
        item["idProdutoPai"] = meta.parent
    item.update(nome=p["nome"], codigo=p["codigo"], preco=p["preco"], precoCusto=meta.cost,
                estoque={"saldoVirtualTotal": st.stock_total(pid)}, tipo=p["tipo"], situacao=p["situacao"],
                formato=p["formato"], descricaoCurta=p["descricaoCurta"], imagemURL=p["imagemURL"])
    return item


def detail(st: State, pid: int, *, nested: bool = False) -> dict[str, Any]:
    """``ProdutosDadosDTO``: a parent lists its ``variacoes[]``; a variation shows its ``variacao`` block.
    Shares sub-dicts with the store: serialize at once, under the lock."""
    p, meta = st.products[pid], st.pmeta[pid]
    out = dict(p)
    out["estoque"] = {**p["estoque"], "saldoVirtualTotal": st.stock_total(pid)}
    if meta.variation is not None:
        out["variacao"] = meta.variation
    if meta.children and not nested:
        out["variacoes"] = [detail(st, c, nested=True) for c in meta.children]
    return out


def situacao_visible(p: dict[str, Any], criterio: int, created: str, recent: str) -> bool:
    situacao: str = p["situacao"]
    if criterio == 1:
        return situacao != "E" and created >= recent
    if criterio == 2:
        return situacao == "A"
    if criterio == 3:
        return situacao == "I"
    if criterio == 4:
        return situacao == "E"
    return True


def _tipo_matches(st: State, pid: int, tipo: str) -> bool:
    p, meta = st.products[pid], st.pmeta[pid]
    if tipo == "T":
        return True
    if tipo in ("P", "S"):
        return bool(p["tipo"] == tipo)
    if tipo == "E":
        return bool(p["formato"] == "E")
    if tipo == "PS":
        return bool(p["tipo"] == "P" and p["formato"] == "S" and meta.parent is None)
    if tipo == "C":
        return bool(p["formato"] == "V")
    return meta.parent is not None  # V: variações


def _stock_matches(total: float, filtro: int) -> bool:
    if filtro == 0:
        return total == 0
    if filtro == 1:
        return total > 0
    return total < 0


def _changed_since(st: State, start: str) -> list[int]:
    """The products whose ``dataAlteracao`` minute is ``start``'s or later, in listing order, from an index by
    change date built once per state version (``st.changed()`` drops it): an incremental read of a 100,000-product
    account costs a bisect, not a scan per request, so a benchmark measures its client."""
    index = st.index_cache.get("produtos:by-change")
    if index is None:
        order = {pid: n for n, pid in enumerate(st.products)}
        pids = sorted(order, key=lambda pid: (st.pmeta[pid].changed[:16], order[pid]))
        index = st.index_cache["produtos:by-change"] = ([st.pmeta[pid].changed[:16] for pid in pids], pids, order)
    minutes, pids, order = index
    return sorted(pids[bisect.bisect_left(minutes, start[:16]):], key=order.__getitem__)


def _product_ids(st: State, call: Call) -> list[int]:
    q = call.query
    key = ("produtos", q.key("pagina", "limite"))
    cached = st.list_cache.get(key)
    if cached is not None:
        return cached
    criterio = q.integer("criterio", 1, choices=(1, 2, 3, 4, 5)) or 1
    tipo = q.choice("tipo", "T", ("T", "P", "S", "E", "PS", "C", "V"))
    filtro = q.integer("filtroSaldoEstoque", 1, choices=(0, 1, 2))
    deposit = q.integer("filtroSaldoEstoqueDeposito")
    changed_from, changed_to = q.stamp_range("dataAlteracao")
    created_from, created_to = q.stamp_range("dataInclusao")
    wanted_ids = set(q.ints("idsProdutos[]"))
    codes = q.all("codigos[]")
    gtins = set(q.all("gtins[]"))
    category = q.integer("idCategoria")
    name = (q.first("nome") or "").strip().casefold()
    q.integer("idLoja")
    q.integer("idComponente")
    recent = (st.clock.now() - timedelta(days=RECENT_DAYS)).strftime(STAMP)
    if codes:
        candidates = sorted({pid for code in codes for pid in st.by_code.get(code, [])})
    elif wanted_ids:
        candidates = sorted(pid for pid in wanted_ids if pid in st.products)
    elif changed_from:
        candidates = _changed_since(st, changed_from)
    else:
        candidates = list(st.products)
    out: list[int] = []
    for pid in candidates:
        p, meta = st.products[pid], st.pmeta[pid]
        if wanted_ids and pid not in wanted_ids:
            continue
        if not situacao_visible(p, criterio, meta.created, recent):
            continue
        if tipo != "T" and not _tipo_matches(st, pid, tipo):
            continue
        if (changed_from or changed_to) and not in_minutes(meta.changed, changed_from, changed_to):
            continue
        if (created_from or created_to) and not in_minutes(meta.created, created_from, created_to):
            continue
        if gtins and p["gtin"] not in gtins:
            continue
        if category is not None and p["categoria"].get("id") != category:
            continue
        if name and name not in p["nome"].casefold():
            continue
        if filtro is not None and not _stock_matches(st.stock_total(pid, deposit), filtro):
            continue
        out.append(pid)
    st.list_cache[key] = out
    return out


def list_products(st: State, call: Call) -> Response:
    pagina, limite = call.query.page()
    ids = _product_ids(st, call)
    return ok([list_item(st, pid) for pid in page_of(ids, pagina, limite)])


def _product_id(st: State, call: Call, name: str = "idProduto") -> int:
    pid = call.int_param(name)
    if pid not in st.products:
        raise not_found("produto")
    return pid


def get_product(st: State, call: Call) -> Response:
    return ok(detail(st, _product_id(st, call)))


def get_variations(st: State, call: Call) -> Response:
    pid = _product_id(st, call, "idProdutoPai")
    return ok(detail(st, pid))


def require_object(call: Call) -> dict[str, Any]:
    if call.body is None or call.body == {}:
        raise ApiError(400, "EMPTY_REQUEST_BODY", "Corpo da requisição vazio",
                       "O corpo da requisição não foi informado.")
    if not isinstance(call.body, dict):
        raise ApiError(400, "INVALID_REQUEST_BODY", "Corpo da requisição inválido",
                       "O corpo da requisição deve ser um objeto JSON.")
    return call.body


def check_schema(call: Call, what: str) -> dict[str, Any]:
    """The body, validated against the operation's request schema (400 with Bling field errors if not)."""
    body = require_object(call)
    errors = spec.body_errors(call.method, call.template, body)
    if errors:
        raise invalid(f"Não foi possível salvar {what}", f"{what.capitalize()} não pode ser salvo(a), pois "
                      "ocorreram problemas em sua validação.", errors)
    return body


def _check_category(st: State, body: dict[str, Any], problems: list[dict[str, Any]]) -> None:
    category = (body.get("categoria") or {}).get("id")
    if category and category not in st.categories:
        problems.append(field(21, "Categoria não encontrada", "categoria.id", NS))


def save_variations(st: State, parent: int, bodies: list[dict[str, Any]], now: str,
                     existing: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Create or update the variations named in ``bodies``; drop the others (a PUT is a full replace). Bling
    applies the parent's price to every variation saved through the parent."""
    result: dict[str, list[dict[str, Any]]] = {"saved": [], "updated": [], "deleted": []}
    parent_record = st.products[parent]
    kept: set[int] = set()
    for order, body in enumerate(bodies, start=1):
        body = copy.deepcopy(body)
        variation = body.pop("variacao", {}) or {}
        variation_meta = {"nome": variation.get("nome", ""), "ordem": variation.get("ordem", order),
                          "produtoPai": {"id": parent, "cloneInfo": bool((variation.get("produtoPai") or {})
                                                                          .get("cloneInfo", True))}}
        body["preco"] = parent_record["preco"]
        vid = body.get("id")
        if vid and vid in existing:
            old_code = st.products[vid]["codigo"]
            record = deep_merge(blank_product(), body)
            record["id"] = vid
            record["formato"] = body.get("formato", "S")
            _sync_images(record)
            st.products[vid] = record
            st.pmeta[vid].variation = variation_meta
            st.pmeta[vid].changed = now
            _reindex(st, vid, old_code)
            kept.add(vid)
            result["updated"].append({"id": vid, "variations": {}, "warnings": []})
        else:
            body.pop("id", None)
            if variation_meta["produtoPai"]["cloneInfo"]:
                base = {k: copy.deepcopy(v) for k, v in parent_record.items()
                        if k in ("tributacao", "unidade", "marca", "categoria", "pesoLiquido", "pesoBruto",
                                 "dimensoes", "descricaoCurta")}
                body = deep_merge(base, body)
            body.setdefault("formato", "S")
            body.setdefault("tipo", parent_record["tipo"])
            body.setdefault("situacao", parent_record["situacao"])
            vid = insert_product(st, body, created=now, changed=now, parent=parent, variation=variation_meta)
            kept.add(vid)
            result["saved"].append({"id": vid, "variations": {}, "warnings": []})
    for vid in existing:
        if vid not in kept:
            remove_product(st, vid)
            result["deleted"].append({"id": vid, "variations": {}, "warnings": []})
    st.changed()
    return result


def create_product(st: State, call: Call) -> Response:
    body = check_schema(call, "o produto")
    problems: list[dict[str, Any]] = []
    _check_category(st, body, problems)
    if problems:
        raise invalid("Não foi possível salvar o produto", "O produto não pode ser salvo, pois ocorreram "
                      "problemas em sua validação.", problems)
    now = st.clock.stamp()
    record = {k: v for k, v in body.items() if k not in ("id", "variacoes")}
    cost = float((body.get("fornecedor") or {}).get("precoCusto") or 0.0)
    pid = insert_product(st, record, created=now, changed=now, cost=cost)
    variations = save_variations(st, pid, body.get("variacoes") or [], now, [])
    return ok({"id": pid, "variations": variations, "warnings": []}, 201)


def replace_product(st: State, call: Call) -> Response:
    pid = _product_id(st, call)
    body = check_schema(call, "o produto")
    problems: list[dict[str, Any]] = []
    _check_category(st, body, problems)
    if problems:
        raise invalid("Não foi possível salvar o produto", "O produto não pode ser salvo, pois ocorreram "
                      "problemas em sua validação.", problems)
    meta = st.pmeta[pid]
    now = st.clock.stamp()
    old_code = st.products[pid]["codigo"]
    record = deep_merge(blank_product(), {k: v for k, v in body.items() if k not in ("variacoes", "variacao")})
    record["id"] = pid
    _sync_images(record)
    st.products[pid] = record
    meta.changed = now
    _reindex(st, pid, old_code)
    variations: dict[str, list[dict[str, Any]]] = {"saved": [], "updated": [], "deleted": []}
    if meta.parent is None and (record["formato"] == "V" or meta.children):
        variations = save_variations(st, pid, body.get("variacoes") or [], now, list(meta.children))
    st.changed()
    return ok({"id": pid, "variations": variations, "warnings": []})


def patch_product(st: State, call: Call) -> Response:
    pid = _product_id(st, call)
    body = check_schema(call, "o produto")
    problems: list[dict[str, Any]] = []
    _check_category(st, body, problems)
    if problems:
        raise invalid("Não foi possível salvar o produto", "O produto não pode ser salvo, pois ocorreram "
                      "problemas em sua validação.", problems)
    old_code = st.products[pid]["codigo"]
    deep_merge(st.products[pid], {k: v for k, v in body.items() if k not in ("id", "variacoes", "variacao")})
    _sync_images(st.products[pid])
    st.pmeta[pid].changed = st.clock.stamp()
    _reindex(st, pid, old_code)
    st.changed()
    return ok({"id": pid, "variations": {"saved": [], "updated": [], "deleted": []}, "warnings": []})


def set_product_situacao(st: State, call: Call) -> Response:
    pid = _product_id(st, call)
    body = check_schema(call, "a situação do produto")
    st.products[pid]["situacao"] = body.get("situacao", st.products[pid]["situacao"])
    st.pmeta[pid].changed = st.clock.stamp()
    st.changed()
    return no_content()


# --- categorias ------------------------------------------------------------------------------------------


def list_categories(st: State, call: Call) -> Response:
    pagina, limite = call.query.page()
    ids = list(st.categories)
    return ok([st.categories[c] for c in page_of(ids, pagina, limite)])


def get_category(st: State, call: Call) -> Response:
    cid = call.int_param("idCategoriaProduto")
    if cid not in st.categories:
        raise not_found("categoria")
    return ok(st.categories[cid])


def create_category(st: State, call: Call) -> Response:
    body = check_schema(call, "a categoria")
    parent = (body.get("categoriaPai") or {}).get("id") or 0
    if parent and parent not in st.categories:
        raise invalid("Não foi possível salvar a categoria", "A categoria pai não existe.",
                      [field(21, "Categoria pai não encontrada", "categoriaPai.id", "CATEGORIAS")])
    cid = st.new_id()
    st.categories[cid] = {"id": cid, "descricao": body["descricao"], "categoriaPai": {"id": parent}}
    st.changed()
    return ok({"id": cid}, 201)


def update_category(st: State, call: Call) -> Response:
    cid = call.int_param("idCategoriaProduto")
    if cid not in st.categories:
        raise not_found("categoria")
    body = check_schema(call, "a categoria")
    st.categories[cid]["descricao"] = body["descricao"]
    if isinstance(body.get("categoriaPai"), dict):
        st.categories[cid]["categoriaPai"] = {"id": body["categoriaPai"].get("id", 0)}
    st.changed()
    return no_content()


# --- depósitos e estoques -----------------------------------------------------------------------------


def list_deposits(st: State, call: Call) -> Response:
    q = call.query
    pagina, limite = q.page()
    situacao = q.integer("situacao", 1, choices=(0, 1))
    name = (q.first("descricao") or "").casefold()
    rows = [d for d in st.deposits.values()
            if d["situacao"] == situacao and (not name or name in d["descricao"].casefold())]
    return ok(list(page_of(rows, pagina, limite)))


def get_deposit(st: State, call: Call) -> Response:
    did = call.int_param("idDeposito")
    if did not in st.deposits:
        raise not_found("depósito")
    return ok(st.deposits[did])


def balance_row(st: State, pid: int, deposit: int | None = None) -> dict[str, Any]:
    total = st.stock_total(pid, deposit)
    row: dict[str, Any] = {"produto": {"id": pid, "codigo": st.products[pid]["codigo"]},
                           "saldoFisicoTotal": total, "saldoVirtualTotal": total}
    if deposit is None:
        row["depositos"] = [{"id": d, "saldoFisico": st.stock_total(pid, d), "saldoVirtual": st.stock_total(pid, d)}
                            for d in st.deposits]
    return row


def _balances(st: State, call: Call, deposit: int | None) -> Response:
    q = call.query
    ids = q.ints("idsProdutos[]")
    codes = q.all("codigos[]")
    if not ids and not codes:
        raise q.error("idsProdutos[]", "O parâmetro idsProdutos[] é obrigatório")
    if len(ids) > 100 or len(codes) > 100:
        raise q.error("idsProdutos[]", "Informe no máximo 100 produtos por requisição")
    filtro = q.integer("filtroSaldoEstoque", 1, choices=(0, 1, 2))
    wanted = list(dict.fromkeys([*ids, *(pid for c in codes for pid in st.by_code.get(c, []))]))
    rows = []
    for pid in wanted:
        if pid not in st.products:
            continue
        if filtro is not None and not _stock_matches(st.stock_total(pid, deposit), filtro):
            continue
        rows.append(balance_row(st, pid, deposit))
    return ok(rows)


def get_balances(st: State, call: Call) -> Response:
    return _balances(st, call, None)


def get_deposit_balances(st: State, call: Call) -> Response:
    did = call.int_param("idDeposito")
    if did not in st.deposits:
        raise not_found("depósito")
    return _balances(st, call, did)


def post_stock(st: State, call: Call) -> Response:
    body = check_schema(call, "o lançamento de estoque")
    pid = int(body["produto"]["id"])
    deposit = int(body["deposito"]["id"])
    problems: list[dict[str, Any]] = []
    if pid not in st.products:
        problems.append(field(30, "Produto não encontrado", "produto.id", "ESTOQUES"))
    elif st.pmeta[pid].children:
        problems.append(field(31, "Não é possível lançar estoque para um produto com variações; lance nas "
                                  "variações", "produto.id", "ESTOQUES"))
    if deposit not in st.deposits:
        problems.append(field(32, "Depósito não encontrado", "deposito.id", "ESTOQUES"))
    if problems:
        raise invalid("Não foi possível salvar o lançamento de estoque", "O lançamento de estoque não pode ser "
                      "salvo, pois ocorreram problemas em sua validação.", problems)
    movement = st.move_stock(pid, deposit, body["operacao"], float(body["quantidade"]), origin="api",
                             observacoes=body.get("observacoes", ""))
    return ok({"id": movement["id"]}, 201)


ROUTES = [
    ("GET", "/produtos", list_products),
    ("POST", "/produtos", create_product),
    ("GET", "/produtos/{idProduto}", get_product),
    ("PUT", "/produtos/{idProduto}", replace_product),
    ("PATCH", "/produtos/{idProduto}", patch_product),
    ("PATCH", "/produtos/{idProduto}/situacoes", set_product_situacao),
    ("GET", "/produtos/variacoes/{idProdutoPai}", get_variations),
    ("GET", "/categorias/produtos", list_categories),
    ("POST", "/categorias/produtos", create_category),
    ("GET", "/categorias/produtos/{idCategoriaProduto}", get_category),
    ("PUT", "/categorias/produtos/{idCategoriaProduto}", update_category),
    ("GET", "/depositos", list_deposits),
    ("GET", "/depositos/{idDeposito}", get_deposit),
    ("GET", "/estoques/saldos", get_balances),
    ("GET", "/estoques/saldos/{idDeposito}", get_deposit_balances),
    ("POST", "/estoques", post_stock),
]
