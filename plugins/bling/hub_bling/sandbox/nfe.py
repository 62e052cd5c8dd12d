"""NF-e: generated from an order, sent to a make-believe SEFAZ, settled after ``nfe_delay_seconds``.

The situações are those of ``/nfe`` as Bling documents them: 1 Pendente, 2 Cancelada, 3 Aguardando recibo,
4 Rejeitada, 5 Autorizada, 6 Emitida DANFE, 7 Registrada, 8 Aguardando protocolo, 9 Denegada, 10 Consulta
situação, 11 Bloqueada. They are evaluated lazily (whenever a note is read), so there are no timers: a note sent at
``t`` stays 1 (Pendente, in Bling's queue) until ``t + nfe_queue_seconds``, reads 8 (Aguardando protocolo) for
``nfe_delay_seconds`` more, then takes SEFAZ's verdict: 5 (Autorizada) unless ``nfe_outcomes`` scripts 9 (Denegada)
or 11 (Bloqueada). A note sent once is never accepted for sending again, unless it was rejected.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Any

from hub.models import access_key_check_digit
from hub.sandbox import nfe
from starlette.responses import Response

from .common import STAMP, ApiError, Call, field, invalid, money, not_found, ok, page_of
from .orders import line_total
from .parties import digits, document_problem
from .state import NoteMeta, State

NS = "NFE"
(PENDENTE, CANCELADA, AGUARDANDO_RECIBO, REJEITADA, AUTORIZADA, EMITIDA_DANFE, REGISTRADA, AGUARDANDO_PROTOCOLO,
 DENEGADA, CONSULTA_SITUACAO, BLOQUEADA) = range(1, 12)
SENT = {AGUARDANDO_RECIBO, AUTORIZADA, EMITIDA_DANFE, REGISTRADA, AGUARDANDO_PROTOCOLO, DENEGADA, CONSULTA_SITUACAO,
        BLOQUEADA}
"""Situações of a note that SEFAZ has (or is about to have) on record; a queued one is still 1 (see ``sent``)."""
IN_FLIGHT = {PENDENTE, AGUARDANDO_RECIBO, AGUARDANDO_PROTOCOLO, CONSULTA_SITUACAO}
ADDRESS_FIELDS = ("endereco", "numero", "bairro", "municipio", "uf", "cep")
LIST_FIELDS = ("id", "tipo", "situacao", "numero", "dataEmissao", "dataOperacao", "chaveAcesso", "contato",
               "naturezaOperacao", "loja")
UF_CODES = {"RO": "11", "AC": "12", "AM": "13", "RR": "14", "PA": "15", "AP": "16", "TO": "17", "MA": "21",
            "PI": "22", "CE": "23", "RN": "24", "PB": "25", "PE": "26", "AL": "27", "SE": "28", "BA": "29",
            "MG": "31", "ES": "32", "RJ": "33", "SP": "35", "PR": "41", "SC": "42", "RS": "43", "MS": "50",
            "MT": "51", "GO": "52", "DF": "53"}
ISSUER_UF = "SP"


def _note_contact(st: State, contact_id: int) -> dict[str, Any]:
    c = st.contacts.get(contact_id) or {}
    address = (c.get("endereco") or {}).get("geral") or {}
    return {"id": contact_id, "nome": c.get("nome", ""), "tipoPessoa": c.get("tipo", "F"),
            "numeroDocumento": c.get("numeroDocumento", ""), "ie": c.get("ie", ""), "rg": c.get("rg", ""),
            "contribuinte": c.get("indicadorIe", 9), "telefone": c.get("telefone", ""), "email": c.get("email", ""),
            "endereco": {"endereco": address.get("endereco", ""), "numero": address.get("numero", ""),
                         "complemento": address.get("complemento", ""), "bairro": address.get("bairro", ""),
                         "cep": address.get("cep", ""), "municipio": address.get("municipio", ""),
                         "uf": address.get("uf", ""), "pais": "Brasil"}}


def _note_items(st: State, sale: dict[str, Any], same_uf: bool) -> list[dict[str, Any]]:
    items = []
    for item in sale["itens"]:
        product = st.products.get(item["produto"]["id"]) or {}
        tax = product.get("tributacao") or {}
        ncm = str(tax.get("ncm", ""))
        total = line_total(item)
        items.append({
            "codigo": item["codigo"], "descricao": item["descricao"], "unidade": item["unidade"],
            "quantidade": item["quantidade"], "valor": item["valor"], "valorTotal": total, "tipo": "P",
            "pesoBruto": product.get("pesoBruto", 0.0), "pesoLiquido": product.get("pesoLiquido", 0.0),
            "numeroPedidoCompra": "", "classificacaoFiscal": ncm, "cest": tax.get("cest", ""),
            "codigoServico": "", "origem": tax.get("origem"), "informacoesAdicionais": "",
            "gtin": product.get("gtin", ""), "cfop": "5102" if same_uf else "6102",
            "impostos": {"valorAproximadoTotalTributos": money(total * 0.3145)},
        })
    return items


def _fill(st: State, note: dict[str, Any], sale: dict[str, Any]) -> None:
    """(Re)take the note's contact, items and payments from the order and the current records: sending a
    pending or rejected note again picks up fixes made to the product or the contact in the meantime."""
    contact = _note_contact(st, sale["contato"]["id"])
    note["contato"] = contact
    note["itens"] = _note_items(st, sale, contact["endereco"]["uf"] in ("", ISSUER_UF))
    note["parcelas"] = [{"data": p["dataVencimento"], "valor": p["valor"], "observacoes": p["observacoes"],
                         "caut": p["caut"], "formaPagamento": p["formaPagamento"]} for p in sale["parcelas"]]
    note["valorNota"] = sale["total"]
    note["valorFrete"] = sale["transporte"].get("frete", 0.0)


def generate(st: State, call: Call) -> Response:
    """``POST /pedidos/vendas/{id}/gerar-nfe``: a new pending note each time (Bling does not refuse a second
    one for the same order; the client must look at the order's ``notaFiscal`` first)."""
    sid = call.int_param("idPedidoVenda")
    sale = st.sales.get(sid)
    if sale is None:
        raise not_found("pedido de venda")
    nid = st.new_id()
    now = st.clock.stamp()
    note: dict[str, Any] = {
        "id": nid, "tipo": 1, "situacao": PENDENTE, "numero": "", "dataEmissao": now, "dataOperacao": now,
        "chaveAcesso": "", "contato": {}, "naturezaOperacao": {"id": st.module_id * 7 + 1},
        "loja": {"id": sale["loja"]["id"], "numero": sale["numeroLoja"]}, "serie": 1, "valorNota": 0.0,
        "valorFrete": 0.0, "finalidade": 1, "tipoNota": "", "xml": "", "linkDanfe": "", "linkPDF": "",
        "optanteSimplesNacional": True, "numeroPedidoLoja": sale["numeroLoja"],
        "transporte": {"fretePorConta": sale["transporte"].get("fretePorConta", 0),
                       "transportador": {"nome": sale["transporte"]["contato"].get("nome", ""),
                                         "numeroDocumento": ""},
                       "volumes": [], "etiqueta": {k: v for k, v in sale["transporte"]["etiqueta"].items()
                                                   if k != "nomePais"}},
        "vendedor": {"id": sale["vendedor"]["id"]}, "itens": [], "parcelas": [],
    }
    _fill(st, note, sale)
    st.nfes[nid] = note
    st.nmeta[nid] = NoteMeta(order=sid)
    st.ometa[sid].notes.append(nid)
    st.ometa[sid].changed = now
    sale["notaFiscal"] = {"id": nid}
    st.changed()
    return ok({"idNotaFiscal": nid}, 201)


def _problems(note: dict[str, Any], st: State, sale: dict[str, Any]) -> list[dict[str, Any]]:
    problems = []
    for index, (item, order_item) in enumerate(zip(note["itens"], sale["itens"], strict=True)):
        label = f"Item {index + 1} ({item['codigo'] or item['descricao']})"
        if order_item["produto"]["id"] not in st.products:
            problems.append(field(80, f"{label}: não vinculado a um produto com dados fiscais",
                                  f"itens[{index}].produto", NS))
            continue
        if len(digits(item["classificacaoFiscal"])) != 8:
            problems.append(field(81, f"{label}: NCM (classificação fiscal) inválido ou não informado",
                                  f"itens[{index}].classificacaoFiscal", NS))
        if item["origem"] not in range(9):
            problems.append(field(82, f"{label}: origem da mercadoria não informada", f"itens[{index}].origem", NS))
    address = note["contato"]["endereco"]
    for name in ADDRESS_FIELDS:
        if not str(address.get(name) or "").strip():
            problems.append(field(83, f"Endereço do destinatário incompleto: {name} não informado",
                                  f"contato.endereco.{name}", NS))
    document = note["contato"]["numeroDocumento"]
    if not digits(document):
        problems.append(field(84, "CPF/CNPJ do destinatário não informado", "contato.numeroDocumento", NS))
    else:
        problem = document_problem(note["contato"]["tipoPessoa"], document)
        if problem:
            problems.append(field(84, f"{problem} do destinatário: {document}", "contato.numeroDocumento", NS))
    return problems


def _access_key(st: State, note: dict[str, Any], numero: int) -> str:
    stamp = note["dataEmissao"]
    code = int(hashlib.sha256(f"{st.seed}-{note['id']}".encode()).hexdigest(), 16) % 10**8
    first43 = (f"{UF_CODES[ISSUER_UF]}{stamp[2:4]}{stamp[5:7]}{digits(st.company_cnpj):0>14}55"
               f"{int(note['serie']):03d}{numero:09d}1{code:08d}")
    return first43 + str(access_key_check_digit(first43))


def _xml(st: State, note: dict[str, Any], key: str) -> str:
    """The authorized note's ``nfeProc``, valid against the NF-e 4.00 schema (:mod:`hub.sandbox.nfe`, signed with the
    sandbox's throwaway certificate): the contact as recipient, the items with their NCM, CEST, origem and GTIN, the
    sale's freight, discount, installments (tPag from the payment method's ``tipoPagamento``, ``caut``) and its
    intermediary (``intermediador.cnpj``, a marketplace sale)."""
    c = note["contato"]
    address = c["endereco"]
    sale = st.sales.get(st.nmeta[note["id"]].order or 0) if note["id"] in st.nmeta else None
    items, gross = [], Decimal("0")
    for it in note["itens"]:
        quantity, price = Decimal(str(it["quantidade"])), Decimal(str(it["valor"]))
        gross += quantity * price
        items.append(nfe.Item(sku=it["codigo"] or it["descricao"], name=it["descricao"],
                              ncm=digits(it["classificacaoFiscal"]), quantity=quantity, unit_price=price,
                              cfop=it["cfop"], origin=int(it["origem"] or 0), gtin=it.get("gtin") or None,
                              cest=it.get("cest") or None, unit=it.get("unidade") or "UN"))
    freight = Decimal(str(note.get("valorFrete") or 0))
    discount = max(Decimal("0"), gross + freight - Decimal(str(note["valorNota"])))
    payments = []
    for p in note.get("parcelas") or []:
        method = st.payment_methods.get(int((p.get("formaPagamento") or {}).get("id") or 0)) or {}
        kind = "".join(ch for ch in str(method.get("tipoPagamento") or "") if ch.isdigit())
        tpag = kind.zfill(2) if 0 < len(kind) <= 2 else "99"
        card = nfe.Card(authorization=p.get("caut") or None) if tpag in ("03", "04") else None
        payments.append((tpag, Decimal(str(p["valor"])), card))
    intermediary = (sale or {}).get("intermediador") or {}
    recipient = nfe.Party(document=c["numeroDocumento"], name=c["nome"], street=address.get("endereco") or "-",
                          number=address.get("numero") or "S/N", district=address.get("bairro") or "-",
                          city=address.get("municipio") or "-", uf=address.get("uf") or ISSUER_UF,
                          zip=address.get("cep") or "", complement=address.get("complemento") or None,
                          phone=c.get("telefone") or None, email=c.get("email") or None,
                          ie=c.get("ie") or None if c.get("contribuinte") == 1 else None)
    issuer = nfe.Party(document=st.company_cnpj, name="Loja Modelo Comércio de Artigos Ltda", ie="110042490114",
                       street="Avenida Paulista", number="1000", district="Bela Vista", uf=ISSUER_UF,
                       zip="01310100")
    cnpj = digits(intermediary.get("cnpj"))
    return nfe.authorized_nfe(key=key, issued=datetime.fromisoformat(note["dataEmissao"]), issuer=issuer,
                              recipient=recipient, items=items, payments=payments, freight=freight,
                              discount=discount, intermediary=cnpj if len(cnpj) == 14 else None,
                              intermediary_id=intermediary.get("nomeUsuario") or None,
                              received=st.clock.now(), extra_info=f"Pedido {note.get('numeroPedidoLoja') or ''}")


def sent(st: State, nid: int) -> bool:
    """Sent and not rejected: in Bling's queue (still 1 Pendente), with SEFAZ, or settled."""
    note, meta = st.nfes[nid], st.nmeta[nid]
    return note["situacao"] in SENT or (note["situacao"] == PENDENTE and meta.sent_at is not None)


def settle(st: State, nid: int) -> dict[str, Any]:
    """The note as of now: a sent one leaves Bling's queue, waits for its protocol, then takes SEFAZ's verdict."""
    note, meta = st.nfes[nid], st.nmeta[nid]
    if meta.sent_at is None or note["situacao"] not in IN_FLIGHT:
        return note
    elapsed = st.clock.time() - meta.sent_at
    if elapsed < st.nfe_queue_seconds:
        return note
    if elapsed < st.nfe_queue_seconds + st.nfe_delay_seconds:
        if note["situacao"] != AGUARDANDO_PROTOCOLO:
            note["situacao"] = AGUARDANDO_PROTOCOLO
            st.changed()
        return note
    if meta.outcome == BLOQUEADA:
        note["situacao"] = BLOQUEADA
        st.changed()
    elif meta.outcome == DENEGADA:
        note.update(situacao=DENEGADA, chaveAcesso=_access_key(st, note, int(note["numero"])))
        st.changed()
    else:
        key = _access_key(st, note, int(note["numero"]))
        token = hashlib.sha256(f"{key}-{st.seed}".encode()).hexdigest()[:32]
        note.update(situacao=AUTORIZADA, chaveAcesso=key, xml=_xml(st, note, key),
                    linkDanfe=f"https://www.bling.com.br/doc.view.php?id={token}&accessKey={key}",
                    linkPDF=f"https://www.bling.com.br/doc.view.php?PDF=true&id={token}&accessKey={key}")
        st.changed()
    return note


def send(st: State, call: Call) -> Response:
    nid = call.int_param("idNotaFiscal")
    if nid not in st.nfes:
        raise not_found("nota fiscal")
    note, meta = settle(st, nid), st.nmeta[nid]
    if sent(st, nid):
        raise invalid("Não foi possível enviar a nota fiscal", "A nota fiscal já foi enviada para a SEFAZ.",
                      [field(85, "A nota fiscal já foi enviada", "situacao", NS)])
    if note["situacao"] == CANCELADA:
        raise invalid("Não foi possível enviar a nota fiscal", "A nota fiscal está cancelada.",
                      [field(86, "A nota fiscal está cancelada", "situacao", NS)])
    sale = st.sales.get(meta.order or 0)
    if sale is not None:
        _fill(st, note, sale)
        problems = _problems(note, st, sale)
        twins = [n for n in st.ometa[sale["id"]].notes if n != nid and n in st.nfes]
        for twin in twins:
            settle(st, twin)
        if not problems and any(sent(st, n) for n in twins):
            problems = [field(539, "Rejeição 539: Duplicidade de NF-e com diferença na Chave de Acesso", "nfe", NS)]
        if problems:
            note["situacao"] = REJEITADA
            st.changed()
            raise ApiError(400, "VALIDATION_ERROR", "Não foi possível enviar a nota fiscal",
                           "A nota fiscal foi rejeitada; corrija os dados informados e envie novamente.", problems)
    st.nfe_numero += 1
    note.update(situacao=PENDENTE, numero=str(st.nfe_numero), dataEmissao=st.clock.now().strftime(STAMP))
    meta.sent_at = st.clock.time()
    meta.outcome = st.nfe_outcomes.pop(0) if st.nfe_outcomes else AUTORIZADA
    st.changed()
    if st.on_note_sent is not None:
        st.on_note_sent(nid)
    return ok({"xml": settle(st, nid)["xml"]})


def event_data(note: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` of an ``invoice`` webhook (v1): the note's head, no items."""
    return {"id": note["id"], "tipo": note.get("tipo", 1), "situacao": note.get("situacao"),
            "numero": note.get("numero"), "dataEmissao": note.get("dataEmissao"),
            "dataOperacao": note.get("dataOperacao") or note.get("dataEmissao"),
            "contato": {"id": (note.get("contato") or {}).get("id") or 0},
            "naturezaOperacao": {"id": (note.get("naturezaOperacao") or {}).get("id") or 0},
            "loja": {"id": (note.get("loja") or {}).get("id") or 0}}


def get_note(st: State, call: Call) -> Response:
    nid = call.int_param("idNotaFiscal")
    if nid not in st.nfes:
        raise not_found("nota fiscal")
    return ok(settle(st, nid))


def list_notes(st: State, call: Call) -> Response:
    q = call.query
    pagina, limite = q.page()
    store_number = q.first("numeroLoja")
    situacao = q.integer("situacao", choices=range(1, 12))
    numero = q.integer("numero")
    serie = q.integer("serie")
    key = q.first("chaveAcesso")
    tipo = q.choice("tipo", "1", ("0", "1"))
    issued_from, issued_to = q.stamp_range("dataEmissao")
    q.integer("idTransportador")
    rows = []
    for nid in st.nfes:
        note = settle(st, nid)
        if situacao is None and note["situacao"] == CANCELADA:
            continue
        if situacao is not None and note["situacao"] != situacao:
            continue
        if store_number and note["numeroPedidoLoja"] != store_number:
            continue
        if numero is not None and (not note["numero"] or int(note["numero"]) != numero):
            continue
        if serie is not None and note["serie"] != serie:
            continue
        if key and note["chaveAcesso"] != key:
            continue
        if str(note["tipo"]) != tipo:
            continue
        if (issued_from and note["dataEmissao"] < issued_from) or (issued_to and note["dataEmissao"] > issued_to):
            continue
        rows.append({k: note[k] for k in LIST_FIELDS})
    return ok(list(page_of(rows, pagina, limite)))


ROUTES = [
    ("POST", "/pedidos/vendas/{idPedidoVenda}/gerar-nfe", generate),
    ("GET", "/nfe", list_notes),
    ("GET", "/nfe/{idNotaFiscal}", get_note),
    ("POST", "/nfe/{idNotaFiscal}/enviar", send),
]
