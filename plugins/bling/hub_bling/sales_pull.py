"""Bling as a source of sales: the orders changed since the cursor, with their situação by name.

``GET /pedidos/vendas`` filters on ``dataAlteracaoInicial``/``dataAlteracaoFinal`` ("YYYY-MM-DD HH:MM:SS", Bling's
local time, minute granularity) and lists header data only (``VendasDadosBaseDTO``: no items, no parcelas), so each
changed order costs one ``GET /pedidos/vendas/{id}``: a list call per 100 orders plus a detail per order, and the
lookups (situações, formas de pagamento, Consumidor Final) once per ten minutes per connection. The window ends
at the run's start, so orders changed while it runs are left to the next run, which starts ``overlap_minutes``
early (a clock skew between Bling and the hub costs a re-read, never a lost change). A first sync reads the
orders changed in the last ``sales_history_days``: every order ever made would cost a call each.

The sale's number is Bling's ``numero`` (channel ``bling``): it is always there and unique in the account, while
``numeroLoja`` is empty on an order typed into Bling and repeats across lojas (each marketplace numbers its own).
An order the hub pushed into Bling is bound to its Bling id already, so this pull reaches that same record
through the binding whatever the number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from hub import ConnectorContext, Incoming, Page, Rejected
from hub.errors import NotFound

from hub_bling import mappers
from hub_bling.catalog import STAMP, _finished, _rejected, _state, pages
from hub_bling.client import options, read
from hub_bling.sales import cached, cached_find, forget, norm

LOOKUP = "pull:"
"""Cache keys of the pull's lookups (read with the pull's retried reads, unlike the outbox's)."""


def _module(ctx: ConnectorContext) -> int:
    def load() -> int:
        for module in read(ctx, "/situacoes/modulos").get("data") or []:
            if norm(module.get("nome")) == "vendas":
                return int(module["id"])
        return 0

    return cached(ctx, f"{LOOKUP}module", load)


def _situations(ctx: ConnectorContext) -> dict[int, str]:
    module = _module(ctx)
    rows = read(ctx, f"/situacoes/modulos/{module}").get("data") or [] if module else []
    return {int(s["id"]): str(s.get("nome") or s["id"]) for s in rows}


def situation_name(ctx: ConnectorContext, situation: int) -> str | None:
    """The name of a sales situação by id (ids differ per account; a situação created since is read again)."""
    return cached_find(ctx, f"{LOOKUP}situations", lambda: _situations(ctx), lambda names: names.get(situation))


def situation_names(ctx: ConnectorContext) -> dict[str, str]:
    """The account's sales situações by name, as the statuses of its orders carry them."""
    return {name: name for name in cached(ctx, f"{LOOKUP}situations", lambda: _situations(ctx)).values()}


def _methods(ctx: ConnectorContext, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Formas de pagamento by id (read again once when an order names one created since)."""
    def load() -> dict[str, dict[str, Any]]:
        return {str(m["id"]): m for paged in pages(ctx, "/formas-pagamentos", "payment_methods")
                for m in paged.records}

    found = cached(ctx, f"{LOOKUP}payment_methods", load)
    if wanted - set(found):
        forget(ctx, f"{LOOKUP}payment_methods")
        found = cached(ctx, f"{LOOKUP}payment_methods", load)
    return found


def _final_consumer(ctx: ConnectorContext) -> int | None:
    def load() -> int | None:
        try:
            return int(read(ctx, "/contatos/consumidor-final")["data"]["id"])
        except NotFound:
            return None

    return cached(ctx, f"{LOOKUP}final_consumer", load)


def _window(ctx: ConnectorContext, state: dict[str, Any]) -> dict[str, Any]:
    started = datetime.strptime(state["started"], STAMP)
    since = state.get("since") or (started - timedelta(days=options(ctx).sales_history_days)).strftime(STAMP)
    return {"dataAlteracaoInicial": since, "dataAlteracaoFinal": state["started"]}


def _order(ctx: ConnectorContext, order_id: int) -> Incoming | Rejected | None:
    try:
        raw = read(ctx, f"/pedidos/vendas/{order_id}")["data"]
    except NotFound:
        return None  # deleted between the list and the detail
    ext = str(order_id)
    try:
        situation = int((raw.get("situacao") or {}).get("id") or 0)
        status = situation_name(ctx, situation)
        if status is None:
            raise mappers.FieldError("status", f"situação {situation} is not one of the account's sales situações")
        methods = _methods(ctx, {str((p.get("formaPagamento") or {}).get("id")) for p in raw.get("parcelas") or []})
        return Incoming(external_id=ext, data=mappers.sale(raw, status, methods, _final_consumer(ctx)))
    except Exception as exc:  # whatever one order raises costs that order only
        generic = _rejected("sales", ext, exc, {"id": raw.get("id")})
        return Rejected(external_id=ext, field=generic.field, raw=generic.raw,
                        reason=f"Bling pedido de venda {raw.get('numero')} (id {ext}): "
                               f"{generic.reason.split(': ', 1)[-1]}",
                        fix=f"Correct {generic.field or 'the order'} of pedido de venda {raw.get('numero')} in Bling "
                            "(Vendas > Pedidos de venda); the next sync picks it up.")


def pull_sales(ctx: ConnectorContext, since: str | None) -> Iterator[Page]:
    state = _state(since)
    window = _window(ctx, state)
    state = {**state, "since": window["dataAlteracaoInicial"]}
    for paged in pages(ctx, "/pedidos/vendas", "sales", window, start=int(state.get("page", 1))):
        records: list[Incoming | Rejected] = []
        for order_id in dict.fromkeys(int(row["id"]) for row in paged.records):
            if not ctx.carries("sales", str(order_id)):
                continue  # a status-only route takes only orders the hub exchanged: no detail call for the rest
            record = _order(ctx, order_id)
            if record is not None:
                records.append(record)
        yield Page(records=records, cursor=_finished(ctx, state) if paged.last
                   else json.dumps({**state, "page": paged.next}))
