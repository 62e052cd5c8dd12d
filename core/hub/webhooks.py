"""The webhook endpoint: verify, dedupe, answer at once, and turn events into incremental syncs.

``POST /webhooks/{tenant}/{connection}[?query]``. The connection's plugin verifies the signature over the raw
body, or a secret token in the URL's query string for platforms that sign nothing (``parse_webhook``); the core
remembers each event id (platforms deliver twice), records the record an event names (``external_id``) for every
route that reads the event's stream from that connection, marks those routes due now and wakes the schedulers of
every ``hub run`` (:mod:`hub.sync.targets`: in this process, and through Redis in the others). The route's run then
re-reads only the named records from the API when the plugin can (``pull_records``), or runs an ordinary
incremental sync; the incremental run stays the backstop, so a lost, duplicated or out-of-order webhook does no
harm. An event about a record an operation of that connection is waiting on (a note SEFAZ held when last read:
its id is the operation's remote id) makes that operation due now, so the wait ends when the platform says so,
not at the next scheduled read. Nothing slow happens before the answer (one transaction), well inside the 5 s
platforms allow.

The endpoint faces the internet: a body over 1 MB is refused (413) without being read or held, events are
validated before they touch the store (4xx, never a 500), and concurrent deliveries of one event insert it once
(``ON CONFLICT DO NOTHING``): one is accepted, the others answered as duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HttpRoute

from hub.errors import BadSignature, HubError, InvalidRecord
from hub.platform import WebhookEvent
from hub.privacy import mask_documents
from hub.store.engine import utcnow
from hub.store.schema import Connection, Operation, Route
from hub.store.schema import WebhookEvent as SeenEvent
from hub.sync import targets
from hub.sync.loading import Runtime, connection_context

log = logging.getLogger("hub.webhooks")
DUE_LISTENERS: list[Callable[[], object]] = targets.LISTENERS
"""Called after a delivery marks routes due: a ``hub run`` serving the webhooks itself starts them at once (the
same list as ``hub.sync.targets.LISTENERS``; other processes are woken through Redis)."""
MAX_BODY = 1_000_000


class Delivered(BaseModel):
    """What the store keeps of an event, checked at the edge: a plugin's parse must not turn a sender's oversized
    or empty id into a database error."""

    model_config = ConfigDict(extra="ignore")
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    event: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    stream: str | None = None
    external_id: str | None = None


def _checked(tenant: str, connection: str, events: list[WebhookEvent]) -> list[Delivered]:
    try:
        return [Delivered.model_validate(e.model_dump()) for e in events]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRecord(f"webhook for {tenant}/{connection}: {field}: {first['msg']}", field=field,
                            fix="The sender's event is malformed (event id 1-100 characters, event name 1-64); "
                                "it was refused and nothing was recorded.") from None


def _kept(external_id: str | None) -> str | None:
    """The named record as the event row keeps it (an id longer than the column names nothing a wait could use)."""
    return external_id if external_id and len(external_id) <= 100 else None


def _insert_new(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING``: of concurrent deliveries of one event, one row lands and
    the others are told it was already there (no unique-violation error)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(SeenEvent).on_conflict_do_nothing(index_elements=["connection_id", "event_id"])
            .returning(SeenEvent.event_id))


def accept(rt: Runtime, tenant: str, connection: str, headers: dict[str, str], body: bytes,
           query: dict[str, str] | None = None) -> dict[str, object]:
    """Verify and record one delivery; return what was done. Raises BadSignature, or Fatal for no connection.

    ``query`` is the URL's query string (first value of each name): a platform that signs nothing authenticates
    its deliveries with a secret token in the URL registered for the connection."""
    with rt.store.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.tenant_id == tenant, Connection.name == connection))
        if conn is None:
            raise BadSignature(f"no connection {tenant}/{connection}")
        s.expunge(conn)
    ctx = connection_context(rt, conn, stream="webhook")
    parsed: list[WebhookEvent] = rt.registry.call(conn.platform, "parse_webhook", ctx=ctx, headers=headers,
                                                  body=body, query=dict(query or {}))
    events = _checked(tenant, connection, parsed)
    now = utcnow()
    insert = _insert_new(rt.store.dialect)
    with rt.store.begin() as s:
        fresh: list[Delivered] = []
        for e in events:
            if s.execute(insert.values(tenant_id=tenant, connection_id=conn.id, event_id=e.event_id, event=e.event,
                                       received_at=now, external_id=_kept(e.external_id))).first() is not None:
                fresh.append(e)
        streams = {e.stream for e in fresh if e.stream}
        triggered = []
        if streams:
            for route in s.scalars(select(Route).where(Route.source_id == conn.id, Route.enabled.is_(True))):
                read = streams & set(route.config.get("streams", []))
                if read:
                    triggered.append(route.name)
                    for stream in sorted(read):
                        targets.record(s, rt.store.dialect, tenant, route.id, stream,
                                       [e.external_id for e in fresh if e.stream == stream], now)
                    s.execute(update(Route).where(Route.id == route.id).values(next_run_at=now))
        named = sorted({e.external_id for e in fresh if e.external_id})
        # A waiting operation that names the record goes now. One still running (it may be about to wait) is
        # marked too: its wait then ends at once (`hub.sync.operations._reschedule`), so an event that lands
        # between its last read and its wait is not lost to the timed backstop.
        woken = s.execute(update(Operation).where(  # type: ignore[attr-defined]
            Operation.connection_id == conn.id, Operation.remote_id.in_(named),
            or_((Operation.state == "pending") & (Operation.available_at > now), Operation.state == "running"),
        ).values(available_at=now)).rowcount if named else 0
    if triggered:
        targets.wake(rt.settings.redis_url if rt.settings is not None else None)
    result: dict[str, object] = {"accepted": len(fresh), "duplicates": len(events) - len(fresh),
                                 "routes": sorted(triggered)}
    if woken:
        result["operations_woken"] = int(woken)
    return result


class TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, refused past ``limit`` bytes: at once when Content-Length says so, else as soon as the stream
    passes it (a chunked body is never held whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise TooLarge(declared)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"more than {limit}")
    return bytes(body)


def app(rt: Runtime) -> Starlette:
    async def receive(request: Request) -> JSONResponse:
        tenant, connection = request.path_params["tenant"], request.path_params["connection"]
        try:
            body = await read_body(request)
        except TooLarge as exc:
            log.warning("webhook refused for %s/%s: body of %s bytes (limit %d)", tenant, connection, exc, MAX_BODY)
            return JSONResponse({"error": f"body too large (limit {MAX_BODY} bytes)"}, status_code=413,
                                headers={"Connection": "close"})
        except ClientDisconnect:
            return JSONResponse({"error": "incomplete body"}, status_code=400)
        headers = {k.lower(): v for k, v in request.headers.items()}
        query: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            query.setdefault(name, value)  # the first value of a repeated name, so a second cannot override it
        try:
            result = await run_in_threadpool(accept, rt, tenant, connection, headers, body, query)
        except BadSignature as exc:
            log.warning("webhook refused for %s/%s: %s", tenant, connection, mask_documents(exc.message))
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        except HubError as exc:
            log.warning("webhook refused for %s/%s: %s (fix: %s)", tenant, connection, mask_documents(exc.message),
                        mask_documents(exc.fix))
            return JSONResponse({"error": mask_documents(exc.message)}, status_code=400)
        return JSONResponse(result)

    return Starlette(routes=[HttpRoute("/webhooks/{tenant}/{connection}", receive, methods=["POST"])])
