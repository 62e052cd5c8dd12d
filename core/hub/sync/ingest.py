"""Writing one pulled page into the store: records, bindings, transitions and outbox rows, in one transaction."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from hub.models import ENTITY_MODELS, Canonical, StatusTransition
from hub.platform import Incoming, Rejected
from hub.registry import Registry
from hub.store.engine import utcnow
from hub.store.schema import Binding, Operation, Quarantine, Record, Route
from hub.sync.context import RouteView

PUSH_HOOKS = {
    "categories": "push_catalog", "products": "push_catalog", "customers": "push_catalog",
    "sellers": "push_catalog", "payment_methods": "push_catalog", "stock": "push_stock",
    "prices": "push_price", "sales": "push_sale", "invoices": "push_invoice",
}
PULL_HOOKS = {stream: "pull_catalog" for stream in PUSH_HOOKS} | {"sales": "pull_sales", "invoices": "pull_invoices"}


@dataclass
class PageCounts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    quarantined: int = 0
    operations: int = 0
    transitions: list[StatusTransition] = field(default_factory=list)

    def add(self, other: PageCounts) -> None:
        self.new += other.new
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.quarantined += other.quarantined
        self.operations += other.operations


def operation_key(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def quarantine(s: Session, *, tenant: str, route_id: int | None, connection_id: int | None, entity: str,
               record: str, reason: str, fix: str, field: str | None = None,
               payload: dict[str, Any] | None = None) -> None:
    """Record a refusal once: the same record refused for the same reason is not listed twice."""
    existing = s.scalar(select(Quarantine).where(
        Quarantine.tenant_id == tenant, Quarantine.entity == entity, Quarantine.record == record[:200],
        Quarantine.resolved_at.is_(None)))
    now = utcnow()
    if existing is not None:
        existing.reason, existing.fix, existing.field, existing.created_at = reason, fix, field, now
        return
    s.add(Quarantine(tenant_id=tenant, route_id=route_id, connection_id=connection_id, entity=entity,
                     record=record[:200], field=field, reason=reason, fix=fix, payload=payload or {},
                     created_at=now, resolved_at=None))


def _validation_problem(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    field_name = ".".join(str(p) for p in first["loc"]) or "(record)"
    reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return field_name, reasons


def operation_row(route: Route, *, kind: str, entity: str, canonical_id: str, content_hash: str,
                  params: dict[str, Any] | None = None, key_extra: str = "") -> dict[str, Any]:
    now = utcnow()
    return dict(
        tenant_id=route.tenant_id, route_id=route.id, connection_id=route.sink_id, kind=kind, entity=entity,
        canonical_id=canonical_id, content_hash=content_hash, params=params or {},
        idempotency_key=operation_key(route.id, route.sink_id, kind, entity, canonical_id, content_hash, key_extra),
        state="pending", attempts=0, waits=0, available_at=now, lease_until=None, dispatched_at=None,
        remote_id=None, last_error=None, fix=None, created_at=now, updated_at=now)


def enqueue(s: Session, rows: list[dict[str, Any]]) -> int:
    """Insert outbox rows, skipping any whose idempotency key is already recorded."""
    if not rows:
        return 0
    keys = [r["idempotency_key"] for r in rows]
    known = set(s.scalars(select(Operation.idempotency_key).where(Operation.idempotency_key.in_(keys))))
    fresh = {r["idempotency_key"]: r for r in rows if r["idempotency_key"] not in known}
    if fresh:
        s.execute(insert(Operation), list(fresh.values()))
    return len(fresh)


def ingest_page(s: Session, registry: Registry, route: Route, view: RouteView, stream: str,
                items: Sequence[Incoming | Rejected]) -> PageCounts:
    counts = PageCounts()
    model_cls = ENTITY_MODELS[stream]
    tenant, source_id, now = route.tenant_id, route.source_id, utcnow()
    push = stream in view.streams and PUSH_HOOKS[stream]

    valid: dict[str, Canonical] = {}  # a page listing a record twice keeps its last copy
    for item in items:
        if isinstance(item, Rejected):
            quarantine(s, tenant=tenant, route_id=route.id, connection_id=source_id, entity=stream,
                       record=item.external_id, field=item.field, reason=item.reason, fix=item.fix, payload=item.raw)
            counts.quarantined += 1
            continue
        try:
            data = item.data
            model = data if isinstance(data, model_cls) else model_cls.model_validate(
                data.model_dump() if isinstance(data, Canonical) else data)
        except ValidationError as exc:
            field_name, reason = _validation_problem(exc)
            quarantine(s, tenant=tenant, route_id=route.id, connection_id=source_id, entity=stream,
                       record=item.external_id, field=field_name,
                       reason=f"{view.source.platform} {stream} {item.external_id}: {reason}",
                       fix=f"Correct {field_name} of this record on {view.source.platform}; the next sync picks "
                           "it up.",
                       payload=data if isinstance(data, dict) else {})
            counts.quarantined += 1
            continue
        valid[item.external_id] = model
    if not valid:
        return counts

    ext_ids = list(valid)
    bindings = {b.external_id: b for b in s.scalars(select(Binding).where(
        Binding.connection_id == source_id, Binding.entity == stream, Binding.external_id.in_(ext_ids)))}
    hashes = {ext: model.content_hash() for ext, model in valid.items()}
    todo = [(ext, m) for ext, m in valid.items() if not (ext in bindings and bindings[ext].content_hash == hashes[ext])]
    counts.unchanged = len(valid) - len(todo)
    if not todo:
        return counts

    new_keys = [m.natural_key() for ext, m in todo if ext not in bindings and m.natural_key()]
    by_key: dict[str, str] = {}
    if new_keys:
        bound_here = select(Binding.id).where(Binding.connection_id == source_id, Binding.entity == stream,
                                              Binding.canonical_id == Record.canonical_id).exists()
        for canonical_id, nk in s.execute(select(Record.canonical_id, Record.natural_key).where(
                Record.tenant_id == tenant, Record.entity == stream, Record.natural_key.in_(new_keys),
                ~bound_here)):
            if nk is not None:
                by_key.setdefault(nk, canonical_id)

    canonical_of: dict[str, str] = {}
    new_bindings: list[dict[str, Any]] = []
    for ext, model in todo:
        binding = bindings.get(ext)
        if binding is None:
            nk = model.natural_key()
            matched = by_key.pop(nk, None) if nk else None
            canonical_of[ext] = matched or str(uuid.uuid4())
            new_bindings.append(dict(tenant_id=tenant, connection_id=source_id, entity=stream, external_id=ext,
                                     canonical_id=canonical_of[ext], content_hash=hashes[ext], origin="pull",
                                     synced_at=now))
        else:
            canonical_of[ext] = binding.canonical_id
            binding.content_hash, binding.synced_at = hashes[ext], now

    if new_bindings:
        s.execute(insert(Binding), new_bindings)
    records = {r.canonical_id: r for r in s.scalars(select(Record).where(
        Record.tenant_id == tenant, Record.entity == stream, Record.canonical_id.in_(canonical_of.values())))}
    sink_hashes: dict[str, str | None] = {}
    if push:
        rows = s.execute(select(Binding.canonical_id, Binding.content_hash).where(
            Binding.connection_id == route.sink_id, Binding.entity == stream,
            Binding.canonical_id.in_(canonical_of.values())))
        sink_hashes = {canonical_id: h for canonical_id, h in rows}

    ops: list[dict[str, Any]] = []
    new_records: list[dict[str, Any]] = []
    exchanges: list[Canonical] = []
    for ext, model in todo:
        canonical_id, content_hash = canonical_of[ext], hashes[ext]
        record = records.get(canonical_id)
        if record is not None and record.payload.get("cancelled_by") and not payload_of(model, "cancelled_by"):
            # Cancelled by an exchange: that stays true whatever the source says of the original later.
            model = model.model_copy(update={"status": record.payload["status"],
                                              "cancelled_by": record.payload["cancelled_by"]})
            content_hash = hashes[ext] = model.content_hash()
            if ext in bindings:
                bindings[ext].content_hash = content_hash
        payload = model.model_dump(mode="json")
        old_status = None
        if record is None:
            new_records.append(dict(tenant_id=tenant, entity=stream, canonical_id=canonical_id,
                                    natural_key=model.natural_key(), payload=payload, content_hash=content_hash,
                                    version=1, updated_at=now))
            counts.new += 1
        elif record.content_hash != content_hash:
            old_status = record.payload.get("status")
            record.payload, record.content_hash = payload, content_hash
            record.natural_key, record.version, record.updated_at = model.natural_key(), record.version + 1, now
            counts.changed += 1
        else:
            old_status = record.payload.get("status")
            counts.unchanged += 1
        if push and sink_hashes.get(canonical_id) != content_hash:
            ops.append(operation_row(route, kind=push, entity=stream, canonical_id=canonical_id,
                                     content_hash=content_hash))
        new_status = payload.get("status")
        if stream == "sales" and new_status and new_status != old_status:
            transition = StatusTransition(canonical_id=canonical_id, from_status=_mapped(view, old_status),
                                          to_status=_mapped(view, new_status) or new_status, at=now)
            counts.transitions.append(transition)
            ops.extend(plan_transition(registry, route, view, transition, content_hash))
        if stream == "sales" and view.cancel_replaced and payload.get("replaces"):
            exchanges.append(model)
    if new_records:
        s.execute(insert(Record), new_records)
    s.flush()
    for exchange in exchanges:
        ops.extend(cancel_replaced(s, registry, route, view, exchange, now))
    counts.operations = enqueue(s, ops)
    return counts


def payload_of(model: Canonical, name: str) -> Any:
    return getattr(model, name, None)


def cancel_replaced(s: Session, registry: Registry, route: Route, view: RouteView, sale: Canonical,
                    now: Any) -> list[dict[str, Any]]:
    """An exchange's new sale cancels the original: the original's record takes the route's cancel status (its
    cancellation and the reversals of its transitions then run on the sink, once), and keeps it."""
    cancel = view.cancel_replaced or ""
    number, channel = payload_of(sale, "replaces"), payload_of(sale, "channel") or ""
    original = s.scalar(select(Record).where(Record.tenant_id == route.tenant_id, Record.entity == "sales",
                                             Record.natural_key == f"{channel}:{number}"))
    if original is None or original.payload.get("cancelled_by") or original.payload.get("status") == cancel:
        return []
    old_status = original.payload.get("status")
    model = ENTITY_MODELS["sales"].model_validate(
        {**original.payload, "status": cancel, "cancelled_by": payload_of(sale, "number")})
    content_hash = model.content_hash()
    original.payload, original.content_hash = model.model_dump(mode="json"), content_hash
    original.version, original.updated_at = original.version + 1, now
    ops = [operation_row(route, kind="push_sale", entity="sales", canonical_id=original.canonical_id,
                         content_hash=content_hash)]
    transition = StatusTransition(canonical_id=original.canonical_id, from_status=_mapped(view, old_status),
                                  to_status=_mapped(view, cancel) or cancel, at=now)
    return ops + plan_transition(registry, route, view, transition, content_hash)


def _mapped(view: RouteView, status: str | None) -> str | None:
    table = view.mappings.get("statuses")
    if status is None or not table:
        return status
    return table.get(status, status)


def plan_transition(registry: Registry, route: Route, view: RouteView, transition: StatusTransition,
                    content_hash: str) -> list[dict[str, Any]]:
    """Ask every plugin which actions this change calls for; each becomes one operation on the sink."""
    planned = []
    sink_plugin = registry.get(view.sink.platform).plugin if view.sink.platform in registry.platforms else None
    for plugin, actions in registry.broadcast("on_status_transition", transition=transition, route=view):
        if plugin != sink_plugin:
            continue
        for action in actions:
            planned.append(operation_row(
                route, kind="perform_action", entity=transition.entity, canonical_id=transition.canonical_id,
                content_hash=content_hash, key_extra=f"{transition.from_status}->{transition.to_status}:{action.name}",
                params={"action": action.name, "params": action.params, "transition": transition.key}))
    return planned
