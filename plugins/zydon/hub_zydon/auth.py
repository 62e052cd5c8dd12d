"""Zydon's authentication, in one place: an organization API key pair exchanged for a JWT, and App Studio's OAuth.

What is known and what is assumed (README, "Assumptions"):

* The key pair ("ID da Chave" + "Chave Secreta", created under Configurações da Organização -> Chaves de API) is
  exchanged at ``POST /api/account/access-key/login`` with ``{"code", "token", "solution_id"}`` for
  ``{"accessToken": JWT}``. This comes from third-party code that writes to live Zydon organizations, not from
  Zydon's docs, whose authentication page is not in the public copy.
* Every documented call sends ``Authorization: Bearer <JWT>``.
* The JWT's lifetime is not published. The plugin reads the token's own ``exp`` claim (decoded without checking the
  signature: the hub does not have Zydon's key, and only Zydon needs to trust the token) and the core renews it
  ahead of that moment. A token without ``exp`` is assumed to live :data:`ASSUMED_LIFETIME`; a 401 on any call
  renews it at once either way.
* App Studio installs (multi-tenant): the person authorizes at :data:`AUTHORIZE_URL`; the callback's ``code`` is
  exchanged with HTTP Basic (plugin id : plugin access key) at :data:`APP_TOKEN_PATH` (the path is cut off in the
  public copy: designed) for ``access_key_code`` + ``access_key_token``, the same key pair as above.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from hub import ConnectorContext, Credentials
from hub.errors import AuthRevoked, HubError, Retriable

from hub_zydon.client import ZYDON, body, state, where

LOGIN_PATH = "/api/account/access-key/login"
AUTHORIZE_URL = "https://admin.zydon.com.br/oauth/authorize"
APP_TOKEN_PATH = "/api/appcenter/oauth/token"
"""Designed: the public copy of App Studio's page cuts the path after ``/app``."""
ASSUMED_LIFETIME = timedelta(minutes=55)
CREDENTIALS = ("key_id", "key_secret")
KEY_FIX = ("Create an API key pair in Zydon (Configurações da Organização -> Chaves de API) and set "
           "credentials.key_id (ID da Chave) and credentials.key_secret (Chave Secreta) of connection {connection}, "
           "then re-apply the routes (or run `hub auth zydon {tenant}` for an App Studio install).")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, not verified (see the module doc); {} when it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def expiry(token: str) -> datetime:
    """When the JWT lapses (naive UTC): its ``exp`` claim, else :data:`ASSUMED_LIFETIME` from now."""
    exp = jwt_claims(token).get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return datetime.fromtimestamp(exp, UTC).replace(tzinfo=None)
    return _now() + ASSUMED_LIFETIME


def _post(ctx: ConnectorContext, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    url = f"{ZYDON.base_url(ctx)}{path}"
    try:
        response: httpx.Response = ctx.http.post(url, headers={"Accept": "application/json", **(headers or {})},
                                                 **kwargs)
    except httpx.TransportError as exc:
        raise Retriable(f"zydon POST {path} ({where(ctx)}): {type(exc).__name__}",
                        fix=f"Check that options.base_url of connection {ctx.connection} is reachable.") from exc
    return response


def _refused(ctx: ConnectorContext, action: str, response: httpx.Response, fix: str) -> None:
    """A definite refusal (400/401/403/404) pauses the connection until a person fixes it; anything else is the
    client's error (a 5xx or a 429 is retried)."""
    error: HubError | None
    if response.status_code in (400, 401, 403, 404):
        found = body(response)
        message = found.get("message") if isinstance(found, dict) else None
        error = AuthRevoked(f"zydon {action} ({where(ctx)}): {response.status_code} "
                            f"{message or response.reason_phrase}: the key pair was refused",
                            fix=fix.format(connection=ctx.connection, tenant=ctx.tenant))
    else:
        error = ZYDON.error_for(ctx, response, action=action)
    if error is not None:
        ctx.log_failure(action, error.message, error.fix)
        raise error


def login(ctx: ConnectorContext, key_id: str, key_secret: str) -> str:
    """The JWT for a key pair."""
    payload: dict[str, Any] = {"code": key_id, "token": key_secret}
    solution = state(ctx).options.solution_id
    if solution:
        payload["solution_id"] = solution
    response = _post(ctx, LOGIN_PATH, json=payload)
    _refused(ctx, f"POST {LOGIN_PATH}", response, KEY_FIX)
    found = body(response)
    token = found.get("accessToken") if isinstance(found, dict) else None
    if not isinstance(token, str) or not token:
        raise Retriable(f"zydon POST {LOGIN_PATH} ({where(ctx)}): the answer has no accessToken",
                        fix="Zydon answered the login without a token; the hub tries again.")
    return token


def authenticate(ctx: ConnectorContext) -> Credentials:
    """A fresh JWT from the stored key pair; an App Studio authorization code is first exchanged for the pair."""
    creds = dict(ctx.credentials)
    code = creds.pop("authorization_code", None)
    if code:
        creds.update(exchange_code(ctx, code, creds))
    key_id, key_secret = creds.get("key_id"), creds.get("key_secret")
    if not key_id or not key_secret:
        raise AuthRevoked(f"zydon ({where(ctx)}): no API key pair (key_id and key_secret) is configured",
                          fix=KEY_FIX.format(connection=ctx.connection, tenant=ctx.tenant))
    token = login(ctx, key_id, key_secret)
    creds["access_token"] = token
    return Credentials(values=creds, expires_at=expiry(token))


# --- App Studio (OAuth for multi-tenant installs) -----------------------------------------------------------------


def authorize_url(ctx: ConnectorContext, state_value: str | None = None,
                  redirect_uri: str | None = None) -> tuple[str, str]:
    """The page an organization's admin opens to install the plugin, and the ``state`` to check on return."""
    state_value = state_value or secrets.token_urlsafe(16)
    query = urlencode({"client_id": ctx.credentials.get("client_id", ""),
                       "redirect_uri": redirect_uri or ctx.credentials.get("redirect_uri", ""), "state": state_value})
    return f"{ctx.options.get('authorize_url') or AUTHORIZE_URL}?{query}", state_value


def consent_url(ctx: ConnectorContext, state_value: str, redirect_uri: str) -> str | None:
    """The console's "authorize" button: App Studio's consent page coming back to ``redirect_uri``; None for a
    connection that logs in with an API key pair (nothing for a person to grant)."""
    if not ctx.credentials.get("client_id"):
        return None
    return authorize_url(ctx, state_value, redirect_uri)[0]


APP_FIX = ("Check credentials.client_id (the plugin's id in App Studio) and client_secret (its access key) of "
           "connection {connection}, then run `hub auth zydon {tenant}` again (a code works once).")


def exchange_code(ctx: ConnectorContext, code: str, creds: dict[str, str]) -> dict[str, str]:
    """The organization's key pair for an App Studio authorization code (HTTP Basic with the plugin's id and
    access key, form-encoded body, as App Studio's page shows)."""
    client_id, client_secret = creds.get("client_id", ""), creds.get("client_secret", "")
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    form = urlencode({"code": code, "redirect_uri": creds.get("redirect_uri", "")})
    response = _post(ctx, APP_TOKEN_PATH, content=form,
                     headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
    _refused(ctx, f"POST {APP_TOKEN_PATH}", response, APP_FIX)
    found = body(response)
    pair = (found.get("access_key_code"), found.get("access_key_token")) if isinstance(found, dict) else (None, None)
    if not all(isinstance(v, str) and v for v in pair):
        raise AuthRevoked(f"zydon POST {APP_TOKEN_PATH} ({where(ctx)}): no access_key_code/access_key_token in the "
                          "answer", fix=APP_FIX.format(connection=ctx.connection, tenant=ctx.tenant))
    return {"key_id": str(pair[0]), "key_secret": str(pair[1])}
