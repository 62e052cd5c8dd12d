"""Pushing sales and customers to Bling, and running the stock and accounts actions of status changes.

Nothing is created twice: a customer is found by CPF/CNPJ (``numeroDocumento``) under a lock before it is created;
a sale is found by ``numeroLoja`` before it is created and its id is recorded the moment Bling answers; a write
that timed out counts as "maybe done" and is looked up again before any retry. Situações are resolved by name per
account (their ids differ per account) and cached for a while, like the account's depósitos, payment methods and
transition manager.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from hub import ConnectorContext, PushResult
from hub.errors import Fatal, InvalidRecord, Retriable
from hub.models import TPAG_CODES, Action, Customer, Payment, PaymentMethod, Sale, SaleItem

from hub_bling import mappers
from hub_bling.catalog import pages
from hub_bling.client import error_body, error_for, field_messages, get, options, request
from hub_bling.options import TIME_ZONE

CACHE_SECONDS = 600.0
ACTIONS = ("lancar-estoque", "lancar-contas", "estornar-estoque", "estornar-contas")
ACCOUNT_ACTION_NAMES = {"lancar-estoque": "lancarestoque", "lancar-contas": "lancarcontas",
                        "estornar-estoque": "estornarestoque", "estornar-contas": "estornarcontas"}
"""How the account's transition manager names our actions (``/situacoes/modulos/{id}/acoes``), normalized."""

T = TypeVar("T")
R = TypeVar("R")


def cached(ctx: ConnectorContext, name: str, load: Callable[[], T]) -> T:
    """Per-connection lookups that rarely change (situações, depósitos, payment methods), kept for
    ``CACHE_SECONDS`` in the connection's ``ctx.cache`` (dropped when its options or credentials change)."""
    return ctx.cache.get_or_set(f"bling:{name}", load, CACHE_SECONDS)


def cached_find(ctx: ConnectorContext, name: str, load: Callable[[], T], match: Callable[[T], R | None]) -> R | None:
    """``match`` on a :func:`cached` lookup, read again once when it finds nothing (created in Bling since)."""
    return ctx.cache.find(f"bling:{name}", load, match, CACHE_SECONDS)


def forget(ctx: ConnectorContext, name: str) -> None:
    ctx.cache.forget(f"bling:{name}")


def norm(text: str | None) -> str:
    """Names compared the way a person reads them: case, accents and spacing ignored."""
    plain = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    return "".join(plain.lower().split())


def _all(ctx: ConnectorContext, path: str, stream: str) -> list[dict[str, Any]]:
    return [row for paged in pages(ctx, path, stream, size=100, call=get) for row in paged.records]


# --- account lookups ----------------------------------------------------------------------------------------


def sales_module(ctx: ConnectorContext) -> int:
    def load() -> int:
        for module in get(ctx, "/situacoes/modulos").get("data") or []:
            if norm(module.get("nome")) == "vendas":
                return int(module["id"])
        raise Fatal(f"Bling account of {ctx.tenant}/{ctx.connection} has no 'Vendas' module",
                    fix="Check the Bling account (Situações > Módulos).")

    return cached(ctx, "module", load)


def situations(ctx: ConnectorContext) -> dict[str, int]:
    """Sales situações of this account, by normalized name -> id (ids differ per account)."""
    return cached(ctx, "situations", lambda: {
        norm(s.get("nome")): int(s["id"])
        for s in get(ctx, f"/situacoes/modulos/{sales_module(ctx)}").get("data") or []})


def situation_id(ctx: ConnectorContext, name: str, sale: Sale) -> int:
    found = situations(ctx).get(norm(name))
    if found is None:
        forget(ctx, "situations")
        found = situations(ctx).get(norm(name))
    if found is None:
        route = ctx.route.name if ctx.route else "ROUTE"
        known = ", ".join(sorted(situations(ctx)))
        raise InvalidRecord(
            f"tenant {ctx.tenant}, sale {sale.number}: Bling has no sales situação named {name!r} (it has: {known})",
            field="status", record=sale.number,
            fix=f"Map the status to one of Bling's situações under routes.{route}.mappings.statuses, or create "
                f"the situação {name!r} in Bling.")
    return found


def deposits(ctx: ConnectorContext) -> list[dict[str, Any]]:
    return cached(ctx, "deposits", lambda: _all(ctx, "/depositos", "deposits"))


def deposit_id(ctx: ConnectorContext, wanted: str | None) -> int | None:
    """A depósito given by id or name; None means Bling's default one."""
    if not wanted:
        return None
    found = cached_find(ctx, "deposits", lambda: _all(ctx, "/depositos", "deposits"), lambda deps: next(
        (int(d["id"]) for d in deps if str(d["id"]) == str(wanted) or norm(d.get("descricao")) == norm(wanted)), None))
    if found is not None:
        return found
    names = ", ".join(str(d.get("descricao")) for d in deposits(ctx))
    raise Fatal(f"tenant {ctx.tenant}: Bling has no depósito {wanted!r} (it has: {names})",
                fix="Correct the store -> depósito mapping (mappings.stores) or the default_deposit option.")


def payment_methods(ctx: ConnectorContext) -> list[dict[str, Any]]:
    return cached(ctx, "payment_methods", lambda: _all(ctx, "/formas-pagamentos", "payment_methods"))


def _active(method: dict[str, Any]) -> bool:
    """``situacao`` of a forma de pagamento: 1 Ativa, 0 Inativa (``FormasPagamentosDadosBaseDTO``)."""
    return str(method.get("situacao", 1)) != "0"


def payment_method_id(ctx: ConnectorContext, payment: Payment, sale: Sale, index: int) -> int:
    """The forma de pagamento given by id or name, an active one first: an inactive one is refused, as a
    receivable filed under it could not be settled. One that Bling lacks is found or created by the payment's
    ``name`` when the connection's ``create_payment_methods`` is on (Zydon's help page "Integração Zydon↔Bling":
    a payment method that exists only in Zydon is created in Bling)."""
    wanted = payment.method
    creating = bool(payment.name) and options(ctx).create_payment_methods

    def match(methods: list[dict[str, Any]]) -> dict[str, Any] | None:
        named = [m for m in methods if str(m["id"]) == wanted or norm(m.get("descricao")) == norm(wanted)]
        if not named and creating:
            named = [m for m in methods if norm(m.get("descricao")) == norm(payment.name)]
        return next((m for m in named if _active(m)), named[0] if named else None)

    def load() -> list[dict[str, Any]]:
        return _all(ctx, "/formas-pagamentos", "payment_methods")

    found = cached_find(ctx, "payment_methods", load, match)
    if found is None and creating and payment.name:
        method = PaymentMethod(code=payment.method, name=payment.name, tpag=payment.tpag)
        return int(ensure_payment_method(ctx, method))
    if found is not None and not _active(found):
        forget(ctx, "payment_methods")  # activated in Bling since it was read?
        found = cached_find(ctx, "payment_methods", load, match)
    route = ctx.route.name if ctx.route else "ROUTE"
    if found is not None and _active(found):
        return int(found["id"])
    if found is not None:
        raise InvalidRecord(
            f"tenant {ctx.tenant}, sale {sale.number}: Bling's forma de pagamento {found.get('descricao')!r} "
            f"(id {found['id']}, mapped from {wanted!r}) is inactive (situacao 0); Bling cannot file the parcelas "
            "under it", field=f"payments.{index}.method", record=sale.number,
            fix=f"Activate the forma de pagamento {found.get('descricao')!r} in Bling (Cadastros > Formas de "
                f"pagamento), or map the POS method to an active one under routes.{route}.mappings.payment_methods; "
                "then run `hub retry`.")
    names = ", ".join(str(m.get("descricao")) for m in payment_methods(ctx))
    raise InvalidRecord(
        f"tenant {ctx.tenant}, sale {sale.number}: Bling has no forma de pagamento {wanted!r} (it has: {names})",
        field=f"payments.{index}.method", record=sale.number,
        fix=f"Point the DE-PARA entry under routes.{route}.mappings.payment_methods at one of Bling's formas de "
            "pagamento (id or name).")


def find_payment_method(ctx: ConnectorContext, name: str) -> dict[str, Any] | None:
    """A forma de pagamento by name (``descricao`` filter, then compared the way a person reads it), an active
    one first."""
    rows = [row for paged in pages(ctx, "/formas-pagamentos", "payment_methods", {"descricao": name}, call=get)
            for row in paged.records if norm(row.get("descricao")) == norm(name)]
    return next((m for m in rows if _active(m)), rows[0] if rows else None)


def payment_method_body(method: PaymentMethod) -> dict[str, Any]:
    """``POST /formas-pagamentos``: a method for the sales' receivables (``finalidade`` 2 Recebimentos, ``destino``
    1 Contas a receber), its SEFAZ tPag as ``tipoPagamento`` (99 Outros when unknown)."""
    kind = int(method.tpag) if method.tpag in TPAG_CODES else 99
    return {"descricao": method.name, "tipoPagamento": kind, "situacao": 1 if method.active else 0,
            "finalidade": 2, "destino": 1}


def ensure_payment_method(ctx: ConnectorContext, method: PaymentMethod) -> str:
    """The id of the forma de pagamento named ``method.name``: found by name under the name's lock, else created.
    A create that timed out may still land in Bling: it is looked for again by name, lock held, before the error
    goes to the outbox, so a retry never creates it twice."""
    with ctx.lock(f"payment_method:{norm(method.name)}"):
        found = find_payment_method(ctx, method.name)
        if found is not None:
            return str(found["id"])
        try:
            created = request(ctx, "POST", "/formas-pagamentos", json_body=payment_method_body(method))
        except Retriable as exc:
            settle(ctx, exc)
            found = find_payment_method(ctx, method.name)
            if found is None:
                raise
            return str(found["id"])
        forget(ctx, "payment_methods")
        return str(created["data"]["id"])


def push_payment_method(ctx: ConnectorContext, method: PaymentMethod, external_id: str | None) -> PushResult:
    """A payment method the source has and Bling may lack. A bound one is left as it is: a person may have set its
    fees, destino or card data in Bling since, and a PUT would replace them."""
    if external_id is not None:
        return PushResult(external_id=external_id)
    method_id = ensure_payment_method(ctx, method)
    ctx.record_remote_id(method_id)
    return PushResult(external_id=method_id)


def settle(ctx: ConnectorContext, error: Retriable) -> None:
    """Before a failed create is looked for again: a create that got no answer may still be landing on Bling's
    side, so the look-up waits for it (lock held); one Bling answered (a 5xx) is done or not, and is looked for at
    once. (The client's timeout error says "no answer in time".) The wait is twice the client's timeout and a
    second, up to 10 s: waiting only the timeout left half a second for a write delayed in transit, and on a loaded
    machine (the CI-sized chaos test) the look-up came first and a second contact was created."""
    if "no answer in time" in str(error):
        time.sleep(min(2 * options(ctx).timeout_seconds + 1.0, 10.0))


def final_consumer(ctx: ConnectorContext) -> int:
    return cached(ctx, "final_consumer", lambda: int(get(ctx, "/contatos/consumidor-final")["data"]["id"]))


# --- customers ----------------------------------------------------------------------------------------------


def find_contact(ctx: ConnectorContext, document: str) -> int | None:
    rows = get(ctx, "/contatos", {"numeroDocumento": document, "criterio": 1, "pagina": 1, "limite": 100})
    for row in rows.get("data") or []:
        if "".join(ch for ch in str(row.get("numeroDocumento", "")) if ch.isalnum()).upper() == document:
            return _known(ctx, document, int(row["id"]))
    return None


def _known(ctx: ConnectorContext, document: str, contact: int) -> int:
    ctx.cache.set(f"bling:contact:{document}", contact, CACHE_SECONDS)
    return contact


def _contact_seen(ctx: ConnectorContext, document: str) -> int | None:
    """The contact this process found or made for the document lately. A sale and its customer's own write race
    for one contact (the customers stream is written beside the sales): whichever goes second takes the first's
    contact instead of looking it up again, as the store's binding only comes once the write is done."""
    seen = ctx.cache.get(f"bling:contact:{document}")
    return int(seen) if seen else None


def contact_id(ctx: ConnectorContext, customer: Customer | None) -> int:
    """The customer's contact, linked by CPF/CNPJ and created only when Bling has none; no document means
    Bling's "Consumidor Final"."""
    if customer is None or not customer.document:
        return final_consumer(ctx)
    bound = ctx.find_bound("customers", customer.document)
    if bound:
        return int(bound)
    with ctx.lock(f"contact:{customer.document}"):
        found = _contact_seen(ctx, customer.document) or find_contact(ctx, customer.document)
        if found is not None:
            return found
        return create_contact(ctx, customer)


def create_contact(ctx: ConnectorContext, customer: Customer) -> int:
    """Create the contact (the caller holds its lock). A create that timed out may still land on Bling's side after
    the client gave up; the lock is kept while it is looked for again, so nobody creates it a second time."""
    body = mappers.contact_body(customer)
    try:
        created = request(ctx, "POST", "/contatos", json_body=body)
    except Retriable as exc:
        if not customer.document:
            raise
        settle(ctx, exc)
        found = find_contact(ctx, customer.document)
        if found is None:
            raise
        return found
    if customer.document:  # the customers stream then has nothing to write if it brings the same data
        ctx.cache.set(f"bling:contact-body:{customer.document}", _digest(body), CACHE_SECONDS)
        return _known(ctx, customer.document, int(created["data"]["id"]))
    return int(created["data"]["id"])


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def push_customer(ctx: ConnectorContext, customer: Customer, external_id: str | None) -> PushResult:
    if external_id is None and customer.document:
        with ctx.lock(f"contact:{customer.document}"):
            found = _contact_seen(ctx, customer.document) or find_contact(ctx, customer.document)
            if found is None:
                contact = str(create_contact(ctx, customer))
                ctx.record_remote_id(contact)
                return PushResult(external_id=contact)
            external_id = str(found)
    if external_id is None:
        created = request(ctx, "POST", "/contatos", json_body=mappers.contact_body(customer))
        ctx.record_remote_id(str(created["data"]["id"]))
        return PushResult(external_id=str(created["data"]["id"]))
    body = mappers.contact_body(customer)
    if customer.document and ctx.cache.get(f"bling:contact-body:{customer.document}") == _digest(body):
        return PushResult(external_id=external_id)  # a sale of this customer just created it with this data
    request(ctx, "PUT", f"/contatos/{external_id}", json_body=body)
    if customer.document:
        ctx.cache.set(f"bling:contact-body:{customer.document}", _digest(body), CACHE_SECONDS)
    return PushResult(external_id=external_id)


# --- sales --------------------------------------------------------------------------------------------------


def local_date(moment: datetime) -> date:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(TIME_ZONE)).date()


def product_ids(ctx: ConnectorContext, sale: Sale) -> dict[str, int]:
    """Bling ids of the sale's SKUs: bound ones from the store, the rest looked up by code (all stock passes)."""
    ids: dict[str, int] = {}
    missing: list[str] = []
    for item in sale.items:
        bound = ctx.find_bound("products", item.sku) or ctx.cache.get(f"bling:product:{item.sku}")
        if bound:
            ids[item.sku] = int(bound)
        elif item.sku not in missing:
            missing.append(item.sku)
    for stock_filter in (1, 0, 2):
        if not missing:
            break
        rows = get(ctx, "/produtos", {"codigos[]": missing, "criterio": 5, "filtroSaldoEstoque": stock_filter,
                                      "pagina": 1, "limite": 100}).get("data") or []
        for row in rows:
            code = str(row.get("codigo"))
            if code in missing:
                ids[code] = int(row["id"])
                ctx.cache.set(f"bling:product:{code}", ids[code], CACHE_SECONDS)
                missing.remove(code)
    for i, item in enumerate(sale.items):
        if item.sku not in ids:
            raise InvalidRecord(
                f"tenant {ctx.tenant}, sale {sale.number}: item {i + 1} has SKU {item.sku!r}, which Bling does not "
                "have", field=f"items.{i}.sku", record=sale.number,
                fix=f"Create the product {item.sku!r} in Bling (products come from Bling), or correct the item's "
                    "SKU on the point of sale.")
    return ids


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def installments(ctx: ConnectorContext, sale: Sale) -> list[dict[str, Any]]:
    """``parcelas``: the payments, capped at the sale's total (change given back in cash is not a receivable),
    split into monthly installments."""
    if not sale.payments:
        raise InvalidRecord(f"tenant {ctx.tenant}, sale {sale.number}: the sale has no payment; Bling needs one",
                            field="payments", record=sale.number,
                            fix="Record the payment on the point of sale; the next sync sends the sale.")
    first = local_date(sale.issued_at)
    remaining = _cents(sale.total)
    out: list[dict[str, Any]] = []
    for index, payment in enumerate(sale.payments):
        amount = min(_cents(payment.amount), remaining)
        remaining -= amount
        if amount <= 0:
            continue
        method = payment_method_id(ctx, payment, sale, index)
        n = payment.installments
        share = _cents(amount / n)
        for k in range(n):
            value = share if k < n - 1 else amount - share * (n - 1)
            due = first + timedelta(days=30 * k)
            out.append({"dataVencimento": due.isoformat(), "valor": value, "formaPagamento": {"id": method},
                        **({"observacoes": f"{k + 1}/{n}"} if n > 1 else {})})
    return out


def discount_percent(item: SaleItem) -> Decimal | None:
    """``itens[].desconto`` is a percentage ("Valor percentual", ``VendasItemDTO``) off ``quantidade`` x ``valor``,
    and Bling rounds the line to the cent: the shortest percentage that gives back the line's exact total, so the
    order's total is the sale's and its ``parcelas`` add up to it."""
    gross = item.quantity * item.unit_price
    if not item.discount or not gross:
        return None
    exact = item.discount / gross * 100
    wanted = _cents(item.total)
    for places in range(2, 11):
        percent = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        if _cents(gross * (1 - percent / 100)) == wanted:
            return percent.normalize()
    return exact.quantize(Decimal("1e-10"), rounding=ROUND_HALF_UP)


def order_body(ctx: ConnectorContext, sale: Sale, situation: int | None) -> dict[str, Any]:
    ids = product_ids(ctx, sale)
    day = local_date(sale.issued_at).isoformat()
    items = []
    for item in sale.items:
        percent = discount_percent(item)
        items.append({"produto": {"id": ids[item.sku]}, "codigo": item.sku, "descricao": item.name or item.sku,
                      "unidade": "UN", "quantidade": item.quantity, "valor": item.unit_price,
                      "valorLista": item.unit_price, **({"desconto": percent} if percent else {})})
    body: dict[str, Any] = {
        "numeroLoja": sale.number, "data": day, "dataSaida": day, "dataPrevista": day,
        "contato": {"id": contact_id(ctx, sale.customer)}, "itens": items, "parcelas": installments(ctx, sale),
    }
    if situation is not None:
        body["situacao"] = {"id": situation}
    loja = options(ctx).loja_id
    if loja:
        body["loja"] = {"id": loja}
    seller = ctx.resolve("sellers", sale.seller)
    if seller:
        body["vendedor"] = {"id": int(seller)}
    if sale.discount:
        body["desconto"] = {"valor": sale.discount, "unidade": "REAL"}
    if sale.freight:
        body["transporte"] = {"frete": sale.freight}
    if sale.intermediary is not None:  # the marketplace on the sale's NF-e (infIntermed)
        body["intermediador"] = {"cnpj": sale.intermediary.tax_id, "nomeUsuario": sale.intermediary.seller_id or ""}
    notes = [sale.notes] if sale.notes else []
    if sale.replaces:
        notes.append(f"Troca/devolução da venda {sale.replaces}")
    if notes:
        body["observacoes"] = " | ".join(notes)
    return body


def find_order(ctx: ConnectorContext, sale: Sale) -> dict[str, Any] | None:
    params: dict[str, Any] = {"numerosLojas[]": [sale.number], "pagina": 1, "limite": 100}
    loja = options(ctx).loja_id
    if loja:
        params["idLoja"] = loja
    for row in get(ctx, "/pedidos/vendas", params).get("data") or []:
        if str(row.get("numeroLoja")) == sale.number:
            return dict(row)
    return None


def push_sale(ctx: ConnectorContext, sale: Sale, external_id: str | None) -> PushResult:
    situation = situation_id(ctx, sale.status, sale) if sale.status else None
    current: int | None = None
    if external_id is None:
        # Only a retry after an uncertain attempt can find the order there already: a first attempt creates at once.
        found = None if ctx.first_attempt else find_order(ctx, sale)
        if found is None:
            try:
                created = request(ctx, "POST", "/pedidos/vendas", json_body=order_body(ctx, sale, situation))
            except InvalidRecord:
                # A product or contact deleted in Bling since it was looked up: look it up again on `hub retry`.
                for item in sale.items:
                    forget(ctx, f"product:{item.sku}")
                if sale.customer is not None and sale.customer.document:
                    forget(ctx, f"contact:{sale.customer.document}")
                raise
            data = created.get("data") or {}
            new_id = str(data["id"])
            ctx.record_remote_id(new_id)
            warnings = [f"Bling alerta on sale {sale.number}: {element}: {msg}"
                        for element, msg in field_messages({"fields": data.get("alertas") or []})]
            if sale.customer is not None and not sale.customer.document:
                warnings.append(f"sale {sale.number}: customer {sale.customer.name!r} has no CPF/CNPJ, so the order "
                                "is filed under Bling's Consumidor Final (Bling links contacts by document; one "
                                "created per sale would repeat). Add the document on the source to link it.")
            return PushResult(external_id=new_id, warnings=warnings)
        external_id = str(found["id"])
        ctx.record_remote_id(external_id)
        current = int((found.get("situacao") or {}).get("id") or 0) or None
    if situation is not None and situation != current:
        request(ctx, "PATCH", f"/pedidos/vendas/{external_id}/situacoes/{situation}")
    return PushResult(external_id=external_id)


# --- status transitions -------------------------------------------------------------------------------------


# The core matches the route's transition table and runs each action through ``perform`` (Bling declares
# ACTIONS in its Platform); what stays here is the one decision that needs the account: skipping an action that
# Bling's own transition manager already runs on that change.


def account_does(ctx: ConnectorContext, action: str, from_name: str, to_name: str) -> bool:
    """True when the account's own transition manager runs ``action`` on this change (so the hub must not)."""
    if not from_name:
        return False
    module = sales_module(ctx)

    def load() -> list[tuple[str, str, set[str]]]:
        names = {int(a["id"]): norm(a.get("nome")) for a in
                 get(ctx, f"/situacoes/modulos/{module}/acoes").get("data") or []}
        rules = []
        for t in get(ctx, f"/situacoes/modulos/{module}/transicoes").get("data") or []:
            if t.get("ativo", True):
                rules.append((norm((t.get("situacaoOrigem") or {}).get("nome")),
                              norm((t.get("situacaoDestino") or {}).get("nome")),
                              {names.get(int(a), "") for a in t.get("acoes") or []}))
        return rules

    wanted = ACCOUNT_ACTION_NAMES[action]
    return any(o == norm(from_name) and d == norm(to_name) and wanted in acts
               for o, d, acts in cached(ctx, "transitions", load))


def _already(name: str, text: str) -> bool:
    """Bling's refusal of a posting that exists ("O estoque já foi lançado"), or of a reversal already made ("O
    estoque não foi lançado": the hub posts before it reverses, so an earlier attempt reversed it)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.search(r"\bnao (foi|foram) lancad" if name.startswith("estornar") else r"\bja\b", plain) is not None


def perform(ctx: ConnectorContext, action: Action, sale: Sale, external_id: str) -> PushResult:
    name = action.name
    if name not in ACTIONS:
        raise Fatal(f"Bling has no action {name!r}", fix=f"Use one of: {', '.join(ACTIONS)}.")
    from_name, to_name = action.params.get("from", ""), action.params.get("to", "")
    if account_does(ctx, name, from_name, to_name):
        return PushResult(external_id=external_id, warnings=[
            f"{name} not sent for sale {sale.number}: Bling's own transition manager already does it on "
            f"{from_name} -> {to_name}"])
    path = f"/pedidos/vendas/{external_id}/{name}"
    if name == "lancar-estoque":
        deposit = deposit_id(ctx, sale.store or options(ctx).default_deposit)
        if deposit is not None:
            path += f"/{deposit}"
    answer = request(ctx, "POST", path, expect=(400,))
    if isinstance(answer, httpx.Response):
        error = error_body(answer)
        text = " ".join(m for _, m in field_messages(error)) or str(error.get("description") or error.get("message"))
        if _already(name, text):
            # An earlier attempt got through before the worker stopped: the posting exists, once.
            return PushResult(external_id=external_id, warnings=[f"{name} on sale {sale.number}: {text}"])
        raise error_for(ctx, answer, f"Bling POST {path} (tenant {ctx.tenant}, connection {ctx.connection})")
    return PushResult(external_id=external_id)
