"""The ASGI app: OAuth endpoints, then one gate in front of every API route.

The gate does, in order: count and log the request, refuse blocked IPs, play injected faults, check the bearer
token, apply the account's rate limits (per second, sliding; per local day: the box's :class:`Limits`), dispatch,
and count errors toward an IP block. Sleeps happen outside the lock; everything else inside it, one request at a
time.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import spec
from . import catalog, nfe, oauth, orders, parties
from .common import ApiError, Call, Handler, Query
from .state import State

if TYPE_CHECKING:
    from .box import BlingSandbox

log = logging.getLogger(__name__)

ERROR_WINDOW = 10.0
ERRORS_BEFORE_BLOCK = 300
ERROR_BLOCK_SECONDS = 600.0
LIST_TEMPLATES = frozenset({"/produtos", "/contatos", "/categorias/produtos", "/depositos", "/vendedores",
                            "/formas-pagamentos", "/pedidos/vendas", "/nfe"})
"""Paged lists: the ``repeat_page`` fault answers the next page of a listing (same filters) with the page it sent
last for that listing, as a server whose paging slipped would."""
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class Router:
    """Spec-style templates to handlers; literal segments win over parameters (``/contatos/tipos`` before
    ``/contatos/{idContato}``)."""

    def __init__(self, routes: Iterable[tuple[str, str, Handler]]) -> None:
        handlers: dict[str, dict[str, Handler]] = {}
        for method, template, handler in routes:
            handlers.setdefault(template, {})[method] = handler
        self.by_len: dict[int, list[tuple[tuple[str | None, ...], tuple[str, ...], str, dict[str, Handler]]]] = {}
        for template, methods in handlers.items():
            parts = template.strip("/").split("/")
            pattern = tuple(None if p.startswith("{") else p for p in parts)
            names = tuple(p[1:-1] for p in parts if p.startswith("{"))
            self.by_len.setdefault(len(parts), []).append((pattern, names, template, methods))
        for rows in self.by_len.values():
            rows.sort(key=lambda row: -sum(p is not None for p in row[0]))

    def find(self, method: str, path: str) -> tuple[Handler, dict[str, str], str]:
        segments = path.strip("/").split("/")
        allowed = False
        for pattern, names, template, methods in self.by_len.get(len(segments), []):
            if all(p is None or p == s for p, s in zip(pattern, segments, strict=True)):
                handler = methods.get(method)
                if handler is None:
                    allowed = True
                    continue
                values = [s for p, s in zip(pattern, segments, strict=True) if p is None]
                return handler, dict(zip(names, values, strict=True)), template
        if allowed:
            raise ApiError(405, "METHOD_NOT_ALLOWED", "Método não permitido",
                           f"O método {method} não é permitido para este recurso.")
        raise ApiError(404, "RESOURCE_NOT_FOUND", "Recurso não encontrado",
                       "O recurso requisitado não foi encontrado.")


def too_many(box: BlingSandbox, period: str) -> Response:
    """Bling's 429 body: which limit (``second`` or ``day``) and its value."""
    box.counters.throttled += 1
    limit: Any = box.settings.daily_limit if period == "day" else (box.settings.rate_per_second or 3)
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)
    description = ("O limite de requisições por dia foi atingido, tente novamente mais tarde." if period == "day"
                   else "O limite de requisições por segundo foi atingido, tente novamente mais tarde.")
    return ApiError(429, "TOO_MANY_REQUESTS", "Limite de requisições atingido.", description,
                    limit=limit, period=period).response()


def _note_error(st: State, now: float) -> None:
    st.errors.append(now)
    while st.errors and st.errors[0] <= now - ERROR_WINDOW:
        st.errors.popleft()
    if len(st.errors) >= ERRORS_BEFORE_BLOCK:
        st.blocked_until = max(st.blocked_until, now + ERROR_BLOCK_SECONDS)


def _authorize(st: State, header: str) -> Response | None:
    scheme, _, token = header.partition(" ")
    problem = st.tokens.check(token.strip()) if scheme.lower() == "bearer" else "invalid"
    if problem == "invalid":
        return ApiError(401, "invalid_token", "invalid_token", "The access token provided is invalid").response()
    if problem == "expired":
        return ApiError(401, "invalid_token", "invalid_token", "The access token provided has expired").response()
    return None


def _throttle(box: BlingSandbox, now: float) -> Response | None:
    throttled = box.limits.take(now)
    return None if throttled is None else too_many(box, throttled.rule.name)


def _parse(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def build_app(box: BlingSandbox) -> Starlette:
    st = box.state
    router = Router([*catalog.ROUTES, *parties.ROUTES, *orders.ROUTES, *nfe.ROUTES])

    def dispatch(method: str, path: str, pairs: list[tuple[str, str]], body: Any, auth: str,
                 fault: str | None) -> Response:
        if fault == "401":
            st.tokens.drop_access()
        denied = _authorize(st, auth) or _throttle(box, st.clock.time())
        if denied is not None:
            return denied
        try:
            handler, params, template = router.find(method, path)
            query = Query(pairs, spec.namespace(template))
            listing = (template, query.key("pagina")) if method == "GET" and template in LIST_TEMPLATES else None
            if listing is not None and box.faults.repeat_armed and listing in st.last_page:
                box.faults.take_repeat()
                return Response(st.last_page[listing], media_type="application/json")
            response = handler(st, Call(method, path, params, query, body, template))
            if listing is not None and response.status_code == 200:
                st.last_page[listing] = bytes(response.body)
            return response
        except ApiError as error:
            return error.response()
        except Exception:
            log.exception("bling sandbox: %s %s failed", method, path)
            return ApiError(500, "SERVER_ERROR", "Erro interno do servidor",
                            "Ocorreu um erro inesperado; tente novamente mais tarde.").response()

    async def api(request: Request) -> Response:
        path = "/" + request.path_params["rest"].strip("/")
        body = _parse(await request.body())
        pairs = request.query_params.multi_items()
        method = request.method
        with st.lock:
            now = st.clock.time()
            st.counters.requests += 1
            headers = dict(request.headers)
            if "authorization" in headers:  # one copy of a 1.5 kB JWT, not one per logged request
                headers["authorization"] = sys.intern(headers["authorization"])
            st.counters.log.append({"method": method, "path": path, "query": list(pairs), "body": body,
                                   "headers": headers})
            if now < st.blocked_until:
                return oauth.blocked_response()
            fault = box.faults.next(method)
            if fault == "500":
                _note_error(st, now)
                return ApiError(500, "SERVER_ERROR", "Erro interno do servidor",
                                "Ocorreu um erro inesperado; tente novamente mais tarde.").response()
            if fault in ("429", "429-day"):
                _note_error(st, now)
                return too_many(box, "day" if fault == "429-day" else "second")
        await box.delay(fault)
        with st.lock:
            response = dispatch(method, path, pairs, body, request.headers.get("authorization", ""), fault)
            if response.status_code >= 400:
                _note_error(st, st.clock.time())
        if fault == "timeout-after-write":
            await box.answer_late()
        return response

    async def token(request: Request) -> Response:
        return await oauth.token_endpoint(st, request, box.fault_delay)

    async def authorize(request: Request) -> Response:
        return await oauth.authorize_endpoint(st, request)

    async def revoke(request: Request) -> Response:
        return await oauth.revoke_endpoint(st, request)

    return Starlette(routes=[
        Route("/Api/v3/oauth/token", token, methods=["POST"]),
        Route("/Api/v3/oauth/authorize", authorize, methods=["GET"]),
        Route("/Api/v3/oauth/revoke", revoke, methods=["POST"]),
        Route("/Api/v3/{rest:path}", api, methods=METHODS),
    ])
