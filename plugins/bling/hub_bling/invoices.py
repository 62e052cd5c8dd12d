"""NF-e from a Bling sale: generate once, send to SEFAZ, follow until authorized or rejected.

One NF-e per sale, whatever the retries: the note's id is recorded (``ctx.record_remote_id``) the moment Bling
creates it, and before creating one the sale itself is read, since Bling links its note (``notaFiscal``). A second
note would be rejected by SEFAZ as a duplicate with another access key (seed 000).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.errors import Fatal, InvalidRecord, RateLimited
from hub.models import FiscalProblem, Invoice, Product, Ref, Sale
from hub.sync.context import ConnectorContext, RouteView
from pydantic import ValidationError

from hub_bling.client import error_body, field_messages, get, options, request

PENDING, CANCELLED, WAITING_RECEIPT, REJECTED, AUTHORIZED, DANFE, REGISTERED, WAITING_PROTOCOL, DENIED = (
    1, 2, 3, 4, 5, 6, 7, 8, 9)
"""``situacao`` of ``/nfe`` (this numbering, not the shifted one of ContasReceberDadosOrigemDTO)."""
IN_FLIGHT = {WAITING_RECEIPT, WAITING_PROTOCOL, 10}
DONE = {AUTHORIZED, DANFE, REGISTERED}


def _note_id(ctx: ConnectorContext, sale_id: str, invoice_id: str | None) -> str:
    if invoice_id:
        return invoice_id
    order = get(ctx, f"/pedidos/vendas/{sale_id}")["data"]
    linked = (order.get("notaFiscal") or {}).get("id")
    if linked:
        ctx.record_remote_id(str(linked))
        return str(linked)
    created = request(ctx, "POST", f"/pedidos/vendas/{sale_id}/gerar-nfe")
    data = created.get("data", created) if isinstance(created, dict) else {}
    note = str(data["idNotaFiscal"])
    ctx.record_remote_id(note)
    return note


def _rejected(ctx: ConnectorContext, sale: Sale, detail: str) -> InvalidRecord:
    return InvalidRecord(
        f"tenant {ctx.tenant}, sale {sale.number}: the NF-e was rejected: {detail}", field="invoice",
        record=sale.number,
        fix="Correct what SEFAZ/Bling named (product NCM/origem in Bling, the customer's address or CPF/CNPJ), "
            "then run `hub retry TENANT`: the same note is sent again, never a second one.")


def emit(ctx: ConnectorContext, sale: Sale, sale_id: str, invoice_id: str | None) -> Invoice:
    note = _note_id(ctx, sale_id, invoice_id)
    data = get(ctx, f"/nfe/{note}")["data"]
    status = int(data.get("situacao") or PENDING)
    if status in (PENDING, REJECTED):
        answer = request(ctx, "POST", f"/nfe/{note}/enviar", expect=(400,))
        if not isinstance(answer, dict):
            error = error_body(answer)
            detail = "; ".join(f"{e}: {m}" for e, m in field_messages(error)) or str(error.get("description"))
            raise _rejected(ctx, sale, detail)
        data = get(ctx, f"/nfe/{note}")["data"]
        status = int(data.get("situacao") or PENDING)
    if status == REJECTED:
        raise _rejected(ctx, sale, "Bling shows the note as Rejeitada")
    if status in (CANCELLED, DENIED):
        raise Fatal(f"tenant {ctx.tenant}, sale {sale.number}: NF-e {note} is "
                    f"{'cancelled' if status == CANCELLED else 'denied (denegada)'}",
                    fix="Handle this note in Bling; the hub will not issue another one for the sale.")
    if status not in DONE:
        raise RateLimited(f"NF-e {note} of sale {sale.number} is waiting for SEFAZ",
                          retry_after=options(ctx).nfe_poll_seconds,
                          fix="Nothing to do: the hub checks again shortly.")
    return invoice(ctx, sale, note, data)


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
