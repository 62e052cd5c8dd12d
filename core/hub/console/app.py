"""The console's ASGI app: pages per tenant, login, the webhook receiver, ``/metrics`` and ``/health``.

Every tenant page checks that the signed-in user is bound to the tenant in its URL, and every id a page acts on
is looked up inside that tenant: another tenant's page or id answers 404, exactly like one that does not exist.
Every form carries the session's CSRF token. Lists page by keyset on indexed columns, never by OFFSET.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from hub import webhooks
from hub.console import i18n, pages
from hub.console.health import readiness
from hub.console.metrics import make_registry, render
from hub.console.oauth import CALLBACK, ConsoleAuth
from hub.console.session import Sessions, csrf_ok, derive_key, new_csrf
from hub.console.users import Principal, authenticate, principal
from hub.errors import HubError
from hub.sync.loading import Runtime

HERE = Path(__file__).resolve().parent
DEFAULT_ZONE = "America/Sao_Paulo"


class NotFound(Exception):
    """Answered 404: the page or id does not exist for this user (another tenant's looks the same)."""


@dataclass
class Page:
    """What a tenant page handler is given."""

    request: Request
    tenant: str
    user: Principal
    lang: str
    zone: ZoneInfo
    session: dict[str, Any]
    form: dict[str, str] = field(default_factory=dict)

    def t(self, key: str, **values: object) -> str:
        return i18n.translate(self.lang, key, **values)


Handler = Callable[[Page], Response]


class Console:
    def __init__(self, rt: Runtime, secret: bytes, redis_url: str | None = None) -> None:
        self.rt = rt
        self.redis_url = redis_url
        self.sessions = Sessions(derive_key(secret))
        self.metrics, _ = make_registry(rt.store)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))

    # -- rendering -------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, *, lang: str | None = None,
               session: dict[str, Any] | None = None, **context: Any) -> HTMLResponse:
        lang = lang or i18n.pick_lang(request)
        session = session if session is not None else self.sessions.read(request)
        zone: ZoneInfo = context.pop("zone", None) or ZoneInfo(DEFAULT_ZONE)

        def local(value: datetime | None, with_seconds: bool = False) -> str:
            if value is None:
                return i18n.translate(lang, "never")
            shown = value.replace(tzinfo=UTC).astimezone(zone)
            return shown.strftime("%d/%m/%Y %H:%M:%S" if with_seconds else "%d/%m/%Y %H:%M")

        def lang_url(code: str) -> str:
            params = dict(request.query_params)
            params["lang"] = code
            return f"{request.url.path}?{urlencode(params)}"

        html = self.env.get_template(template).render(
            request=request, t=lambda key, **v: i18n.translate(lang, key, **v), lang=lang, local=local,
            zone=str(zone.key), csrf=session.get("csrf", ""), lang_url=lang_url, **context)
        response = HTMLResponse(html, status_code=status)
        if request.query_params.get("lang") in i18n.LANGS:
            response.set_cookie("hub_lang", lang, max_age=365 * 86400, samesite="lax", httponly=True)
        return response

    def not_found(self, request: Request) -> HTMLResponse:
        return self.render(request, "404.html", status=404)

    # -- auth ------------------------------------------------------------------------------------------------

    def _session(self, request: Request) -> dict[str, Any]:
        return self.sessions.read(request)

    async def login(self, request: Request) -> Response:
        session = self._session(request)
        if request.method == "GET":
            if not session.get("csrf"):
                session = {"csrf": new_csrf()}
            shown = self.render(request, "login.html", session=session, error=None)
            self.sessions.write(request, shown, session)
            return shown
        form = await request.form()
        if not csrf_ok(session, str(form.get("csrf", ""))):
            return self.render(request, "login.html", status=403, session=session, error="bad_csrf")
        user = await run_in_threadpool(authenticate, self.rt.store, str(form.get("email", "")),
                                       str(form.get("password", "")))
        if user is None:
            return self.render(request, "login.html", status=401, session=session, error="bad_login")
        wanted = str(form.get("next", ""))
        # Back to the page that asked for the login, only ever a path of this console (no open redirect).
        target = wanted if wanted.startswith("/t/") and "//" not in wanted and "\\" not in wanted else "/"
        response: Response = RedirectResponse(target, status_code=303)
        # A new CSRF token at login: a token seen before signing in is not worth anything after.
        self.sessions.write(request, response, {"uid": user.id, "csrf": new_csrf()})
        return response

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        session = self._session(request)
        if not csrf_ok(session, str(form.get("csrf", ""))):
            return PlainTextResponse("invalid form token", status_code=403)
        response = RedirectResponse("/login", status_code=303)
        self.sessions.clear(request, response)
        return response

    async def _user(self, request: Request) -> tuple[Principal | None, dict[str, Any]]:
        session = self._session(request)
        uid = session.get("uid")
        if not isinstance(uid, int):
            return None, session
        return await run_in_threadpool(principal, self.rt.store, uid), session

    async def home(self, request: Request) -> Response:
        user, session = await self._user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        if len(user.tenants) == 1:
            return RedirectResponse(f"/t/{user.tenants[0]}/routes", status_code=303)
        return self.render(request, "home.html", session=session, user=user, tenant=None)

    def tenant_page(self, handler: Handler, *, post: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user, session = await self._user(request)
            if user is None:
                if post:
                    return PlainTextResponse("sign in first", status_code=401)
                return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", status_code=303)
            tenant = request.path_params["tenant"]
            if tenant not in user.tenants:
                return self.render(request, "404.html", status=404, session=session, user=user, tenant=None)
            form: dict[str, str] = {}
            if post:
                raw = await request.form()
                form = {k: str(v) for k, v in raw.multi_items()}
                if not csrf_ok(session, form.get("csrf")):
                    return self.render(request, "403.html", status=403, session=session, user=user, tenant=tenant)
            zone = await run_in_threadpool(pages.tenant_zone, self.rt, tenant, DEFAULT_ZONE)
            page = Page(request, tenant, user, i18n.pick_lang(request), zone, session, form)
            try:
                return await run_in_threadpool(handler, page)
            except NotFound:
                return self.render(request, "404.html", status=404, session=session, user=user, tenant=tenant)
            except HubError as exc:
                return self.render(request, "error.html", status=400, session=session, user=user, tenant=tenant,
                                   zone=zone, message=exc.message, fix=exc.fix)

        return endpoint

    def page(self, page: Page, template: str, **context: Any) -> HTMLResponse:
        return self.render(page.request, template, lang=page.lang, session=page.session, user=page.user,
                           tenant=page.tenant, zone=page.zone,
                           message=i18n.translate(page.lang, page.request.query_params["msg"],
                                                  n=page.request.query_params.get("n", ""),
                                                  route=page.request.query_params.get("route", ""))
                           if page.request.query_params.get("msg") in i18n.WORDS else None, **context)

    # -- operations endpoints ---------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        ok, checks = await run_in_threadpool(readiness, self.rt.store, self.redis_url)
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                            status_code=200 if ok else 503)

    async def scrape(self, request: Request) -> Response:
        body = await run_in_threadpool(render, self.metrics)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def redirect(page: Page, path: str, **params: object) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"/t/{page.tenant}{path}" + (f"?{query}" if query else ""), status_code=303)


def make_app(rt: Runtime, secret: bytes, redis_url: str | None = None) -> Starlette:
    """The whole ``hub serve`` app. ``secret`` signs the session cookies (see :mod:`hub.console.session`)."""
    console = Console(rt, secret, redis_url)
    views = pages.Views(console)
    consent = ConsoleAuth(console)
    tp = console.tenant_page
    routes: list[BaseRoute] = [
        Route("/health", console.health),
        Route("/health/ready", console.ready),
        Route("/metrics", console.scrape),
        Route("/login", console.login, methods=["GET", "POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/", console.home),
        Route("/t/{tenant}/", tp(views.routes)),
        Route("/t/{tenant}/connections", tp(views.connections)),
        Route("/t/{tenant}/connections/{name}/authorize", tp(consent.start, post=True), methods=["POST"]),
        Route(CALLBACK, consent.callback),
        Route("/t/{tenant}/connections/{name}/{switch:str}", tp(views.switch_connection, post=True),
              methods=["POST"]),
        Route("/t/{tenant}/routes", tp(views.routes)),
        Route("/t/{tenant}/routes/{route}/run", tp(views.run_now, post=True), methods=["POST"]),
        Route("/t/{tenant}/routes/{route}/streams/{stream}/run", tp(views.run_stream_now, post=True),
              methods=["POST"]),
        Route("/t/{tenant}/routes/{route}/runs", tp(views.runs)),
        Route("/t/{tenant}/routes/{route}/mappings", tp(views.mappings)),
        Route("/t/{tenant}/routes/{route}/mappings", tp(views.save_mappings, post=True), methods=["POST"]),
        Route("/t/{tenant}/routes/{route}/mappings/file", tp(views.write_mappings_file, post=True), methods=["POST"]),
        Route("/t/{tenant}/logs", tp(views.logs)),
        Route("/t/{tenant}/quarantine", tp(views.quarantine)),
        Route("/t/{tenant}/quarantine/{id:int}/retry", tp(views.retry_quarantined, post=True), methods=["POST"]),
        Route("/t/{tenant}/failed", tp(views.failed)),
        Route("/t/{tenant}/failed/retry", tp(views.retry_all, post=True), methods=["POST"]),
        Route("/t/{tenant}/failed/{id:int}/retry", tp(views.retry_one, post=True), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        *webhooks.app(rt).routes,  # the receiver `hub run --webhook-port` serves, unchanged
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return console.not_found(request)

    return Starlette(routes=routes, exception_handlers={404: not_found})


def zone_of(name: str | None, default: str = DEFAULT_ZONE) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


def day_bounds(day: str, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """A date typed in the tenant's zone as naive-UTC [start, end) bounds, or None when it is not a date."""
    try:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=zone)
    except ValueError:
        return None
    begin = start.astimezone(UTC).replace(tzinfo=None)
    return begin, (start + timedelta(days=1)).astimezone(UTC).replace(tzinfo=None)
