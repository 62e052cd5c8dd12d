"""Writing one pulled page into the store: records, bindings, transitions and outbox rows, in one transaction."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, insert, null, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from uuid6 import uuid7

from hub.models import Action, Canonical, StatusTransition
from hub.platform import Incoming, Platform, Rejected
from hub.privacy import mask_documents
from hub.registry import Registry
from hub.store.engine import one_of, utcnow
from hub.store.schema import Binding, Operation, Quarantine, Record, Route
from hub.streams import BUILTIN_STREAMS, KEEP_STATUS, stream_spec
from hub.sync.context import RouteView

log = logging.getLogger(__name__)

PUSH_HOOKS = {name: spec.push_hook for name, spec in BUILTIN_STREAMS.items()}
"""The core's streams only; look a stream up with :func:`hub.streams.stream_spec`, which knows the plugins' too."""
PULL_HOOKS = {name: spec.pull_hook for name, spec in BUILTIN_STREAMS.items()}

FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far ahead of the hub's clock a record's ``updated_at`` (or a page cursor) may be. Clocks drift a little; a
sale dated 2099 is a typo that, taken as an incremental cursor, would hide every later record."""
COALESCED = frozenset({"push_catalog", "push_stock", "push_price", "push_sale", "push_invoice"})
"""Writes that carry a record's whole current state: a newer one makes a queued older one pointless. Actions and
invoice emission are events, each of which must run."""
MAX_KEY_LENGTH = 200
"""``records.natural_key`` and ``bindings.external_id`` are String(200)."""


RECORDS, BINDINGS = cast(Table, Record.__table__), cast(Table, Binding.__table__)
OPERATIONS = cast(Table, Operation.__table__)
"""Core tables: a page's rows are inserted by plain executemany, not the ORM's bulk path (a third of a page's
store time went to its bookkeeping)."""


def as_utc(moment: datetime) -> datetime:
    """Naive UTC, as the store keeps times."""
    if moment.tzinfo is None:
        return moment
    return moment.replace(tzinfo=None) - (moment.utcoffset() or timedelta())


def in_the_future(moment: datetime) -> bool:
    return as_utc(moment) > utcnow() + FUTURE_TOLERANCE


@dataclass
class PageCounts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    quarantined: int = 0
    operations: int = 0
    skipped: int = 0
    """Records an ``updates`` route does not carry: the store (or the sink) does not have them."""
    transitions: list[StatusTransition] = field(default_factory=list)

    def add(self, other: PageCounts) -> None:
        self.new += other.new
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.quarantined += other.quarantined
        self.operations += other.operations
        self.skipped += other.skipped


def new_canonical_id() -> str:
    """A new record's id: a UUIDv7, ordered by the time it was made. A page's new records then land together at the
    end of every index that holds their id, instead of 500 random places: a SQLite commit of a first sync's page
    took 30 ms with random (v4) ids and 5 ms with these (`hub bench store`)."""
    return str(uuid7())


def operation_key(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def quarantine(s: Session, *, tenant: str, route_id: int | None, connection_id: int | None, entity: str,
               record: str, reason: str, fix: str, field: str | None = None,
               payload: dict[str, Any] | None = None) -> None:
    """Record a refusal once: the same record refused for the same reason is not listed twice. What an operator
    reads (label, reason, fix) has its CPF/CNPJ masked; the payload keeps the record as it came."""
    record, reason, fix = (_printable(mask_documents(text)) for text in (record, reason, fix))
    field = _printable(field)[:200] if field is not None else None
    payload = _without_nul(payload or {})
    from hub.runs import CURRENT_RUN

    existing = s.scalar(select(Quarantine).where(
        Quarantine.tenant_id == tenant, Quarantine.entity == entity, Quarantine.record == record[:200],
        Quarantine.resolved_at.is_(None)))
    now = utcnow()
    if existing is not None:
        existing.reason, existing.fix, existing.field, existing.created_at = reason, fix, field, now
        existing.run_id = CURRENT_RUN.get()
        return
    s.add(Quarantine(tenant_id=tenant, route_id=route_id, connection_id=connection_id, entity=entity,
                     record=record[:200], field=field, reason=reason, fix=fix, payload=payload or {},
                     created_at=now, resolved_at=None, run_id=CURRENT_RUN.get()))


def _printable(text: str) -> str:
    return text.replace("\x00", "\\u0000")


def _without_nul(value: Any) -> Any:
    """The payload with NUL bytes spelt out: PostgreSQL's JSONB refuses them, and the payload must be kept."""
    if isinstance(value, str):
        return _printable(value)
    if isinstance(value, dict):
        return {_printable(str(k)): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


def _nul_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding a NUL byte."""
    if isinstance(value, str):
        return (path or "(record)") if "\x00" in value else None
    if isinstance(value, dict):
        for key, inner in value.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return here
            found = _nul_field(inner, here)
            if found:
                return found
    if isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            found = _nul_field(inner, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


@dataclass
class Refusal:
    field: str
    reason: str
    fix: str


def _check_record(tenant: str, platform: str, stream: str, item: Incoming,
                  model_cls: type[Canonical]) -> tuple[Canonical, str] | Refusal:
    """The record's model and content hash, or why the store cannot take it (whatever went wrong)."""
    what = f"tenant {tenant}, {platform} {stream} {_printable(item.external_id)}"
    correct = "the next sync picks it up."
    if item.updated_at is not None and in_the_future(item.updated_at):
        return Refusal("updated_at", f"{what}: updated_at {item.updated_at.isoformat()} is more than "
                                     f"{int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes ahead of the hub's "
                                     "clock; taken as a sync position it would hide every later record",
                       f"Correct the record's date/clock on {platform}; check the clock of the device or system "
                       f"that saved it; {correct}")
    if "\x00" in item.external_id or len(item.external_id) > MAX_KEY_LENGTH:
        return Refusal("external_id", f"{what}: its id has a NUL byte or more than {MAX_KEY_LENGTH} characters",
                       f"Report it to the {platform} plugin's maintainers: a record id must be short printable text.")
    data = item.data
    try:
        model = data if isinstance(data, model_cls) else model_cls.model_validate(
            data.model_dump() if isinstance(data, Canonical) else data)
        if type(model).content_hash is Canonical.content_hash:  # the hash's own JSON serves the NUL check too
            text = model.canonical_json()
            content_hash = hashlib.sha256(text.encode()).hexdigest()
        else:
            text, content_hash = model.model_dump_json(), model.content_hash()
        # JSON spells a NUL as \u0000; only then is the payload walked to name the field.
        nul = _nul_field(model.model_dump(mode="json")) if "\\u0000" in text else None
        if nul is not None:
            return Refusal(nul, f"{what}: {nul} holds a NUL byte (\\u0000), which the store cannot keep",
                           f"Correct {nul} of this record on {platform} (remove the invisible character); {correct}")
        key = model.natural_key()
        if key is not None and len(key) > MAX_KEY_LENGTH:
            name = model.key_field or "natural key"
            return Refusal(name, f"{what}: its {name} is {len(key)} characters long; the store keeps at most "
                                 f"{MAX_KEY_LENGTH}",
                           f"Shorten the {name} of this record on {platform}; {correct}")
        return model, content_hash
    except ValidationError as exc:
        field_name, reason = _validation_problem(exc)
        return Refusal(field_name, f"{platform} {stream} {item.external_id}: {reason}",
                       f"Correct {field_name} of this record on {platform}; the next sync picks it up.")
    except Exception as exc:  # a record-level failure of any kind costs that record only
        return Refusal("(record)", f"{what}: {type(exc).__name__}: {exc}",
                       f"Check this record on {platform}; if it looks right there, report it to the {platform} "
                       "plugin's maintainers with the record's payload.")


def _validation_problem(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    field_name = ".".join(str(p) for p in first["loc"]) or "(record)"
    reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return field_name, reasons


def operation_row(route: Route, *, kind: str, entity: str, canonical_id: str, content_hash: str,
                  params: dict[str, Any] | None = None, key_extra: str = "",
                  connection_id: int | None = None, version: int | None = None) -> dict[str, Any]:
    """An outbox row for the route's sink (or ``connection_id``, e.g. an action the source's platform runs).

    ``version``: the record's version the write answers. A record may come back to an earlier state (a price put
    back, a sale reopened and cancelled again); that is a new change with its own write, not a replay of the first,
    so its key differs. The same version proposed twice is one write."""
    now = utcnow()
    target = route.sink_id if connection_id is None else connection_id
    parts: tuple[object, ...] = (route.id, target, kind, entity, canonical_id, content_hash, key_extra)
    return dict(
        tenant_id=route.tenant_id, route_id=route.id, connection_id=target, kind=kind, entity=entity,
        canonical_id=canonical_id, content_hash=content_hash, params=params or {},
        idempotency_key=operation_key(*parts) if version is None else operation_key(*parts, f"v{version}"),
        state="pending", attempts=0, waits=0, available_at=now, lease_until=None, dispatched_at=None,
        remote_id=None, last_error=None, fix=None, created_at=now, updated_at=now, run_id=_current_run())


def _current_run() -> int | None:
    from hub.runs import CURRENT_RUN

    return CURRENT_RUN.get()


def enqueue(s: Session, rows: list[dict[str, Any]], born: Collection[str] = ()) -> int:
    """Insert outbox rows, skipping any whose idempotency key is already recorded (the database's unique key
    decides, so two runs recording the same write at once leave one), then supersede what they replace.
    ``born``: canonical ids this transaction created, which no queued write can name yet (nothing to supersede).
    Returns how many rows were new."""
    if not rows:
        return 0
    table_insert = postgresql_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = table_insert(OPERATIONS).on_conflict_do_nothing(index_elements=["idempotency_key"])
    inserted = s.execute(statement.execution_options(preserve_rowcount=True),
                         list({r["idempotency_key"]: r for r in rows}.values()))
    coalesce(s, [r for r in rows if r["canonical_id"] not in born])
    return int(inserted.rowcount)  # type: ignore[attr-defined]


NEWER = OPERATIONS.alias("newer")
"""Core, like the statement that uses it: an ORM entity in the WHERE clause sent the UPDATE through the ORM's bulk
path, which looked for the rows in the session first."""


def coalesce(s: Session, rows: list[dict[str, Any]]) -> int:
    """Supersede the queued, never-tried writes of the records that ``rows`` (already recorded) replace: those with
    a newer queued write of the same kind. A burst of stock changes to one SKU leaves one write, with the latest
    value, and the others cost no call (nor a claim). A write already tried is left to run its course (it may have
    reached the platform; it is superseded when it runs, handing its remote id on). A write recorded again (its key
    already queued) is the newest of its record, and stays."""
    targets: dict[tuple[int, int, str, str], set[str]] = {}
    ops = OPERATIONS.c
    for row in rows:
        if row["kind"] in COALESCED:
            key = (row["route_id"], row["connection_id"], row["kind"], row["entity"])
            targets.setdefault(key, set()).add(row["canonical_id"])
    n = NEWER.c
    newer = select(n.id).where(
        n.route_id == ops.route_id, n.canonical_id == ops.canonical_id, n.state == "pending",
        n.connection_id == ops.connection_id, n.kind == ops.kind, n.entity == ops.entity, n.id > ops.id).exists()
    done = 0
    for (route_id, connection_id, kind, entity), ids in targets.items():
        done += s.execute(update(OPERATIONS).where(
            ops.route_id == route_id, ops.connection_id == connection_id, ops.kind == kind, ops.entity == entity,
            one_of(s, ops.canonical_id, ids), ops.state == "pending", ops.attempts == 0, ops.remote_id.is_(None), newer,
        ).values(state="superseded", updated_at=utcnow())).rowcount  # type: ignore[attr-defined]
    return done


def ingest_page(s: Session, registry: Registry, route: Route, view: RouteView, stream: str,
                items: Sequence[Incoming | Rejected]) -> PageCounts:
    counts = PageCounts()
    spec = stream_spec(stream, registry)
    model_cls = spec.model
    tenant, source_id, now = route.tenant_id, route.source_id, utcnow()
    push = stream in view.streams and spec.push_hook

    platform = view.source.platform
    if stream in view.updates:
        return ingest_updates(s, registry, route, view, stream, items)
    valid: dict[str, Canonical] = {}  # a page listing a record twice keeps its last copy
    hashes: dict[str, str] = {}
    for item in items:
        if isinstance(item, Rejected):
            quarantine(s, tenant=tenant, route_id=route.id, connection_id=source_id, entity=stream,
                       record=item.external_id, field=item.field, reason=item.reason, fix=item.fix, payload=item.raw)
            counts.quarantined += 1
            continue
        checked = _check_record(tenant, platform, stream, item, model_cls)
        if isinstance(checked, Refusal):
            data = item.data
            raw = data if isinstance(data, dict) else {}
            quarantine(s, tenant=tenant, route_id=route.id, connection_id=source_id, entity=stream,
                       record=item.external_id, field=checked.field, reason=checked.reason, fix=checked.fix,
                       payload=raw)
            counts.quarantined += 1
            valid.pop(item.external_id, None)
            continue
        valid[item.external_id], hashes[item.external_id] = checked
    if not valid:
        return counts

    ext_ids = list(valid)
    bindings = {b.external_id: b for b in s.execute(select(
        Binding.id, Binding.external_id, Binding.canonical_id, Binding.content_hash).where(
        Binding.connection_id == source_id, Binding.entity == stream, one_of(s, Binding.external_id, ext_ids)))}
    todo = [(ext, m) for ext, m in valid.items() if not (ext in bindings and bindings[ext].content_hash == hashes[ext])]
    counts.unchanged = len(valid) - len(todo)
    if model_cls.unique_key:
        todo, clashes = _key_clashes(s, tenant, source_id, stream, todo, bindings)
        for ext, model, other in clashes:
            quarantine(s, tenant=tenant, route_id=route.id, connection_id=source_id, entity=stream, record=ext,
                       field=model.key_field, **_clash_text(tenant, platform, stream, ext, model, other),
                       payload=model.model_dump(mode="json"))
            counts.quarantined += 1
    if not todo:
        return counts

    new_keys = [m.natural_key() for ext, m in todo if ext not in bindings and m.natural_key()]
    by_key: dict[str, str] = {}
    if new_keys:
        bound_here = select(Binding.id).where(Binding.connection_id == source_id, Binding.entity == stream,
                                              Binding.canonical_id == Record.canonical_id).exists()
        for canonical_id, nk in s.execute(select(Record.canonical_id, Record.natural_key).where(
                Record.tenant_id == tenant, Record.entity == stream, one_of(s, Record.natural_key, new_keys),
                ~bound_here)):
            if nk is not None:
                by_key.setdefault(nk, canonical_id)

    canonical_of: dict[str, str] = {}
    born: set[str] = set()
    new_bindings: list[dict[str, Any]] = []
    for ext, model in todo:
        binding = bindings.get(ext)
        if binding is None:
            nk = model.natural_key()
            matched = by_key.pop(nk, None) if nk else None
            canonical_of[ext] = matched or new_canonical_id()
            if matched is None:
                born.add(canonical_of[ext])
            new_bindings.append(dict(tenant_id=tenant, connection_id=source_id, entity=stream, external_id=ext,
                                     canonical_id=canonical_of[ext], content_hash=hashes[ext], origin="pull",
                                     synced_at=now))
        else:
            canonical_of[ext] = binding.canonical_id

    if new_bindings:
        s.execute(insert(BINDINGS), new_bindings)
    known_ids = [c for c in canonical_of.values() if c not in born]  # a born id has no record nor sink binding yet
    records = _stored(s, tenant, stream, known_ids, route.sink_id if push else None) if known_ids else {}
    sink_hashes = {canonical_id: r.sink_hash for canonical_id, r in records.items()}

    ops: list[dict[str, Any]] = []
    new_records: list[dict[str, Any]] = []
    changed_records: list[dict[str, Any]] = []
    exchanges: list[Canonical] = []
    for ext, model in todo:
        canonical_id, content_hash = canonical_of[ext], hashes[ext]
        record = records.get(canonical_id)
        prior = (record.payload or {}) if record is not None else {}
        if prior.get("cancelled_by") and not payload_of(model, "cancelled_by"):
            # Cancelled by an exchange: that stays true whatever the source says of the original later.
            model = model.model_copy(update={"status": prior["status"], "cancelled_by": prior["cancelled_by"]})
            content_hash = hashes[ext] = model.content_hash()
        payload = model.model_dump(mode="json")
        old_status = None
        if record is None:
            version = 1
            new_records.append(dict(tenant_id=tenant, entity=stream, canonical_id=canonical_id,
                                    natural_key=model.natural_key(), payload=payload, content_hash=content_hash,
                                    version=version, updated_at=now))
            counts.new += 1
        elif record.content_hash != content_hash:
            old_status, version = prior.get("status"), record.version + 1
            changed_records.append(dict(rid=record.id, payload=payload, hash=content_hash, key=model.natural_key(),
                                        version=version))
            counts.changed += 1
        else:
            old_status, version = prior.get("status"), record.version
            counts.unchanged += 1
        if push and sink_hashes.get(canonical_id) != content_hash:
            ops.append(operation_row(route, kind=push, entity=stream, canonical_id=canonical_id,
                                     content_hash=content_hash, version=version))
        new_status = payload.get("status")
        if stream == "sales" and new_status and new_status != old_status:
            transition = StatusTransition(canonical_id=canonical_id, from_status=_mapped(view, old_status),
                                          to_status=_mapped(view, new_status) or new_status, at=now)
            counts.transitions.append(transition)
            ops.extend(plan_transition(registry, route, view, transition, content_hash, version))
        if stream == "sales" and view.cancel_replaced and payload.get("replaces"):
            exchanges.append(model)
    if new_records:
        s.execute(insert(RECORDS), new_records)
    _update_rows(s, now, changed_records, [dict(bid=bindings[ext].id, hash=hashes[ext]) for ext, _ in todo
                                           if ext in bindings])
    s.flush()
    for exchange in exchanges:
        ops.extend(cancel_replaced(s, registry, route, view, exchange, now))
    counts.operations = enqueue(s, ops, born)
    return counts


SINK_BINDINGS = BINDINGS.alias("sink_bindings")


def _stored(s: Session, tenant: str, stream: str, canonical_ids: list[str], sink_id: int | None) -> dict[str, Any]:
    """The stored records of ``canonical_ids`` with the content hash the sink has of each (``sink_hash``, None when
    not bound there or ``sink_id`` is None), in one query. Only a sale's stored payload is read back (its status and
    an exchange's cancellation): parsing a page of product payloads to look at neither was a fifth of an update's
    store time."""
    r, sink = RECORDS.c, SINK_BINDINGS.c
    payload = r.payload if stream == "sales" else null().label("payload")
    if sink_id is None:
        query = select(r.id, r.canonical_id, payload, r.content_hash, r.version, null().label("sink_hash"))
    else:
        query = select(r.id, r.canonical_id, payload, r.content_hash, r.version, sink.content_hash.label("sink_hash")
                       ).select_from(RECORDS.outerjoin(SINK_BINDINGS, (sink.connection_id == sink_id)
                                                       & (sink.entity == stream)
                                                       & (sink.canonical_id == r.canonical_id)))
    return {row.canonical_id: row for row in s.execute(query.where(
        r.tenant_id == tenant, r.entity == stream, one_of(s, r.canonical_id, canonical_ids)))}


def ingest_updates(s: Session, registry: Registry, route: Route, view: RouteView, stream: str,
                   items: Sequence[Incoming | Rejected]) -> PageCounts:
    """A route that only updates ``view.updates[stream]`` fields (e.g. an ERP's order statuses going back to the
    portal the orders came from). It carries a record only when the store has it bound on both ends: records the hub
    never exchanged (an order typed into the ERP by hand) are skipped, not created and not quarantined, and nothing
    is ever created on the sink. The other fields stay as their own source wrote them, so reading the sink's copy
    back brings no change and the value does not bounce between the two platforms."""
    counts = PageCounts()
    fields = view.updates[stream]
    model_cls = stream_spec(stream, registry).model
    tenant, source_id, now = route.tenant_id, route.source_id, utcnow()
    ext_ids = list(dict.fromkeys(item.external_id for item in items))
    bindings = {b.external_id: b for b in s.scalars(select(Binding).where(
        Binding.connection_id == source_id, Binding.entity == stream, one_of(s, Binding.external_id, ext_ids)))}
    on_sink = set(s.scalars(select(Binding.canonical_id).where(
        Binding.connection_id == route.sink_id, Binding.entity == stream,
        one_of(s, Binding.canonical_id, [b.canonical_id for b in bindings.values()]))))
    latest: dict[str, Incoming | Rejected] = {}
    for item in items:
        binding = bindings.get(item.external_id)
        if binding is None or binding.canonical_id not in on_sink:
            counts.skipped += 1
            continue
        latest[item.external_id] = item
    records = {r.canonical_id: r for r in s.scalars(select(Record).where(
        Record.tenant_id == tenant, Record.entity == stream,
        one_of(s, Record.canonical_id, [bindings[ext].canonical_id for ext in latest])))}
    sink_hashes: dict[str, str | None] = {canonical_id: h for canonical_id, h in s.execute(
        select(Binding.canonical_id, Binding.content_hash).where(
            Binding.connection_id == route.sink_id, Binding.entity == stream,
            one_of(s, Binding.canonical_id, list(records))))}
    push = stream in view.streams and stream_spec(stream, registry).push_hook
    ops: list[dict[str, Any]] = []
    for ext, item in latest.items():
        binding = bindings[ext]
        record = records.get(binding.canonical_id)
        if isinstance(item, Rejected) or record is None:
            counts.skipped += 1
            continue
        checked = _check_record(tenant, view.source.platform, stream, item, model_cls)
        if isinstance(checked, Refusal):
            quarantine(s, tenant=tenant, route_id=route.id, connection_id=source_id, entity=stream, record=ext,
                       field=checked.field, reason=checked.reason, fix=checked.fix,
                       payload=item.data if isinstance(item.data, dict) else {})
            counts.quarantined += 1
            continue
        incoming, incoming_hash = checked
        if binding.content_hash == incoming_hash:
            counts.unchanged += 1
            continue
        carried = incoming.model_dump(mode="json", include=set(fields))
        unmapped = _carry_status(view, stream, carried)
        if unmapped is not None:
            quarantine(s, tenant=tenant, route_id=route.id, connection_id=source_id, entity=stream, record=ext,
                       field="status", reason=f"tenant {tenant}, route {view.name}, {view.source.platform} {stream} "
                                              f"{ext}: status {unmapped!r} has no mapping",
                       fix=f"Add {unmapped!r} under routes.{view.name}.mappings.statuses (the sink's status, or "
                           f"{KEEP_STATUS!r} to leave it as it is) and re-apply.", payload=carried)
            counts.quarantined += 1
            continue
        binding.content_hash, binding.synced_at = incoming_hash, now
        merged_payload = {**record.payload, **carried}
        try:
            merged = model_cls.model_validate(merged_payload)
        except ValidationError as exc:
            field_name, reason = _validation_problem(exc)
            quarantine(s, tenant=tenant, route_id=route.id, connection_id=source_id, entity=stream, record=ext,
                       field=field_name, reason=f"tenant {tenant}, {view.source.platform} {stream} {ext}: its "
                                              f"{', '.join(fields)} cannot be applied to the record: {reason}",
                       fix=f"Correct {field_name} of this record on {view.source.platform}; the next sync picks it "
                           "up.", payload=carried)
            counts.quarantined += 1
            continue
        content_hash = merged.content_hash()
        if content_hash == record.content_hash:
            counts.unchanged += 1
            continue
        old_status = record.payload.get("status")
        record.payload, record.content_hash = merged.model_dump(mode="json"), content_hash
        record.version, record.updated_at = record.version + 1, now
        counts.changed += 1
        if push and sink_hashes.get(record.canonical_id) != content_hash:
            ops.append(operation_row(route, kind=push, entity=stream, canonical_id=record.canonical_id,
                                     content_hash=content_hash, version=record.version))
        new_status = record.payload.get("status")
        if stream == "sales" and new_status and new_status != old_status:
            transition = StatusTransition(canonical_id=record.canonical_id, from_status=old_status,
                                          to_status=new_status, at=now)
            counts.transitions.append(transition)
            ops.extend(plan_transition(registry, route, view, transition, content_hash, record.version))
    s.flush()
    counts.operations = enqueue(s, ops)
    return counts


def _carry_status(view: RouteView, stream: str, carried: dict[str, Any]) -> str | None:
    """Put a carried status in the record's words, in place: the route's ``statuses`` table maps the source's status
    to the sink's, and the record holds the sink's (the route that brought the record wrote it so). Storing the
    source's word instead made the two routes rewrite the record in turn, each with its own word for one status.
    ``keep`` carries nothing. Returns the status when the table lacks it (the record is refused, not guessed)."""
    table = view.mappings.get("statuses")
    if stream != "sales" or "status" not in carried or not table or carried["status"] is None:
        return None
    status = carried["status"]
    if status not in table:
        return str(status)
    if table[status] == KEEP_STATUS:
        del carried["status"]
    else:
        carried["status"] = table[status]
    return None


UPDATE_RECORD = update(RECORDS).where(RECORDS.c.id == bindparam("rid")).values(
    payload=bindparam("payload"), content_hash=bindparam("hash"), natural_key=bindparam("key"),
    version=bindparam("version"), updated_at=bindparam("now"))
UPDATE_BINDING = update(BINDINGS).where(BINDINGS.c.id == bindparam("bid")).values(
    content_hash=bindparam("hash"), synced_at=bindparam("now"))


def _update_rows(s: Session, now: datetime, records: list[dict[str, Any]], bindings: list[dict[str, Any]]) -> None:
    """Changed records and their bindings, one executemany each by primary key (no ORM unit of work: a page of
    changes costs two statements, not a flush of a page of objects)."""
    if records:
        s.execute(UPDATE_RECORD, [{**r, "now": now} for r in records])
    if bindings:
        s.execute(UPDATE_BINDING, [{**b, "now": now} for b in bindings])


def _key_clashes(s: Session, tenant: str, source_id: int, stream: str, todo: list[tuple[str, Canonical]],
                 bindings: Mapping[str, Any]) -> tuple[list[tuple[str, Canonical]], list[tuple[str, Canonical, str]]]:
    """Split off the new records whose natural key another record of the same source already has (bound in the
    store, or earlier in this page): two sales numbered 123 are two sales, and merging them would lose one."""
    fresh_keys = {m.natural_key() for ext, m in todo if ext not in bindings} - {None}
    if not fresh_keys:
        return todo, []
    owners: dict[str, str] = {}
    for ext, nk in s.execute(select(Binding.external_id, Record.natural_key).join(
            Record, (Record.canonical_id == Binding.canonical_id) & (Record.entity == Binding.entity)
            & (Record.tenant_id == Binding.tenant_id)).where(
            Binding.connection_id == source_id, Binding.entity == stream, Record.tenant_id == tenant,
            one_of(s, Record.natural_key, fresh_keys))):
        if nk is not None:
            owners.setdefault(nk, ext)
    for ext, model in todo:  # bound records keep their key, even when it changes in this page
        nk = model.natural_key()
        if ext in bindings and nk is not None:
            owners.setdefault(nk, ext)
    keep: list[tuple[str, Canonical]] = []
    clashes: list[tuple[str, Canonical, str]] = []
    for ext, model in todo:
        nk = model.natural_key()
        if ext in bindings or nk is None:
            keep.append((ext, model))
            continue
        owner = owners.setdefault(nk, ext)
        if owner == ext:
            keep.append((ext, model))
        else:
            clashes.append((ext, model, owner))
    return keep, clashes


def _clash_text(tenant: str, platform: str, stream: str, ext: str, model: Canonical, other: str) -> dict[str, str]:
    noun = stream[:-1] if stream.endswith("s") else stream
    name = model.key_field or "key"
    label = {"sku": "SKU", "access_key": "access key"}.get(name, name)
    value = getattr(model, name, None) or model.natural_key()
    return dict(
        reason=f"{noun} {label} {value} is already used by {platform} {noun} {other}; {platform} {noun} {ext} "
               f"(tenant {tenant}) was not merged into it",
        fix=f"If they are two {stream}, give {platform} {noun} {ext} its own {label} on {platform} (or remove the "
            f"duplicate there); the next sync picks it up. If {ext} replaces {other}, cancel or delete {other} on "
            f"{platform} first.")


def write_page(s: Session, registry: Registry, route: Route, view: RouteView, stream: str,
               items: Sequence[Incoming | Rejected]) -> PageCounts:
    """:func:`ingest_page` in a savepoint; when the page fails to write (a constraint the model does not know, a
    value the database refuses), each record is written in its own savepoint and the ones that fail are
    quarantined, so the rest of the page and its cursor are still committed."""
    try:
        with s.begin_nested():
            return ingest_page(s, registry, route, view, stream, items)
    except Exception:
        if not items:
            raise
    counts = PageCounts()
    for item in items:
        try:
            with s.begin_nested():
                one = ingest_page(s, registry, route, view, stream, [item])
        except Exception as exc:
            detail = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
            quarantine(s, tenant=route.tenant_id, route_id=route.id, connection_id=route.source_id, entity=stream,
                       record=item.external_id, field="(record)",
                       reason=f"tenant {route.tenant_id}, {view.source.platform} {stream} {item.external_id}: the "
                              f"store refused it ({type(exc).__name__}: {detail})",
                       fix=f"Check this record on {view.source.platform} against the reason; if it looks right "
                           "there, report it with the record's payload. The rest of its page was synced.",
                       payload=item.raw if isinstance(item, Rejected) else
                       item.data if isinstance(item.data, dict) else item.data.model_dump(mode="json"))
            counts.quarantined += 1
            continue
        counts.add(one)
        counts.transitions.extend(one.transitions)
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
    model = stream_spec("sales").model.model_validate(
        {**original.payload, "status": cancel, "cancelled_by": payload_of(sale, "number")})
    content_hash = model.content_hash()
    original.payload, original.content_hash = model.model_dump(mode="json"), content_hash
    original.version, original.updated_at = original.version + 1, now
    ops = [operation_row(route, kind="push_sale", entity="sales", canonical_id=original.canonical_id,
                         content_hash=content_hash, version=original.version)]
    transition = StatusTransition(canonical_id=original.canonical_id, from_status=_mapped(view, old_status),
                                  to_status=_mapped(view, cancel) or cancel, at=now)
    return ops + plan_transition(registry, route, view, transition, content_hash, original.version)


def _mapped(view: RouteView, status: str | None) -> str | None:
    table = view.mappings.get("statuses")
    if status is None or not table:
        return status
    return table.get(status, status)


@dataclass(frozen=True)
class _Endpoint:
    connection_id: int
    platform: Platform
    plugin: str


def _endpoints(registry: Registry, route: Route, view: RouteView) -> list[_Endpoint]:
    """The route's ends whose platform is installed, the sink first: an action both declare runs on the sink."""
    ends = []
    for connection_id, endpoint in ((route.sink_id, view.sink), (route.source_id, view.source)):
        reg = registry.platforms.get(endpoint.platform)
        if reg is not None:
            ends.append(_Endpoint(connection_id, reg.platform, reg.plugin))
    return ends


def route_actions(view: RouteView, transition: StatusTransition) -> list[Action]:
    """The actions of every rule of the route's transition table that matches the change, in rule order, each
    with the change it answers as ``params["from"]``/``params["to"]`` ("" for a new sale)."""
    change = {"from": transition.from_status or "", "to": transition.to_status}
    return [Action(name=name, params=change) for rule in view.transitions
            if rule.matches(transition.from_status, transition.to_status) for name in rule.actions]


def plan_transition(registry: Registry, route: Route, view: RouteView, transition: StatusTransition,
                    content_hash: str, version: int | None = None) -> list[dict[str, Any]]:
    """The operations a status change calls for: the route's matching rules' actions, plus every action a plugin
    of the route names in answer to ``on_status_transition``; each runs once, on the route's platform that
    declares it in ``Platform.actions`` (the sink when both do). ``version``: the record's, so a sale cancelled,
    reopened and cancelled again reverses twice."""
    ends = _endpoints(registry, route, view)
    matched = route_actions(view, transition)
    wanted: list[tuple[_Endpoint, Action]] = []
    for action in matched:
        end = next((e for e in ends if action.name in e.platform.actions), None)
        if end is not None:
            wanted.append((end, action))
    for plugin, answer in registry.broadcast("on_status_transition", transition=transition, route=view,
                                             actions=matched):
        own = [e for e in ends if e.plugin == plugin]
        for action in answer or []:
            end = next((e for e in own if action.name in e.platform.actions), None)
            if end is None:
                if own:
                    log.warning("plugin %s asked for action %r on route %s/%s, which none of its platforms there "
                                "declares; not run (fix: list it in Platform.actions)", plugin, action.name,
                                view.tenant, view.name)
                continue
            params = {"from": transition.from_status or "", "to": transition.to_status, **action.params}
            wanted.append((end, action.model_copy(update={"params": params})))
    planned: dict[tuple[int, str], dict[str, Any]] = {}
    for end, action in wanted:
        if (end.connection_id, action.name) in planned:
            continue
        planned[(end.connection_id, action.name)] = operation_row(
            route, kind="perform_action", entity=transition.entity, canonical_id=transition.canonical_id,
            content_hash=content_hash, key_extra=f"{transition.from_status}->{transition.to_status}:{action.name}",
            params={"action": action.name, "params": action.params, "transition": transition.key},
            connection_id=end.connection_id, version=version)
    return list(planned.values())
