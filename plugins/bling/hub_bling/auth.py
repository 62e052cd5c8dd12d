"""Bling's OAuth 2.0 authorization-code flow: 6 h access tokens, 30-day refresh tokens that rotate on every use.

The core calls ``authenticate`` single-flight per connection and records each attempt before it is sent (see
``hub.sync.loading.ensure_auth``), so two workers never spend the same refresh token and a lost answer is known.
Bling's refresh tokens rotate strictly (the platform declares no grace window), so this hook must tell a definite
refusal (400/401: AuthRevoked) from a lost or failed answer (timeouts, 5xx: Retriable). Token calls are also paced
per process and host (Bling blocks an IP for an hour after 20 token calls in 60 s).
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from hub import ConnectorContext, Credentials
from hub.errors import AuthRevoked, Fatal, HubError, InvalidRecord, NotFound, Retriable

from hub_bling.client import error_body, error_for, loads, options, request
from hub_bling.options import API_BASE

TOKEN_CALLS_PER_SECOND = 18 / 60
REFRESH_LIFETIME = timedelta(days=30)


def authorize_url(ctx: ConnectorContext, state: str | None = None) -> tuple[str, str]:
    """The page a merchant's admin opens to grant access, and the ``state`` to check on the way back."""
    state = state or secrets.token_urlsafe(16)
    query = urlencode({"response_type": "code", "client_id": ctx.credentials.get("client_id", ""), "state": state})
    return f"{options(ctx).authorize()}?{query}", state


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def authenticate(ctx: ConnectorContext) -> Credentials:
    creds = dict(ctx.credentials)
    code = creds.pop("authorization_code", None)
    if code:
        form = {"grant_type": "authorization_code", "code": code}
    elif creds.get("refresh_token"):
        form = {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"]}
    else:
        raise AuthRevoked(f"Bling connection {ctx.tenant}/{ctx.connection} was never authorized",
                          fix=f"Run `hub auth bling {ctx.tenant}` and open the link it prints.")
    body = _token_call(ctx, form)
    now = _now()
    creds.update(access_token=str(body["access_token"]), refresh_token=str(body["refresh_token"]))
    ctx.credentials.update(creds)
    if not creds.get("company_id"):
        # Also after a refresh: a connection bootstrapped from a refresh token has no company id, and a webhook
        # whose companyId cannot be checked is refused.
        try:
            company = request(ctx, "GET", "/empresas/me/dados-basicos")
            creds["company_id"] = str(company["data"]["id"])
        except (HubError, KeyError, TypeError):
            pass  # the new pair must be stored whatever happens next; the next renewal asks again
    return Credentials(values=creds, expires_at=now + timedelta(seconds=int(body.get("expires_in", 21600))),
                       renew_by=now + REFRESH_LIFETIME)


def _token_call(ctx: ConnectorContext, form: dict[str, str]) -> dict[str, Any]:
    client_id, secret = ctx.credentials.get("client_id", ""), ctx.credentials.get("client_secret", "")
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    host = urlsplit(options(ctx).base_url).netloc
    ctx.throttle(f"bling-oauth:{host}", TOKEN_CALLS_PER_SECOND)
    where = f"Bling POST /oauth/token (tenant {ctx.tenant}, connection {ctx.connection})"
    try:
        response = ctx.http.post("/oauth/token", data=form, headers={
            "Authorization": f"Basic {basic}", "Accept": "1.0", "enable-jwt": "1"})
    except httpx.TransportError as exc:
        # Chained: the core tells a request that never left (connect error) from an answer that was lost.
        raise Retriable(f"{where}: {type(exc).__name__}", fix="Check that Bling (base_url) is reachable.") from exc
    if response.status_code in (400, 401):
        error = error_body(response)
        raise AuthRevoked(
            f"{where}: Bling refused the {form['grant_type'].replace('_', ' ')} "
            f"({error.get('type', response.status_code)}: {error.get('description') or error.get('message', '')})",
            fix=f"The authorization was revoked or has expired: run `hub auth bling {ctx.tenant}`, open the link "
                "with Bling's main admin user and allow access. Queued work resumes by itself afterwards.")
    if response.status_code >= 500:
        raise Retriable(f"{where}: Bling answered {response.status_code}",
                        fix="Bling's token service failed; the hub renews again by itself.")
    if response.status_code in (404, 405):
        # Not "the record is gone": no record is involved, and a push must not drop its binding over it.
        raise Fatal(f"{where}: Bling has no token endpoint at {response.request.url}",
                    fix=f"Check options.base_url of connection {ctx.connection} (Bling's is {API_BASE}), then "
                        "`hub routes apply FILE`.")
    if response.status_code >= 400:
        refused = error_for(ctx, response, where)
        if isinstance(refused, NotFound | InvalidRecord):
            raise Fatal(f"{where}: {refused.message}", fix=refused.fix)
        raise refused
    body = loads(response)
    if not isinstance(body, dict) or "access_token" not in body:
        raise Retriable(f"{where}: unexpected answer", fix="Bling answered without a token; the hub retries.")
    return body
