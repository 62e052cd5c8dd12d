"""`hub auth` from the Connections page: the platform's consent page, then back to this console's ``/auth/callback``.

A plugin whose platform authorizes with an OAuth authorization code offers its consent page through
``Platform.extra["consent_url"]``: a callable ``(ctx, state, redirect_uri) -> str | None`` (None when this
connection authorizes otherwise, e.g. Zydon with an API key pair). The console sends the person there with a
``state`` that is

* signed (HMAC-SHA256 under the session key) over the tenant, the connection id, the user and a digest of the
  session's CSRF token: it is worth nothing in another sign-in, for another user or another connection;
* expiring (:data:`STATE_TTL`; the platforms' codes last a minute or a few);
* single-use: the callback records it in the store's ledger of one-time ids per connection (``webhook_events``, the
  table that makes a webhook count once) before anything else, so a replayed callback is refused by every
  ``hub serve`` process alike.

The callback then does what ``hub auth`` does (:func:`hub.auth.authorize`): the code is stored with the encrypted
credentials, the plugin's ``authenticate`` exchanges it, and the connection's waiting work resumes. Platforms
without a consent page (API keys, CPlug's password grant, Amazon's refresh token) get the command to run instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.auth import authorize
from hub.errors import Fatal, HubError
from hub.privacy import mask_documents
from hub.store.engine import utcnow
from hub.store.schema import Connection, WebhookEvent
from hub.sync.loading import Runtime, connection_context

if TYPE_CHECKING:
    from hub.console.app import Console, Page

STATE_TTL = 600
"""Seconds a consent link stays good: long enough to sign in at the platform, short enough to be useless later."""
CALLBACK = "/auth/callback"
CODE_PARAMS = ("code", "spapi_oauth_code", "pluggtocode")
"""Where platforms put the code on the way back: OAuth's ``code``, Amazon's and Plugg.to's own names."""
LEDGER_EVENT = "console_auth"

Consent = Callable[[Any, str, str], "str | None"]


def consent_of(rt: Runtime, platform: str) -> Consent | None:
    """The platform's consent-page builder, or None when its plugin declares none (or is not installed)."""
    try:
        found = rt.registry.platform(platform)
    except Fatal:
        return None
    consent = (found.extra or {}).get("consent_url")
    return consent if callable(consent) else None


def consent_url(rt: Runtime, conn: Connection, state: str, redirect_uri: str) -> str | None:
    """The consent page for ``conn`` (None: it authorizes with its configured credentials instead)."""
    consent = consent_of(rt, conn.platform)
    if consent is None:
        return None
    ctx = connection_context(rt, conn)
    try:
        url = consent(ctx, state, redirect_uri)
    finally:
        ctx.close()
    return str(url) if url else None


def callback_url(request: Request) -> str:
    """This console's callback as the browser reaches it (the scheme a TLS proxy reports with --proxy-headers)."""
    return str(request.base_url).rstrip("/") + CALLBACK


class States:
    """Signed, expiring consent states bound to one session, user, tenant and connection."""

    def __init__(self, session_key: bytes) -> None:
        self.key = hmac.new(session_key, b"hub console oauth state v1", hashlib.sha256).digest()

    @staticmethod
    def _bound(session: dict[str, Any]) -> str:
        return hashlib.sha256(f"oauth-state:{session.get('csrf', '')}".encode()).hexdigest()[:32]

    def _sign(self, body: str) -> str:
        digest = hmac.new(self.key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, session: dict[str, Any], uid: int, tenant: str, connection_id: int) -> str:
        claims = {"n": secrets.token_urlsafe(12), "t": tenant, "c": connection_id, "u": uid,
                  "b": self._bound(session), "x": int(time.time()) + STATE_TTL}
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def read(self, state: str) -> dict[str, Any] | None:
        """The claims of a state this console signed and that has not expired, else None."""
        if state.count(".") != 1:
            return None
        body, signature = state.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        if not isinstance(claims, dict) or float(claims.get("x", 0)) < time.time():
            return None
        return claims

    def same_session(self, claims: dict[str, Any], session: dict[str, Any], uid: int) -> bool:
        return claims.get("u") == uid and hmac.compare_digest(str(claims.get("b", "")), self._bound(session))


def spend(rt: Runtime, tenant: str, connection_id: int, state: str) -> bool:
    """Record ``state`` as used (once across every process); False when it was used before."""
    event_id = "console-auth:" + hashlib.sha256(state.encode()).hexdigest()
    insert = postgresql.insert if rt.store.dialect == "postgresql" else sqlite.insert
    statement = (insert(WebhookEvent).on_conflict_do_nothing(index_elements=["connection_id", "event_id"])
                 .returning(WebhookEvent.event_id))
    with rt.store.begin() as s:
        return s.execute(statement.values(tenant_id=tenant, connection_id=connection_id, event_id=event_id,
                                          event=LEDGER_EVENT, received_at=utcnow())).first() is not None


class ConsoleAuth:
    """The two endpoints: the Connections page's "authorize" button, and the platform's way back."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rt = console.rt
        self.states = States(console.sessions.key)

    def start(self, page: Page) -> Response:
        """POST (with the form's CSRF token): off to the platform's consent page."""
        from hub.console.app import NotFound

        name = page.request.path_params["name"]
        with self.rt.store.sessions() as s:
            conn = s.scalar(select(Connection).where(Connection.tenant_id == page.tenant, Connection.name == name))
            if conn is None:
                raise NotFound(name)
            s.expunge(conn)
        redirect_uri = callback_url(page.request)
        state = self.states.issue(page.session, page.user.id, page.tenant, conn.id)
        url = consent_url(self.rt, conn, state, redirect_uri)
        if url is None:
            raise HubError(f"connection {page.tenant}/{name} ({conn.platform}) has no consent page to open",
                           fix=f"It authorizes with the credentials of the route file: set them, `hub routes apply "
                               f"FILE`, then `hub auth {conn.platform} {page.tenant} --connection {name}`.")
        return RedirectResponse(url, status_code=303)

    async def callback(self, request: Request) -> Response:
        """GET ``/auth/callback?code=...&state=...``: check the state, spend it, exchange the code, resume."""
        console = self.console
        user, session = await console._user(request)
        if user is None:
            return console.render(request, "error.html", status=401, session=session, user=None, tenant=None,
                                  message=console_t(request, "auth_sign_in_first"),
                                  fix=console_t(request, "auth_start_again"))
        query = request.query_params
        state = query.get("state", "")
        claims = self.states.read(state)

        def refused(key: str, status: int = 400, tenant: str | None = None, detail: str = "") -> Response:
            return console.render(request, "error.html", status=status, session=session, user=user, tenant=tenant,
                                  message=console_t(request, key) + (f" {detail}" if detail else ""),
                                  fix=console_t(request, "auth_start_again"))

        if claims is None:
            return refused("auth_bad_state")
        tenant, conn_id = str(claims.get("t", "")), claims.get("c")
        if tenant not in user.tenants or not isinstance(conn_id, int):
            return console.render(request, "404.html", status=404, session=session, user=user, tenant=None)
        with self.rt.store.sessions() as s:
            conn = s.scalar(select(Connection).where(Connection.id == conn_id, Connection.tenant_id == tenant))
            if conn is None:
                return console.render(request, "404.html", status=404, session=session, user=user, tenant=tenant)
            s.expunge(conn)
        if not self.states.same_session(claims, session, user.id):
            return refused("auth_other_session", tenant=tenant)
        if not await run_in_threadpool(spend, self.rt, tenant, conn.id, state):
            return refused("auth_state_used", tenant=tenant)
        if query.get("error"):
            said = mask_documents(f"{query['error']}: {query.get('error_description', '')}".rstrip(": "))
            return refused("auth_platform_refused", tenant=tenant, detail=said)
        code = next((query[name] for name in CODE_PARAMS if query.get(name)), None)
        if code is None:
            return refused("auth_no_code", tenant=tenant)
        grant = {"authorization_code": code}
        redirect_uri = callback_url(request)
        opened = await run_in_threadpool(consent_url, self.rt, conn, "-", redirect_uri)
        if opened is not None and "redirect_uri=" in opened:
            # The token request repeats the redirect_uri the consent page was opened with (RFC 6749, 4.1.3);
            # a platform that only knows the address registered on its app (Bling) is not given one.
            grant["redirect_uri"] = redirect_uri
        try:
            resumed = await run_in_threadpool(authorize, self.rt, conn.id, grant)
        except HubError as exc:
            return console.render(request, "error.html", status=400, session=session, user=user, tenant=tenant,
                                  message=mask_documents(exc.message), fix=mask_documents(exc.fix))
        target = f"/t/{tenant}/connections?msg=auth_done&route={conn.name}&n={resumed}"
        return RedirectResponse(target, status_code=303)


def console_t(request: Request, key: str) -> str:
    from hub.console import i18n

    return i18n.translate(i18n.pick_lang(request), key)
