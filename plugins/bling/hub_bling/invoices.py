"""NF-e from a Bling sale: generate once, send once, follow its situação until SEFAZ settles it.

One NF-e per sale, whatever the retries: before creating a note the sale itself is read, since Bling links its
note (``notaFiscal``); a second note would be rejected by SEFAZ as a duplicate with another access key.

One send per note: the note's id is recorded (``ctx.record_remote_id``) once Bling has taken it for sending, and a
recorded note is only read from then on. Its situação cannot tell by itself, since a sent note may sit at 1
(Pendente) in Bling's queue before SEFAZ takes it. A note found linked to the sale but never recorded is sent
only while Pendente (and Bling's "already sent" answer counts as sent). Only a Rejeitada note is sent again: that
is how a corrected note goes back to SEFAZ.
"""

from __future__ import annotations

import time
import unicodedata
from datetime import datetime
from typing import Any

from hub import ConnectorContext, RouteView
from hub.errors import Fatal, InvalidRecord, RateLimited
from hub.models import FiscalProblem, Invoice, Product, Ref, Sale
from pydantic import ValidationError

from hub_bling.client import error_body, field_messages, get, options, request

SITUACOES = {1: "Pendente", 2: "Cancelada", 3: "Aguardando recibo", 4: "Rejeitada", 5: "Autorizada",
             6: "Emitida DANFE", 7: "Registrada", 8: "Aguardando protocolo", 9: "Denegada", 10: "Consulta situação",
             11: "Bloqueada"}
"""``situacao`` of ``/nfe`` as Bling documents it (not the shifted numbering of ContasReceberDadosOrigemDTO)."""
(PENDING, CANCELLED, WAITING_RECEIPT, REJECTED, AUTHORIZED, DANFE, REGISTERED, WAITING_PROTOCOL, DENIED, CHECKING,
 BLOCKED) = range(1, 12)
WAITING = {PENDING, WAITING_RECEIPT, WAITING_PROTOCOL, CHECKING}
"""Situações of a sent note that SEFAZ has not settled yet: polled."""
DONE = {AUTHORIZED, DANFE, REGISTERED}


def _named(status: int) -> str:
    return f"{SITUACOES.get(status, 'unknown')} (situação {status})"


def _linked(ctx: ConnectorContext, sale_id: str) -> str | None:
    order = get(ctx, f"/pedidos/vendas/{sale_id}")["data"]
    linked = (order.get("notaFiscal") or {}).get("id")
    return str(linked) if linked else None


def _rejected(ctx: ConnectorContext, sale: Sale, detail: str) -> InvalidRecord:
    return InvalidRecord(
        f"tenant {ctx.tenant}, sale {sale.number}: the NF-e was rejected: {detail}", field="invoice",
        record=sale.number,
        fix="Correct what SEFAZ/Bling named (product NCM/origem in Bling, the customer's address or CPF/CNPJ), "
            "then run `hub retry TENANT`: the same note is sent again, never a second one.")


def _already_sent(text: str) -> bool:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "ja foi enviada" in plain


def _send(ctx: ConnectorContext, sale: Sale, note: str) -> dict[str, Any]:
    """``POST /nfe/{id}/enviar``, then the note as Bling shows it once SEFAZ authorized it (the answer carries the
    XML then). The id is recorded as soon as Bling took it."""
    answer = request(ctx, "POST", f"/nfe/{note}/enviar", expect=(400,))
    if not isinstance(answer, dict):
        error = error_body(answer)
        fields = field_messages(error)
        detail = "; ".join(f"{e}: {m}" for e, m in fields) or str(error.get("description"))
        if not _already_sent(" ".join(m for _, m in fields) or detail):
            ctx.record_remote_id(note)
            raise _rejected(ctx, sale, detail)
    ctx.record_remote_id(note)
    if isinstance(answer, dict) and not (answer.get("data") or {}).get("xml"):
        # The answer carries the XML once SEFAZ authorized the note; without it SEFAZ still holds the note, and
        # reading it now would only say so (a call of the account's 3 a second spent on every note).
        return {"situacao": PENDING}
    data: dict[str, Any] = get(ctx, f"/nfe/{note}")["data"]
    return data


def emit(ctx: ConnectorContext, sale: Sale, sale_id: str, invoice_id: str | None) -> Invoice:
    sent = invoice_id is not None
    note = invoice_id or _linked(ctx, sale_id)
    data: dict[str, Any]
    if note is None:
        created = request(ctx, "POST", f"/pedidos/vendas/{sale_id}/gerar-nfe")
        body = created.get("data", created) if isinstance(created, dict) else {}
        note = str(body["idNotaFiscal"])
        data = {"situacao": PENDING}  # generated just now: nothing to read before sending it
    else:
        data = get(ctx, f"/nfe/{note}")["data"]
    status = int(data.get("situacao") or PENDING)
    if status == REJECTED or (status == PENDING and not sent):
        data = _send(ctx, sale, note)
        status = int(data.get("situacao") or PENDING)
    elif not sent:
        ctx.record_remote_id(note)  # linked to the sale and already past Pendente: it was sent
    return _settled(ctx, sale, note, status, data)


def _settled(ctx: ConnectorContext, sale: Sale, note: str, status: int, data: dict[str, Any]) -> Invoice:
    """The invoice of an authorized note; a wait while SEFAZ works; or the error that ends it, with its fix."""
    where = f"tenant {ctx.tenant}, sale {sale.number}: NF-e {note} is {_named(status)}"
    if status in DONE:
        ctx.cache.forget(f"nfe-waiting:{note}")
        return invoice(ctx, sale, note, data)
    if status in WAITING:
        raise RateLimited(f"NF-e {note} of sale {sale.number} is {_named(status)}, waiting for SEFAZ",
                          retry_after=_next_read(ctx, note),
                          fix="Nothing to do: the hub reads the note again shortly (it is never sent twice).")
    if status == REJECTED:
        raise _rejected(ctx, sale, f"Bling shows NF-e {note} as {_named(status)}")
    if status == BLOCKED:
        raise InvalidRecord(
            f"{where} in Bling: Bling holds it and does not send it to SEFAZ", field="invoice", record=sale.number,
            fix=f"Open NF-e {note} in Bling (Vendas > Notas Fiscais) to see why it is blocked and release it, then "
                "run `hub retry TENANT`: the hub follows the same note and never issues a second one.")
    if status == DENIED:
        raise Fatal(f"{where}: SEFAZ denied its use (the issuer's or the recipient's registration is irregular); "
                    "the number is spent and the note cannot be sent again",
                    fix="Check the recipient's CPF/CNPJ and state registration with SEFAZ and handle the sale in Bling "
                        "(Vendas > Notas Fiscais); the hub will not issue another note for it.")
    if status == CANCELLED:
        raise Fatal(f"{where}", fix="Handle this note in Bling; the hub will not issue another one for the sale.")
    raise Fatal(f"{where}: a situação the hub does not know",
                fix="Check the note in Bling (Vendas > Notas Fiscais) and report the situação to the hub's authors.")


FIRST_READ_SECONDS = 2.0
WEBHOOK_BACKSTOP_SECONDS = 15.0
"""The first read of a waiting note when the account's invoice webhooks arrive: a read in case the one for this
note was lost."""
INVOICE_EVENTS = ("invoice.updated", "invoice.created", "consumer_invoice.updated")
"""Bling's events that announce a note's new situação (developer portal, "Webhooks")."""


def _next_read(ctx: ConnectorContext, note: str) -> float:
    """When to read a note SEFAZ still holds: 2 s after it was sent, then half the time it has waited so far, up to
    ``nfe_poll_seconds``. SEFAZ answers most notes in seconds, so a quick answer is seen within about a second of
    it; in contingency it takes up to an hour (Bling's "Enviado pela Amazon" manual), and reads that spread out
    keep a backlog of such notes from spending the account's 3 requests a second. The start is remembered per
    process; another worker that picks the note up starts over at 2 s, which only costs a read or two.

    When the account's invoice webhooks arrive (one came in the last hour), the event that SEFAZ settled the note
    wakes the wait, so the reads are only a backstop: the first after 15 s, and they spread out from there."""
    key = f"nfe-waiting:{note}"
    now = time.time()
    since = ctx.cache.get(key)
    if not isinstance(since, float):
        since = now
        ctx.cache.set(key, since, ttl=6 * 3600.0)
    first = WEBHOOK_BACKSTOP_SECONDS if ctx.webhooks_arrive(*INVOICE_EVENTS) else FIRST_READ_SECONDS
    return min(options(ctx).nfe_poll_seconds, max(first, (now - since) / 2))


def invoice(ctx: ConnectorContext, sale: Sale, note: str, data: dict[str, Any]) -> Invoice:
    try:
        issued = datetime.fromisoformat(str(data["dataEmissao"])) if data.get("dataEmissao") else None
        return Invoice(number=str(data.get("numero") or ""), series=str(data.get("serie") or ""),
                       access_key=data.get("chaveAcesso"), status="authorized", issued_at=issued,
                       total=data.get("valorNota"), sale=Ref(external_id=sale.number), xml=data.get("xml"))
    except ValidationError as exc:
        raise InvalidRecord(f"tenant {ctx.tenant}, sale {sale.number}: Bling's NF-e {note} is not valid: "
                            f"{exc.errors()[0]['msg']}", field="access_key", record=sale.number,
                            fix="Check the note in Bling (Notas Fiscais); report it to Bling if the key is wrong.") \
            from None


def problems(sale: Sale, route: RouteView, products: dict[str, Product]) -> list[FiscalProblem]:
    """Bling's own rules, checked before a note is attempted (the shared rules are the core's default plugin)."""
    if route.sink.platform != "bling":
        return []
    record = f"sale {sale.number}"
    found: list[FiscalProblem] = []
    if sale.customer is None or not sale.customer.document:
        found.append(FiscalProblem(record=record, field="customer.document", platform="bling",
                                   problem="an NF-e needs the buyer's CPF/CNPJ",
                                   fix="Identify the customer (with CPF/CNPJ and address) on the sale."))
    elif not sale.customer.addresses:
        found.append(FiscalProblem(record=record, field="customer.addresses", platform="bling",
                                   problem="an NF-e needs the buyer's address",
                                   fix=f"Add a complete address to customer {sale.customer.name}."))
    for i, item in enumerate(sale.items):
        if item.sku not in products:
            found.append(FiscalProblem(record=record, field=f"items[{i}] ({item.sku})", platform="bling",
                                       problem="the product is not in the store, so its NCM/origem are unknown",
                                       fix="Sync the products from Bling before issuing invoices."))
    return found
