"""The webhook endpoint: verify, dedupe, answer at once, and turn events into incremental syncs.

``POST /webhooks/{tenant}/{connection}``. The connection's plugin verifies the signature over the raw body
(``parse_webhook``); the core remembers each event id (platforms deliver twice) and marks every route that reads
the event's stream from that connection as due now. The scheduler then runs an ordinary incremental sync, which
re-reads records from the API: a webhook is only a trigger, so a lost, duplicated or out-of-order one does no harm.
Nothing slow happens before the answer (one transaction), well inside the 5 s platforms allow.
"""

from __future__ import annotations

import logging

from sqlalchemy import insert, select, update
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HttpRoute

from hub.errors import BadSignature, HubError
from hub.platform import WebhookEvent
from hub.store.engine import utcnow
from hub.store.schema import Connection, Route
from hub.store.schema import WebhookEvent as SeenEvent
from hub.sync.context import ConnectorContext
from hub.sync.loading import Runtime, credentials_of

log = logging.getLogger("hub.webhooks")
MAX_BODY = 1_000_000


def accept(rt: Runtime, tenant: str, connection: str, headers: dict[str, str], body: bytes) -> dict[str, object]:
    """Verify and record one delivery; return what was done. Raises BadSignature, or Fatal for no connection."""
    with rt.store.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.tenant_id == tenant, Connection.name == connection))
        if conn is None:
            raise BadSignature(f"no connection {tenant}/{connection}")
        s.expunge(conn)
    ctx = ConnectorContext(tenant=tenant, connection=connection, platform=conn.platform, options=conn.options,
                           credentials=credentials_of(rt.vault, conn), stream="webhook")
    events: list[WebhookEvent] = rt.registry.call(conn.platform, "parse_webhook", ctx=ctx, headers=headers,
                                                  body=body)
    now = utcnow()
    with rt.store.begin() as s:
        ids = [e.event_id for e in events]
        seen = set(s.scalars(select(SeenEvent.event_id).where(SeenEvent.connection_id == conn.id,
                                                                SeenEvent.event_id.in_(ids))))
        fresh = {e.event_id: e for e in events if e.event_id not in seen}
        if fresh:
            s.execute(insert(SeenEvent), [dict(tenant_id=tenant, connection_id=conn.id, event_id=e.event_id[:100],
                                               event=e.event[:64], received_at=now) for e in fresh.values()])
        streams = {e.stream for e in fresh.values() if e.stream}
        triggered = []
        if streams:
            for route in s.scalars(select(Route).where(Route.source_id == conn.id, Route.enabled.is_(True))):
                if streams & set(route.config.get("streams", [])):
                    triggered.append(route.name)
                    s.execute(update(Route).where(Route.id == route.id).values(next_run_at=now))
    return {"accepted": len(fresh), "duplicates": len(events) - len(fresh), "routes": sorted(triggered)}


def app(rt: Runtime) -> Starlette:
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            result = await run_in_threadpool(accept, rt, request.path_params["tenant"],
                                             request.path_params["connection"], headers, body)
        except BadSignature as exc:
            log.warning("webhook refused for %s/%s: %s", request.path_params["tenant"],
                        request.path_params["connection"], exc.message)
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        except HubError as exc:
            return JSONResponse({"error": exc.message}, status_code=400)
        return JSONResponse(result)

    return Starlette(routes=[HttpRoute("/webhooks/{tenant}/{connection}", receive, methods=["POST"])])
