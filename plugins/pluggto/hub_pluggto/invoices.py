"""Plugg.to as the NF-e issuer (``emit_invoice``) and its notes read as records (``pull_invoices``).

Plugg.to's manual for Amazon "Enviado pela Amazon" (FBA Onsite): Plugg.to issues each order's NF-e with the
seller's A1 certificate and sends it to Amazon; a note is rejected for missing fiscal attributes (NCM, CEST, NBM),
an incomplete customer address, an expired channel token or wrong tax data, and the seller corrects and resends it.

The invoice resource's path is not public (only its fields are, on the "create or update an invoice" page), so
``POST /invoices {reference_order}``, ``GET /invoices[/{id}]`` and ``POST /invoices/{id}/resend`` are assumptions
(README). One note per order, whatever the retries: the note's id is recorded (``ctx.record_remote_id``) as soon as
Plugg.to answers, and without one the order's notes are looked up first, under the connection's lock. A
rejected note is never replaced: ``hub retry`` after the fix resends the same note. A rejection read while the hub
polls its own submission (Plugg.to answers ``processing`` first) is reported with its causes, never resent as is
(resending on every poll would send the same faulty note to SEFAZ until someone noticed); which submission the hub
is waiting for is kept in the connection's cache, so at worst a worker that did not see the submission resends the
note once before reporting it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from hub import FUTURE_TOLERANCE, ConnectorContext, Incoming, Page, Rejected
from hub.errors import Fatal, InvalidRecord, NotFound, RateLimited, Retriable
from hub.models import Invoice, Ref, Sale
from pydantic import ValidationError

from hub_pluggto import mappers
from hub_pluggto.client import API, body_of, options, pages, unwrap, where

FIXES = {
    "missing_fiscal_attributes": "Fill the NCM, CEST and NBM of the product on the source (the ERP) and sync the "
                                 "products to Plugg.to (Plugg.to does not issue a note without all three)",
    "incomplete_address": "Complete the customer's address (street, number, neighborhood, city, state and CEP) on "
                          "the order, on its channel or in the Plugg.to panel",
    "token_expired": "Renew the channel's integration token in the Plugg.to panel (Amazon's lasts one year) and "
                     "update the route option channel_token_expires_at",
    "tax_data": "Correct the tax data named (NCM 8 digits, CEST 7, NBM 8, origem 0-8, the buyer's CPF/CNPJ) on "
                "the source and sync it to Plugg.to",
}
"""The fix for each of the manual's four rejection causes (the sandbox's ``issues[].code``, assumed)."""
RESEND = " Then run `hub retry TENANT`: the same note is resent, never a second one."


def _path(note_id: str) -> str:
    return f"/invoices/{quote(note_id, safe='')}"


def _note(ctx: ConnectorContext, note_id: str, sale: Sale) -> dict[str, Any]:
    try:
        return unwrap(body_of(API.get(ctx, _path(note_id), record=f"NF-e of sale {sale.number}")), "Invoice")
    except NotFound:
        raise Fatal(f"pluggto ({where(ctx)}): the NF-e {note_id} Plugg.to issued for sale {sale.number} is gone",
                    fix="Check the order's notes in the Plugg.to panel; the hub does not issue another one by "
                        "itself (it would be a second NF-e for the sale).") from None


def _existing(ctx: ConnectorContext, order_id: str) -> dict[str, Any] | None:
    response = API.get(ctx, "/invoices", params={"reference_order": order_id, "limit": 10},
                       record=f"NF-e of order {order_id}")
    body = body_of(response)
    rows = body.get("result") if isinstance(body, dict) else None
    for row in rows if isinstance(rows, list) else []:
        note = unwrap(row, "Invoice")
        if str(note.get("reference_order")) == order_id and note.get("nfe_status") != "canceled":
            return note
    return None


AWAITING = "pluggto:nfe:awaiting:{}"
"""Cache key: the hub sent this note to SEFAZ (created or resent it) and has not seen SEFAZ's verdict yet."""
AWAITING_TTL = 7 * 86400.0


def emit(ctx: ConnectorContext, sale: Sale, order_id: str, invoice_id: str | None) -> Invoice:
    submitted = False
    if invoice_id:
        note = _note(ctx, invoice_id, sale)
    else:
        with ctx.lock(f"pluggto:nfe:{order_id}"):
            found = _existing(ctx, order_id)
            if found is None:
                found = unwrap(body_of(API.post(ctx, "/invoices", json={"reference_order": order_id,
                                                                        "nfe_type": "sale"},
                                                record=f"NF-e of sale {sale.number}")), "Invoice")
                submitted = True
            note = found
            ctx.record_remote_id(str(note["id"]))
    awaiting = AWAITING.format(note["id"])
    if submitted:
        ctx.cache.set(awaiting, True, ttl=AWAITING_TTL)
    elif note.get("nfe_status") == "rejected":
        if ctx.cache.get(awaiting):
            # The verdict on the hub's own submission, read while polling: reported (quarantined with every cause
            # and fix), never resent as is; `hub retry` after the fix resends it.
            ctx.cache.forget(awaiting)
            return _settled(ctx, sale, note)
        # Read rejected on a later attempt (``hub retry`` after the fix): the same note goes to SEFAZ again.
        response = API.post(ctx, f"{_path(str(note['id']))}/resend", record=f"NF-e of sale {sale.number}",
                            expect=(400,))
        note = _note(ctx, str(note["id"]), sale) if response.status_code == 400 else \
            unwrap(body_of(response), "Invoice")
        ctx.cache.set(awaiting, True, ttl=AWAITING_TTL)
    if note.get("nfe_status") != "processing":
        ctx.cache.forget(awaiting)
    return _settled(ctx, sale, note)


def _settled(ctx: ConnectorContext, sale: Sale, note: dict[str, Any]) -> Invoice:
    status = str(note.get("nfe_status") or "processing")
    if status == "authorized":
        return _with_xml(ctx, invoice_in(note, sale_ref=Ref(external_id=sale.number)), sale)
    if status == "rejected":
        issues = [i for i in note.get("issues") or [] if isinstance(i, dict)]
        raise rejection(ctx, sale, str(note.get("id")), issues)
    if status == "canceled":
        raise Fatal(f"pluggto ({where(ctx)}): the NF-e {note.get('id')} of sale {sale.number} is canceled",
                    fix="Handle the note in the Plugg.to panel; the hub will not issue another one for the sale.")
    raise RateLimited(f"pluggto ({where(ctx)}): the NF-e {note.get('id')} of sale {sale.number} is {status}, "
                      "waiting for SEFAZ", retry_after=options(ctx).nfe_poll_seconds,
                      fix="Nothing to do: the hub reads the note again shortly (Plugg.to - Amazon - SEFAZ can take "
                          "up to an hour).")


def _with_xml(ctx: ConnectorContext, invoice: Invoice, sale: Sale) -> Invoice:
    """The note with its authorized XML itself, downloaded from the link Plugg.to gives (``files``, type
    ``xml_authorization``; a published file, fetched without the API token): whoever the note goes to next
    (Amazon's ``submitInvoice`` takes the file's content and its MD5) gets the document, not a link."""
    link = invoice.xml or ""
    if not link.startswith(("https://", "http://")):
        return invoice
    what = f"the XML of NF-e {invoice.number or invoice.access_key} (sale {sale.number})"
    try:
        response = ctx.http.get(link, headers={"Accept": "application/xml"})
    except httpx.HTTPError as exc:
        raise Retriable(f"pluggto ({where(ctx)}): {what} could not be downloaded from {link}: "
                        f"{type(exc).__name__}", fix="Nothing to do if it passes: the hub tries again.") from None
    text = response.text
    if response.status_code >= 500 or response.status_code == 429:
        raise Retriable(f"pluggto ({where(ctx)}): {what}: {link} answered {response.status_code}",
                        fix="Nothing to do if it passes: the hub tries again.")
    if response.status_code != 200 or "<" not in text:
        raise Fatal(f"pluggto ({where(ctx)}): {what}: {link} answered {response.status_code} without the XML",
                    fix="Open the note in the Plugg.to panel (Pedidos > the order > Nota fiscal) and check that "
                        "its XML is published; then `hub retry TENANT`.")
    return invoice.model_copy(update={"xml": text})


def _field(issue: dict[str, Any], sale: Sale) -> str:
    """Plugg.to's field of an issue, in the canonical sale's terms where there is one."""
    raw = str(issue.get("field") or "")
    code = issue.get("code")
    if raw.startswith("items[") and "]" in raw:
        index = raw[6:raw.index("]")]
        sku = sale.items[int(index)].sku if index.isdigit() and int(index) < len(sale.items) else "?"
        return f"items[{index}] ({sku}) fiscal.{raw.split('.', 1)[1]}" if "." in raw else f"items[{index}]"
    if code == "incomplete_address":
        return "customer.addresses[0]"
    if code == "token_expired":
        return "channel_token"
    if raw.startswith("payer_"):
        return "customer.document"
    return raw or "invoice"


def rejection(ctx: ConnectorContext, sale: Sale, note_id: str, issues: list[dict[str, Any]]) -> InvalidRecord:
    """Every cause Plugg.to named, each with its fix; the record is quarantined until ``hub retry``."""
    if not issues:
        issues = [{"code": "tax_data", "message": "rejected without a reason", "field": ""}]
    causes = "; ".join(f"{_field(i, sale)}: {i.get('message')} ({i.get('code')})" for i in issues)
    fixes = list(dict.fromkeys(FIXES.get(str(i.get("code")), "Correct what Plugg.to named") for i in issues))
    return InvalidRecord(f"pluggto ({where(ctx)}): the NF-e {note_id} of sale {sale.number} was rejected: {causes}",
                         field=_field(issues[0], sale), record=f"sale {sale.number}",
                         fix=". ".join(fixes) + "." + RESEND)


def invoice_in(note: dict[str, Any], sale_ref: Ref | None = None) -> Invoice:
    """A Plugg.to note as the canonical Invoice; ``sale`` names the Plugg.to order (``name``: the channel's own
    order number, when the note carries it)."""
    status = {"authorized": "authorized", "rejected": "rejected", "canceled": "cancelled"}.get(
        str(note.get("nfe_status")), "pending")
    xml = next((f.get("url") for f in note.get("files") or [] if isinstance(f, dict)
                and f.get("type") == "xml_authorization"), None)
    issues = [str(i.get("message")) for i in note.get("issues") or [] if isinstance(i, dict)]
    ref = sale_ref or (Ref(external_id=str(note["reference_order"]), name=note.get("original_id") or None)
                       if note.get("reference_order") else None)
    return Invoice(number=str(note.get("number") or "") or None, series=str(note.get("nfe_serie") or "") or None,
                   access_key=note.get("nfe_key") or None, status=status,  # type: ignore[arg-type]
                   issued_at=mappers.parse_time(note.get("nfe_date")), sale=ref, xml=xml,
                   rejection_reason="; ".join(issues) or None)


def pull(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    """The notes Plugg.to issued, by change date: authorized and canceled ones (a note still processing or
    rejected is not an invoice yet; its change date moves when SEFAZ settles it, so a later run reads it)."""
    start = mappers.parse_time(since) if since else None
    params: dict[str, Any] = {"orderby": "modified", "orderdirection": "asc"}
    if start is not None:
        params["modified"] = f"{start:%Y-%m-%d}to{datetime.now(UTC) + timedelta(days=1):%Y-%m-%d}"
    newest = start
    horizon = datetime.now(UTC).replace(tzinfo=None) + FUTURE_TOLERANCE
    ctx.scratch["pluggto:pulling"] = True
    for paged in pages(ctx, "/invoices", "Invoice", params, stream="invoices"):
        records: list[Incoming | Rejected] = []
        for raw in paged.records:
            stamp = mappers.parse_time(raw.get("modified"))
            if start is not None and stamp is not None and stamp < start:
                continue
            if stamp is not None and stamp <= horizon and (newest is None or stamp > newest):
                newest = stamp
            if raw.get("nfe_status") not in ("authorized", "canceled"):
                continue
            try:
                records.append(Incoming(external_id=str(raw["id"]), data=invoice_in(raw), updated_at=stamp))
            except (ValidationError, ValueError) as exc:
                records.append(Rejected(external_id=str(raw.get("id")), field="nfe_key", raw={"id": raw.get("id")},
                                        reason=f"pluggto invoice {raw.get('id')}: {str(exc).splitlines()[0]}",
                                        fix="Check the note in the Plugg.to panel; report a wrong key to Plugg.to."))
        cursor = mappers.format_time(newest) if paged.last and newest is not None else since
        yield Page(records=records, cursor=cursor)
