"""Running one outbox operation: claim it, call the sink's hook, record the result. Safe to run twice.

The idempotency key was committed with the operation before any call; the remote id is committed the moment a
plugin reports it (``ctx.record_remote_id``) and again with the result. A crash anywhere leaves the row
``running`` with a lease; once the lease lapses the relay hands it out again and the plugin's search-before-create
and idempotency key make the second call land on the same remote record.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import case, delete, or_, select, text, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from hub.errors import (
    AuthExpired,
    AuthRevoked,
    Fatal,
    HubError,
    InvalidRecord,
    LeaseLost,
    NotFound,
    QuotaExhausted,
    RateLimited,
    Retriable,
)
from hub.models import Action, Canonical, Invoice, Product, Ref, Sale, StockLevel
from hub.privacy import mask_documents
from hub.registry import Registry
from hub.runs import CURRENT_RUN
from hub.store.engine import utcnow
from hub.store.schema import Binding, Connection, Operation, Record, Route
from hub.store.schema import WebhookEvent as SeenEvent
from hub.streams import known_tables, stream_spec
from hub.sync.context import ConnectorContext, RouteView
from hub.sync.fairness import WAITING
from hub.sync.ingest import enqueue, operation_row, quarantine
from hub.sync.loading import (
    Runtime,
    make_context,
    pause_for_quota,
    refresh_after_expiry,
    route_view,
    write_calls,
)

MAX_DEPENDENCY_WAITS = 30
WAITS_FOR_BINDING = ("perform_action", "emit_invoice")
EARLIER_WRITE_BACKSTOP = 5.0
"""Seconds a write queued behind an earlier write of the same record sleeps. The earlier write's end wakes it at
once (:func:`_wake_followers`); this only bounds a wake-up lost to a race. (A fixed 0.2 s retry made thousands of
actions queued behind their sales' pushes spin through the workers, starving the pushes themselves.)"""


def due_filter(now: Any) -> Any:
    return or_(
        (Operation.state == "pending") & (Operation.available_at <= now),
        (Operation.state == "running") & (Operation.lease_until < now),
    )


def apply_mappings(sale: Sale, view: RouteView) -> Sale:
    """Translate payment methods, status and store through the route's DE-PARA; a missing key is refused. A route
    that only updates the status translated it as it read it (:func:`hub.sync.ingest.ingest_updates`)."""
    where = f"tenant {view.tenant}, route {view.name}, sale {sale.number}"
    updates: dict[str, Any] = {}
    methods = view.mappings.get("payment_methods")
    if methods is not None:
        payments = []
        for i, payment in enumerate(sale.payments):
            if payment.method not in methods:
                raise InvalidRecord(
                    f"{where}: payment method {payment.method!r} has no DE-PARA entry", field=f"payments.{i}.method",
                    fix=f"Add {payment.method!r} under routes.{view.name}.mappings.payment_methods and re-apply.")
            payments.append(payment.model_copy(update={"method": methods[payment.method]}))
        updates["payments"] = payments
    statuses = view.mappings.get("statuses")
    if statuses is not None and "status" not in view.updates.get("sales", ()):  # that route maps it when it reads
        if sale.status not in statuses:
            raise InvalidRecord(f"{where}: status {sale.status!r} has no mapping", field="status",
                                fix=f"Add {sale.status!r} under routes.{view.name}.mappings.statuses and re-apply.")
        updates["status"] = statuses[sale.status]
    stores = view.mappings.get("stores")
    if stores is not None and sale.store is not None:
        if sale.store not in stores:
            raise InvalidRecord(f"{where}: store {sale.store!r} has no mapping", field="store",
                                fix=f"Map store {sale.store!r} to a deposit under routes.{view.name}.mappings.stores.")
        updates["store"] = stores[sale.store]
    return sale.model_copy(update=updates) if updates else sale


def map_stock(level: StockLevel, view: RouteView) -> StockLevel:
    """Translate the warehouse through the route's ``stores`` table, so the balances of several warehouses land
    on the sink's warehouses (Bling: depósitos) they are mapped to, instead of on one another."""
    stores = view.mappings.get("stores")
    if stores is None:
        return level
    if level.warehouse not in stores:
        raise InvalidRecord(
            f"tenant {view.tenant}, route {view.name}, stock of SKU {level.sku}: warehouse {level.warehouse!r} has "
            "no mapping", field="warehouse",
            fix=f"Map warehouse {level.warehouse!r} to the sink's warehouse under routes.{view.name}.mappings.stores "
                "and re-apply.")
    return level.model_copy(update={"warehouse": stores[level.warehouse]})


def map_declared(record: Canonical, stream: str, view: RouteView, registry: Registry) -> Canonical:
    """Translate the fields that plugin-declared DE-PARA tables (``Platform.mapping_tables``) name for this
    stream, for each such table the route has; a value missing from a table is refused, never guessed."""
    declared = known_tables(registry, [view.source.platform, view.sink.platform])
    updates: dict[str, Any] = {}
    for name, table in declared.items():
        values = view.mappings.get(name)
        if values is None or name in ("payment_methods", "statuses", "stores") or table.stream != stream \
                or not table.field or not hasattr(record, table.field):
            continue
        value = getattr(record, table.field)
        if value is None:
            continue
        if str(value) not in values:
            raise InvalidRecord(
                f"tenant {view.tenant}, route {view.name}, {stream} {record.natural_key() or ''}: {table.field} "
                f"{value!r} has no entry in the {name} table", field=table.field,
                fix=f"Add {str(value)!r} under routes.{view.name}.mappings.{name} ({table.description}) and "
                    "re-apply.")
        updates[table.field] = values[str(value)]
    return record.model_copy(update=updates) if updates else record


def translate(record: Canonical, stream: str, view: RouteView, registry: Registry) -> Canonical:
    """The record in the sink's vocabulary: every DE-PARA table of the route that applies to it."""
    if isinstance(record, Sale):
        record = apply_mappings(record, view)
    elif isinstance(record, StockLevel):
        record = map_stock(record, view)
    return map_declared(record, stream, view, registry)


def backoff(attempts: int, cap: float) -> float:
    return min(cap, 2.0 ** min(attempts, 20)) * random.uniform(0.75, 1.25)


def execute(rt: Runtime, op_id: int) -> str:
    """Run operation ``op_id`` if it is due and nobody holds it; return its state afterwards."""
    now = utcnow()
    run = CURRENT_RUN.get()  # a run that runs it makes it its own; a worker leaves it to the run that queued it
    with rt.store.begin() as s:
        claimed = s.execute(  # type: ignore[attr-defined]
            update(Operation).where(Operation.id == op_id, due_filter(now))
            .values(state="running", lease_until=now + timedelta(seconds=rt.lease_seconds),
                    attempts=Operation.attempts + 1, updated_at=now, **({} if run is None else {"run_id": run}))
        ).rowcount
        op = s.get(Operation, op_id)
        if op is None:
            return "missing"
        if not claimed:
            return op.state
        route = s.get_one(Route, op.route_id)
        sink = s.get_one(Connection, op.connection_id)
        view = route_view(s, route)
        record = s.scalar(select(Record).where(Record.tenant_id == op.tenant_id, Record.entity == op.entity,
                                               Record.canonical_id == op.canonical_id))
        binding = s.scalar(select(Binding.external_id).where(
            Binding.connection_id == sink.id, Binding.entity == op.entity, Binding.canonical_id == op.canonical_id))
        earlier_query = select(Operation.id).where(
            Operation.route_id == op.route_id, Operation.canonical_id == op.canonical_id, Operation.id < op.id,
            Operation.state.in_(("pending", "running")))
        if binding is None and op.kind not in WAITS_FOR_BINDING:
            # Actions wait for the record to reach the sink; the push that brings it must not wait for them.
            earlier_query = earlier_query.where(Operation.kind.not_in(WAITS_FOR_BINDING))
        earlier = s.scalar(earlier_query.limit(1))
        tried_before = op.attempts > 1 or op.remote_id is not None or s.scalar(
            select(Operation.id).where(Operation.route_id == op.route_id, Operation.canonical_id == op.canonical_id,
                                       Operation.id != op.id, Operation.kind == op.kind,
                                       Operation.connection_id == op.connection_id, Operation.attempts > 0)
            .limit(1)) is not None
        products = _item_products(s, op.tenant_id, record) if op.kind == "emit_invoice" and record else {}
        s.expunge_all()
    if earlier is not None:
        # One record's writes run in the order they were recorded (create before its actions, post before reverse).
        return _reschedule(rt, op, EARLIER_WRITE_BACKSTOP, f"{WAITING}operation {earlier} on the same record",
                           burn=False, counted=False, behind=earlier)
    if op.kind == "prune_catalog":
        return _prune(rt, op, sink, view, route.source_id)
    if op.attempts > rt.max_attempts:
        return _finish(rt, op, "failed", error=f"gave up after {rt.max_attempts} attempts: {op.last_error}",
                       fix=op.fix or "Check `hub logs` for the failing call, fix it, then retry the operation.")
    if record is None:
        return _finish(rt, op, "failed", error="the canonical record is gone", fix="Run a full sync (--full).")
    if op.kind not in ("perform_action", "emit_invoice") and record.content_hash != op.content_hash:
        if op.remote_id and binding is None:
            _hand_on_remote_id(rt, op)
        return _finish(rt, op, "superseded")
    external_id = binding or op.remote_id
    pushes = _push_states(rt, op) if op.kind in WAITS_FOR_BINDING and binding is None else set()
    if "done" in pushes:
        # The push may have committed between this claim's reads of the binding and of the earlier writes.
        binding = _binding(rt, op)
        external_id = binding or external_id
    if op.kind in WAITS_FOR_BINDING and binding is None:
        on_its_way = bool(pushes & {"pending", "running"})
        if "failed" in pushes and not on_its_way:
            return _finish(rt, op, "failed", error="the record's write to the sink failed, so this cannot run",
                           fix="Fix the failed write of this record (hub status / hub logs), then `hub retry TENANT`.")
        if op.waits >= MAX_DEPENDENCY_WAITS and not on_its_way:
            # A write still queued behind a backlog (or a rate limit) is waited for however long it takes; only a
            # record with no write on its way gives up.
            return _finish(rt, op, "failed", error="the record never reached the sink, so its action cannot run",
                           fix="Fix the failed push of this record (hub status / hub logs), then re-run the route.")
        return _reschedule(rt, op, min(60.0, 1.0 + op.waits), f"{WAITING}the record to reach the sink first",
                           burn=False)

    ctx: ConnectorContext | None = None
    try:
        model: Canonical = stream_spec(op.entity, rt.registry).model.model_validate(record.payload)
        if op.connection_id == route.sink_id:  # an action on the source gets its own record as it is
            model = translate(model, op.entity, view, rt.registry)
        elif isinstance(model, Invoice) and op.params.get("sale"):
            model = _with_sale_there(rt, op, model)
        if op.kind == "emit_invoice":
            problems = [p for _, found in rt.registry.broadcast("validate_fiscal", document=model, route=view,
                                                                 products=products) for p in found]
            if problems:
                raise InvalidRecord("; ".join(f"{p.field}: {p.problem}" for p in problems),
                                    field=problems[0].field, fix=" ".join(p.fix for p in problems))
        ctx = make_context(rt, sink, view, op.entity, source_id=route.source_id)
        ctx._remote_id_sink = lambda rid: _save_remote_id(rt, op.id, rid)
        hold = max(rt.lease_seconds, 2 * float(sink.options.get("timeout_seconds", 30)))
        ctx._before_write = lambda: _hold_lease(rt, op, hold)
        ctx.first_attempt = not tried_before and binding is None
        if op.kind in ("perform_action", "emit_invoice"):
            external_id = binding
        kwargs = {"ctx": ctx, "stream": op.entity, "record": model, "external_id": external_id,
                  "idempotency_key": op.idempotency_key, "invoice_id": op.remote_id,
                  "action": Action(name=op.params.get("action", "-"), params=op.params.get("params") or {})}
        for attempt in (1, 2):
            try:
                result = rt.registry.call(sink.platform, op.kind, **kwargs)
                break
            except AuthExpired as exc:
                if isinstance(exc, AuthRevoked) or attempt == 2:
                    raise
                refresh_after_expiry(rt, sink, ctx)
        remote_id = getattr(result, "external_id", None) or external_id
        with rt.store.begin() as s:
            if isinstance(result, Invoice):
                # The note's id, as the plugin recorded it during this call (op.remote_id is from before it).
                recorded = s.scalar(select(Operation.remote_id).where(Operation.id == op.id))
                remote_id = recorded or op.remote_id or remote_id
                invoice_id = _store_invoice(s, op, result, remote_id)
                if result.status == "authorized" and route.source_id != op.connection_id and \
                        view.source.platform in rt.registry.platforms and \
                        rt.registry.implements(view.source.platform, "push_invoice"):
                    # The note goes back to where the sale came from (a marketplace, a B2B portal), once.
                    enqueue(s, [operation_row(route, kind="push_invoice", entity="invoices", canonical_id=invoice_id,
                                              content_hash=result.content_hash(), params={"sale": op.canonical_id},
                                              connection_id=route.source_id)])
            elif remote_id and op.kind != "perform_action":
                _bind(s, op, remote_id)
            if op.kind == "push_sale" and view.emit_invoices:
                enqueue(s, [operation_row(route, kind="emit_invoice", entity="sales", canonical_id=op.canonical_id,
                                          content_hash="once", key_extra="nfe")])
            for warning in getattr(result, "warnings", []) or []:
                ctx.log_failure(f"{op.kind} {op.entity}", f"warning: {warning}", None)
            write_calls(s, op.tenant_id, sink.id, ctx.calls)
            s.execute(update(Operation).where(Operation.id == op.id).values(
                state="done", remote_id=remote_id, lease_until=None, last_error=None, fix=None, updated_at=utcnow()))
            _wake_followers(s, op)
        return "done"
    except Exception as exc:
        return _handle_error(rt, op, ctx, exc, record.payload)
    finally:
        if ctx is not None:
            ctx.close()


def _handle_error(rt: Runtime, op: Operation, ctx: ConnectorContext | None, exc: Exception,
                  payload: dict[str, Any]) -> str:
    """Map the error taxonomy to what happens next; a plugin bug is retried, never kills the worker."""
    if isinstance(exc, LeaseLost):
        # The operation is another worker's now: its row is not this worker's to touch.
        if ctx is not None:
            ctx.log_failure(f"{op.kind} {op.entity}", exc.message, exc.fix)
            with rt.store.begin() as s:
                write_calls(s, op.tenant_id, op.connection_id, ctx.calls)
        return "taken over"
    if not isinstance(exc, HubError):
        exc = Retriable(f"{type(exc).__name__}: {exc}",
                        fix="A plugin raised an unexpected error; report it to its authors with the API log.")
    if ctx is not None:
        ctx.log_failure(f"{op.kind} {op.entity}", exc.message, exc.fix)
        with rt.store.begin() as s:
            write_calls(s, op.tenant_id, op.connection_id, ctx.calls)
    if isinstance(exc, QuotaExhausted):
        pause_for_quota(rt, op.connection_id, exc)
    if isinstance(exc, RateLimited):
        return _reschedule(rt, op, exc.retry_after, exc.message, burn=False, fix=exc.fix)
    if isinstance(exc, AuthRevoked):
        return _reschedule(rt, op, 300, exc.message, burn=False, fix=exc.fix)
    if isinstance(exc, NotFound) and op.kind not in ("perform_action", "emit_invoice"):
        with rt.store.begin() as s:
            s.execute(delete(Binding).where(
                Binding.connection_id == op.connection_id, Binding.entity == op.entity,
                Binding.canonical_id == op.canonical_id))
            s.execute(update(Operation).where(Operation.id == op.id).values(remote_id=None))
        return _reschedule(rt, op, 0, exc.message, burn=True, fix=exc.fix)
    if isinstance(exc, InvalidRecord):
        with rt.store.begin() as s:
            quarantine(s, tenant=op.tenant_id, route_id=op.route_id, connection_id=op.connection_id,
                       entity=op.entity, record=_label(payload, op.canonical_id), field=exc.field,
                       reason=exc.message, fix=exc.fix, payload=payload)
        return _finish(rt, op, "failed", error=exc.message, fix=exc.fix)
    if isinstance(exc, Fatal):
        return _finish(rt, op, "failed", error=exc.message, fix=exc.fix)
    return _reschedule(rt, op, backoff(op.attempts, rt.max_backoff_seconds), exc.message, burn=True, fix=exc.fix)


def _binding(rt: Runtime, op: Operation) -> str | None:
    with rt.store.sessions() as s:
        return s.scalar(select(Binding.external_id).where(
            Binding.connection_id == op.connection_id, Binding.entity == op.entity,
            Binding.canonical_id == op.canonical_id))


def _push_states(rt: Runtime, op: Operation) -> set[str]:
    """The states of the record's writes to the sink (the push an action or an NF-e waits for)."""
    with rt.store.sessions() as s:
        return set(s.scalars(select(Operation.state).where(
            Operation.route_id == op.route_id, Operation.canonical_id == op.canonical_id,
            Operation.kind.not_in(WAITS_FOR_BINDING))))


def _prune(rt: Runtime, op: Operation, sink: Connection, view: RouteView, source_id: int) -> str:
    """Delete the sink's records of a replaced stream, once everything the full sync wrote has arrived."""
    with rt.store.sessions() as s:
        busy = s.scalar(select(Operation.id).where(
            Operation.route_id == op.route_id, Operation.entity == op.entity, Operation.id < op.id,
            Operation.state.in_(("pending", "running"))).limit(1))
        keep = set(s.scalars(select(Binding.external_id).where(Binding.connection_id == sink.id,
                                                               Binding.entity == op.entity)))
    if busy is not None:
        return _reschedule(rt, op, 1.0, f"waiting for the writes of the full sync (operation {busy})", burn=False)
    ctx: ConnectorContext | None = None
    try:
        ctx = make_context(rt, sink, view, op.entity, source_id=source_id)
        deleted = rt.registry.call(sink.platform, "prune_catalog", ctx=ctx, stream=op.entity, keep=keep)
        with rt.store.begin() as s:
            write_calls(s, op.tenant_id, sink.id, ctx.calls)
            s.execute(update(Operation).where(Operation.id == op.id).values(
                state="done", remote_id=f"{len(deleted or [])} deleted", lease_until=None, last_error=None,
                fix=None, updated_at=utcnow()))
            _wake_followers(s, op)
        return "done"
    except Exception as exc:
        return _handle_error(rt, op, ctx, exc, {})
    finally:
        if ctx is not None:
            ctx.close()


def _with_sale_there(rt: Runtime, op: Operation, invoice: Invoice) -> Invoice:
    """The invoice with ``sale`` naming the sale as the connection it goes to knows it (its own order id there)."""
    with rt.store.sessions() as s:
        there = s.scalar(select(Binding.external_id).where(
            Binding.connection_id == op.connection_id, Binding.entity == "sales",
            Binding.canonical_id == op.params["sale"]))
        number = s.scalar(select(Record.natural_key).where(
            Record.tenant_id == op.tenant_id, Record.entity == "sales", Record.canonical_id == op.params["sale"]))
    if there is None:
        raise Fatal(f"tenant {op.tenant_id}: invoice {invoice.number or invoice.access_key} belongs to a sale this "
                    "connection has no id for", fix="Check that the sale came from this connection; run the sales "
                                                    "route's sync, then `hub retry`.")
    return invoice.model_copy(update={"sale": Ref(external_id=there, name=(number or "").split(":")[-1] or None)})


def _item_products(s: Any, tenant: str, record: Record) -> dict[str, Product]:
    """The store's products of a sale's items, by the items' SKUs; a variation's SKU gets its parent product (which
    holds the fiscal data of the grid)."""
    skus = [item.get("sku") for item in record.payload.get("items", []) if item.get("sku")]
    rows = s.scalars(select(Record).where(Record.tenant_id == tenant, Record.entity == "products",
                                          Record.natural_key.in_(skus))) if skus else []
    found = {r.natural_key: Product.model_validate(r.payload) for r in rows}
    for sku in dict.fromkeys(sku for sku in skus if sku not in found):
        parent = s.scalar(select(Record).where(Record.tenant_id == tenant, Record.entity == "products",
                                               _has_variation(s.get_bind().dialect.name, sku)).limit(1))
        if parent is not None:
            found[sku] = Product.model_validate(parent.payload)
    return found


def _has_variation(dialect: str, sku: str) -> Any:
    """A product record with a variation of this SKU (JSON containment; the tenant's products only)."""
    if dialect == "postgresql":
        return type_coerce(Record.payload, JSONB).contains({"variations": [{"sku": sku}]})
    return text("EXISTS (SELECT 1 FROM json_each(records.payload, '$.variations') AS v "
                "WHERE json_extract(v.value, '$.sku') = :variation_sku)").bindparams(variation_sku=sku)


def _store_invoice(s: Any, op: Operation, invoice: Invoice, remote_id: str | None) -> str:
    """Keep the issued NF-e as a canonical record bound to the note on the sink (one per sale, whatever the
    retries): routes reading invoices from the store, and ``hub status``, see it."""
    canonical_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hub:nfe:{op.canonical_id}"))
    now = utcnow()
    payload = invoice.model_dump(mode="json")
    existing = s.scalar(select(Record).where(Record.tenant_id == op.tenant_id, Record.entity == "invoices",
                                             Record.canonical_id == canonical_id))
    if existing is None:
        s.add(Record(tenant_id=op.tenant_id, entity="invoices", canonical_id=canonical_id,
                     natural_key=invoice.natural_key(), payload=payload, content_hash=invoice.content_hash(),
                     version=1, updated_at=now))
    else:
        existing.payload, existing.content_hash, existing.updated_at = payload, invoice.content_hash(), now
        existing.natural_key, existing.version = invoice.natural_key(), existing.version + 1
    if remote_id:
        bound = s.scalar(select(Binding).where(Binding.connection_id == op.connection_id,
                                               Binding.entity == "invoices", Binding.canonical_id == canonical_id))
        if bound is None:
            s.add(Binding(tenant_id=op.tenant_id, connection_id=op.connection_id, entity="invoices",
                          external_id=remote_id, canonical_id=canonical_id, content_hash=invoice.content_hash(),
                          origin="push", synced_at=now))
    return canonical_id


def _label(payload: dict[str, Any], canonical_id: str) -> str:
    for key in ("number", "sku", "document", "code", "name"):
        if payload.get(key):
            return f"{key} {payload[key]}"
    return canonical_id


def _hold_lease(rt: Runtime, op: Operation, seconds: float) -> None:
    """The fence before each write of an operation: renew its lease for ``seconds`` (a write's timeout, twice) if
    this claim still holds it, else raise :class:`LeaseLost`. A worker stalled past its lease (a long wait for a
    token or a rate limit, an overloaded machine) would otherwise write what the worker that took over writes too:
    a first attempt creates without looking, so that is a second order in Bling."""
    with rt.store.begin() as s:
        held = s.execute(update(Operation).where(  # type: ignore[attr-defined]
            Operation.id == op.id, Operation.state == "running", Operation.attempts == op.attempts,
        ).values(lease_until=utcnow() + timedelta(seconds=seconds))).rowcount
    if not held:
        raise LeaseLost(f"{op.kind} of {op.entity} {op.canonical_id}: another worker took this operation over "
                        f"(its lease of {rt.lease_seconds:g} s ran out in this one), so this one stopped before "
                        "writing")


def _save_remote_id(rt: Runtime, op_id: int, remote_id: str) -> None:
    with rt.store.begin() as s:
        s.execute(update(Operation).where(Operation.id == op_id).values(remote_id=remote_id, updated_at=utcnow()))


def _bind(s: Any, op: Operation, remote_id: str) -> None:
    binding = s.scalar(select(Binding).where(Binding.connection_id == op.connection_id, Binding.entity == op.entity,
                                             Binding.canonical_id == op.canonical_id))
    now = utcnow()
    if binding is None:
        stale = s.scalar(select(Binding).where(Binding.connection_id == op.connection_id,
                                               Binding.entity == op.entity, Binding.external_id == remote_id))
        if stale is not None:
            s.delete(stale)
            s.flush()
        s.add(Binding(tenant_id=op.tenant_id, connection_id=op.connection_id, entity=op.entity,
                      external_id=remote_id, canonical_id=op.canonical_id, content_hash=op.content_hash,
                      origin="push", synced_at=now))
    else:
        binding.external_id, binding.content_hash, binding.synced_at = remote_id, op.content_hash, now


def _hand_on_remote_id(rt: Runtime, op: Operation) -> None:
    """A superseded write that may have created the record remotely passes its remote id to the newer writes of the
    same record, so they update that record instead of looking for it (or creating a second one)."""
    with rt.store.begin() as s:
        s.execute(update(Operation).where(
            Operation.route_id == op.route_id, Operation.connection_id == op.connection_id,
            Operation.kind == op.kind, Operation.canonical_id == op.canonical_id, Operation.id > op.id,
            Operation.state.in_(("pending", "running")), Operation.remote_id.is_(None),
        ).values(remote_id=op.remote_id))


def _finish(rt: Runtime, op: Operation, state: str, error: str | None = None, fix: str | None = None) -> str:
    with rt.store.begin() as s:
        s.execute(update(Operation).where(Operation.id == op.id).values(
            state=state, lease_until=None, last_error=mask_documents(error), fix=mask_documents(fix),
            updated_at=utcnow()))
        _wake_followers(s, op)
    return state


def _wake_followers(s: Session, op: Operation) -> None:
    """Make the later writes of ``op``'s record that wait on it due now, in the transaction that ends ``op``."""
    now = utcnow()
    s.execute(update(Operation).where(
        Operation.route_id == op.route_id, Operation.canonical_id == op.canonical_id, Operation.id > op.id,
        Operation.state == "pending", Operation.available_at > now, Operation.last_error.startswith(WAITING),
    ).values(available_at=now))


def _reschedule(rt: Runtime, op: Operation, delay: float, error: str, *, burn: bool, fix: str | None = None,
                counted: bool = True, behind: int | None = None) -> str:
    """Back to pending after ``delay``. ``burn``: an attempt is spent; otherwise the wait is counted in ``waits``
    (what an action's patience for its record's push is measured in) unless ``counted`` is False: waiting for an
    earlier write of the same record to run is no sign that the record will never reach the sink. ``behind``: the
    operation waited on; if it ended meanwhile (its wake-up missed this one), the wait is over at once."""
    now = utcnow()
    values: dict[str, Any] = {
        "state": "pending", "lease_until": None, "dispatched_at": None, "last_error": mask_documents(error),
        "fix": mask_documents(fix),
        "available_at": now + timedelta(seconds=delay), "updated_at": now,
    }
    if not burn:
        values["attempts"] = Operation.attempts - 1
        if counted:
            values["waits"] = Operation.waits + 1
        # The change this waits for was announced since the claim: a webhook naming the operation's remote id
        # arrived (before the id was even recorded, maybe), or marked the operation while it ran. It goes at once.
        announced = select(SeenEvent.id).where(
            SeenEvent.connection_id == Operation.connection_id, SeenEvent.external_id == Operation.remote_id,
            SeenEvent.received_at >= op.updated_at).exists()
        values["available_at"] = case((or_(Operation.available_at > op.available_at, announced), now),
                                      else_=values["available_at"])
    with rt.store.begin() as s:
        if behind is not None and s.scalar(select(Operation.state).where(Operation.id == behind)) not in (
                "pending", "running"):
            values["available_at"] = now
        s.execute(update(Operation).where(Operation.id == op.id).values(**values))
    return "pending"


def due_operations(rt: Runtime, limit: int = 500, route_id: int | None = None) -> list[int]:
    """Due operations in the order they should run: sales, their actions and invoices first, then round-robin
    across tenants and routes (:func:`hub.sync.fairness.fair_due`)."""
    from hub.sync.fairness import fair_due

    with rt.store.sessions() as s:
        return fair_due(s, utcnow(), limit, route_id=route_id)


def retry_failed(rt: Runtime, tenant: str, route_name: str | None = None) -> int:
    """Make a tenant's failed operations due again, with fresh attempts; their quarantine entries are resolved."""
    from hub.store.schema import Quarantine
    from hub.sync.loading import find_route

    now = utcnow()
    with rt.store.begin() as s:
        query = update(Operation).where(Operation.tenant_id == tenant, Operation.state == "failed")
        if route_name is not None:
            query = query.where(Operation.route_id == find_route(s, tenant, route_name).id)
        n = s.execute(query.values(state="pending", attempts=0, available_at=now, lease_until=None,
                                   dispatched_at=None, updated_at=now)).rowcount  # type: ignore[attr-defined]
        s.execute(update(Quarantine).where(Quarantine.tenant_id == tenant, Quarantine.resolved_at.is_(None),
                                           Quarantine.route_id.is_not(None)).values(resolved_at=now))
        return int(n)
