"""Contatos, vendedores, formas de pagamento and the company itself.

Contacts follow Bling's rules, not a tidy database's: a duplicate ``numeroDocumento`` is accepted (the client must
search first), the default list shows only the last included, and documents come back formatted as stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.responses import Response
from stdnum.br import cnpj, cpf

from .catalog import check_schema, deep_merge
from .common import STAMP, Call, field, in_minutes, invalid, no_content, not_found, ok, page_of
from .state import Meta, State

NS = "CONTATOS"
LIST_FIELDS = ("id", "nome", "codigo", "situacao", "numeroDocumento", "telefone", "celular")
TIPOS_CONTATO = ("Cliente", "Fornecedor", "Técnico", "Transportador", "Vendedor")


def digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isalnum()).upper()


def blank_address() -> dict[str, str]:
    return {"endereco": "", "cep": "", "bairro": "", "municipio": "", "uf": "", "numero": "", "complemento": ""}


def blank_contact() -> dict[str, Any]:
    """Every field of ``ContatosDadosBaseDTO`` + ``ContatosDadosDTO`` with Bling's empty values."""
    return {
        "id": 0, "nome": "", "codigo": "", "situacao": "A", "numeroDocumento": "", "telefone": "", "celular": "",
        "fantasia": "", "tipo": "F", "indicadorIe": 9, "ie": "", "rg": "", "inscricaoMunicipal": "",
        "orgaoEmissor": "", "email": "", "emailNotaFiscal": "", "orgaoPublico": "N",
        "endereco": {"geral": blank_address(), "cobranca": blank_address()},
        "vendedor": {"id": 0},
        "dadosAdicionais": {"dataNascimento": "", "sexo": "", "naturalidade": ""},
        "financeiro": {"limiteCredito": 0.0, "condicaoPagamento": "", "categoria": {"id": 0}},
        "pais": {"nome": ""}, "tiposContato": [], "pessoasContato": [],
    }


def insert_contact(st: State, record: dict[str, Any], *, created: str, changed: str) -> int:
    full = deep_merge(blank_contact(), record)
    full["id"] = full["id"] or st.new_id()
    cid = int(full["id"])
    st.contacts[cid] = full
    st.cmeta[cid] = Meta(created, changed)
    st.changed()
    return cid


def document_problem(tipo: str, document: str) -> str | None:
    """Why ``document`` is not a valid CPF (tipo F) or CNPJ (tipo J); foreigners (E) may send anything."""
    doc = digits(document)
    if not doc or tipo == "E":
        return None
    if tipo == "F":
        return None if len(doc) == 11 and cpf.is_valid(doc) else "CPF inválido"
    return None if len(doc) == 14 and cnpj.is_valid(doc) else "CNPJ inválido"


def _validated(st: State, call: Call) -> dict[str, Any]:
    body = check_schema(call, "o contato")
    problems = []
    problem = document_problem(str(body.get("tipo", "F")), str(body.get("numeroDocumento") or ""))
    if problem:
        problems.append(field(15, f"{problem}: {body.get('numeroDocumento')}", "numeroDocumento", NS))
    seller = (body.get("vendedor") or {}).get("id")
    if seller and seller not in st.sellers:
        problems.append(field(16, "Vendedor não encontrado", "vendedor.id", NS))
    if problems:
        raise invalid("Não foi possível salvar o contato", "O contato não pode ser salvo, pois ocorreram "
                      "problemas em sua validação.", problems)
    return body


def create_contact(st: State, call: Call) -> Response:
    body = _validated(st, call)
    now = st.clock.stamp()
    cid = insert_contact(st, {k: v for k, v in body.items() if k != "id"}, created=now, changed=now)
    return ok({"id": cid}, 201)


def _contact_id(st: State, call: Call) -> int:
    cid = call.int_param("idContato")
    if cid not in st.contacts:
        raise not_found("contato")
    return cid


def update_contact(st: State, call: Call) -> Response:
    cid = _contact_id(st, call)
    if cid == st.final_consumer:
        raise invalid("Não foi possível salvar o contato", "O contato Consumidor Final não pode ser alterado.",
                      [field(17, "O contato Consumidor Final não pode ser alterado", "id", NS)])
    body = _validated(st, call)
    record = deep_merge(blank_contact(), {k: v for k, v in body.items() if k != "id"})
    record["id"] = cid
    st.contacts[cid] = record
    st.cmeta[cid].changed = st.clock.stamp()
    st.changed()
    return no_content()


def get_contact(st: State, call: Call) -> Response:
    return ok(st.contacts[_contact_id(st, call)])


def final_consumer(st: State, call: Call) -> Response:
    return ok(st.contacts[st.final_consumer])


def contact_types(st: State, call: Call) -> Response:
    return ok([{"id": st.module_id * 10 + i, "descricao": name} for i, name in enumerate(TIPOS_CONTATO, start=1)])


def _contact_ids(st: State, call: Call) -> list[int]:
    q = call.query
    key = ("contatos", q.key("pagina", "limite"))
    cached = st.list_cache.get(key)
    if cached is not None:
        return cached
    criterio = q.integer("criterio", 3, choices=(1, 2, 3, 4)) or 3
    search = (q.first("pesquisa") or "").strip().casefold()
    document = digits(q.first("numeroDocumento"))
    changed_from, changed_to = q.stamp_range("dataAlteracao")
    created_from, created_to = q.stamp_range("dataInclusao")
    wanted = set(q.ints("idsContatos[]"))
    uf = (q.first("uf") or "").upper()
    tipo_pessoa = q.integer("tipoPessoa", choices=(1, 2, 3))
    seller = q.integer("idVendedor")
    phone = digits(q.first("telefone"))
    q.integer("idTipoContato")
    recent = (st.clock.now() - timedelta(days=30)).strftime(STAMP)
    out: list[int] = []
    for cid, c in st.contacts.items():
        if cid == st.final_consumer:
            continue  # the built-in contact has its own endpoint and is not listed
        meta = st.cmeta[cid]
        situacao = c["situacao"]
        if criterio == 1 and situacao == "E":
            continue
        if criterio == 2 and situacao != "E":
            continue
        if criterio == 3 and (situacao == "E" or meta.created < recent):
            continue
        if criterio == 4 and situacao != "S":
            continue
        if wanted and cid not in wanted:
            continue
        if document and digits(c["numeroDocumento"]) != document:
            continue
        if search and not any(search in str(v).casefold() for v in (c["nome"], c["fantasia"], c["email"],
                                                                     c["codigo"], c["numeroDocumento"])) \
                and not (digits(search) and digits(search) == digits(c["numeroDocumento"])):
            continue
        if (changed_from or changed_to) and not in_minutes(meta.changed, changed_from, changed_to):
            continue
        if (created_from or created_to) and not in_minutes(meta.created, created_from, created_to):
            continue
        if uf and c["endereco"]["geral"]["uf"].upper() != uf:
            continue
        if tipo_pessoa is not None and c["tipo"] != {1: "F", 2: "J", 3: "E"}[tipo_pessoa]:
            continue
        if seller is not None and c["vendedor"].get("id") != seller:
            continue
        if phone and phone not in digits(c["telefone"]) and phone not in digits(c["celular"]):
            continue
        out.append(cid)
    st.list_cache[key] = out
    return out


def list_contacts(st: State, call: Call) -> Response:
    pagina, limite = call.query.page()
    ids = _contact_ids(st, call)
    return ok([{k: st.contacts[cid][k] for k in LIST_FIELDS} for cid in page_of(ids, pagina, limite)])


# --- vendedores ---------------------------------------------------------------------------------------


def seller_view(st: State, sid: int, *, full: bool) -> dict[str, Any]:
    s = st.sellers[sid]
    contact = st.contacts.get(s["contato"]["id"], {})
    out = {"id": sid, "descontoLimite": s["descontoLimite"], "loja": s["loja"],
           "contato": {"id": s["contato"]["id"], "nome": contact.get("nome", ""),
                       "situacao": contact.get("situacao", "A")}}
    if full:
        out["comissoes"] = s["comissoes"]
    return out


def list_sellers(st: State, call: Call) -> Response:
    q = call.query
    pagina, limite = q.page()
    name = (q.first("nomeContato") or "").strip().casefold()
    situacao = q.choice("situacaoContato", "A", ("A", "I", "S", "E", "T"))
    contact = q.integer("idContato")
    store = q.integer("idLoja")
    changed_from, changed_to = q.stamp_range("dataAlteracao")
    rows = []
    for sid in st.sellers:
        view = seller_view(st, sid, full=False)
        if situacao != "T" and view["contato"]["situacao"] != situacao:
            continue
        if name and name not in view["contato"]["nome"].casefold():
            continue
        if contact is not None and view["contato"]["id"] != contact:
            continue
        if store is not None and view["loja"]["id"] != store:
            continue
        if (changed_from or changed_to) and not in_minutes(st.smeta[sid].changed, changed_from, changed_to):
            continue
        rows.append(view)
    return ok(list(page_of(rows, pagina, limite)))


def get_seller(st: State, call: Call) -> Response:
    sid = call.int_param("idVendedor")
    if sid not in st.sellers:
        raise not_found("vendedor")
    return ok(seller_view(st, sid, full=True))


# --- formas de pagamento ------------------------------------------------------------------------------

PAYMENT_LIST_FIELDS = ("id", "descricao", "tipoPagamento", "situacao", "fixa", "padrao", "finalidade", "juros",
                       "multa")


def list_payment_methods(st: State, call: Call) -> Response:
    q = call.query
    pagina, limite = q.page()
    name = (q.first("descricao") or "").strip().casefold()
    kinds = set(q.ints("tiposPagamentos[]"))
    situacao = q.integer("situacao", choices=(0, 1))
    rows = [{k: m[k] for k in PAYMENT_LIST_FIELDS} for m in st.payment_methods.values()
            if (not name or name in m["descricao"].casefold()) and (not kinds or m["tipoPagamento"] in kinds)
            and (situacao is None or m["situacao"] == situacao)]
    return ok(list(page_of(rows, pagina, limite)))


def get_payment_method(st: State, call: Call) -> Response:
    mid = call.int_param("idFormaPagamento")
    if mid not in st.payment_methods:
        raise not_found("forma de pagamento")
    return ok(st.payment_methods[mid])


def create_payment_method(st: State, call: Call) -> Response:
    """``POST /formas-pagamentos``: validated against the spec; a repeated ``descricao`` is accepted, as Bling
    does not refuse one (the client must look it up first)."""
    body = check_schema(call, "a forma de pagamento")
    mid = st.new_id()
    card = body.get("tipoPagamento") in (3, 4)
    st.payment_methods[mid] = {
        "id": mid, "descricao": body["descricao"], "tipoPagamento": body["tipoPagamento"],
        "situacao": body.get("situacao", 1), "fixa": False, "padrao": body.get("padrao", 0),
        "finalidade": body["finalidade"], "juros": body.get("juros", 0.0), "multa": body.get("multa", 0.0),
        "condicao": body.get("condicao", "1x"), "destino": body["destino"],
        "utilizaDiasUteis": body.get("utilizaDiasUteis", False),
        "taxas": {"aliquota": 0.0, "valor": 0.0, "prazo": 0, **(body.get("taxas") or {})},
        "dadosCartao": {"bandeira": 99, "tipo": 2 if card else 1, "cnpjCredenciadora": "", "autoLiquidacao": 0,
                        **(body.get("dadosCartao") or {})},
    }
    st.changed()
    return ok({"id": mid}, 201)


def company(st: State, call: Call) -> Response:
    return ok({"id": st.company_id, "nome": "Loja Modelo Comércio de Artigos Ltda", "cnpj": st.company_cnpj,
               "email": "financeiro@lojamodelo.com.br", "dataContrato": "2021-03-15"})


ROUTES = [
    ("GET", "/contatos", list_contacts),
    ("POST", "/contatos", create_contact),
    ("GET", "/contatos/consumidor-final", final_consumer),
    ("GET", "/contatos/tipos", contact_types),
    ("GET", "/contatos/{idContato}", get_contact),
    ("PUT", "/contatos/{idContato}", update_contact),
    ("GET", "/vendedores", list_sellers),
    ("GET", "/vendedores/{idVendedor}", get_seller),
    ("GET", "/formas-pagamentos", list_payment_methods),
    ("POST", "/formas-pagamentos", create_payment_method),
    ("GET", "/formas-pagamentos/{idFormaPagamento}", get_payment_method),
    ("GET", "/empresas/me/dados-basicos", company),
]
