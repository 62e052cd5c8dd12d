"""Plugg.to's OAuth2 at ``POST /oauth/token`` (form-encoded): the password grant of one account's API user, the
authorization-code grant of an app (``pluggtocode``), and refresh tokens that work ONCE (developers.plugg.to,
"Authentication by refresh token": "it expires after use"; a new one comes with every answer and must be stored).

The core records every renewal before it is sent and stores the answer at once. When an answer is lost
mid-rotation, the refresh token it spent is gone: a connection that also holds ``username``/``password`` gets a new
pair from the password grant at once (the platform is declared ``reauth_unattended``); an app connection (code
grant only) is refused with ``invalid_grant`` and paused for ``hub auth``-style re-authorization (a new
``authorization_code`` credential). A definite refusal is AuthRevoked; a lost or failed answer is Retriable,
chained to its transport error so the core can tell "never sent" from "answer lost".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hub import ConnectorContext, Credentials
from hub.errors import AuthRevoked, Fatal, Retriable

from hub_pluggto.client import API, body_of, where

CREDENTIALS = ("client_id", "client_secret")
"""Always needed; add ``username``/``password`` (a single account, API user) or ``authorization_code`` (an app's
``pluggtocode``) or a ``refresh_token``."""
DEFAULT_TTL = 3600
"""Access tokens live 1 h ("The returned access_token expires in 1 hour")."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _refusal(response: httpx.Response) -> str:
    body = body_of(response)
    if isinstance(body, dict):
        for name in ("error_description", "message", "details", "error"):
            if isinstance(body.get(name), str) and body[name]:
                return str(body[name])
    return response.reason_phrase


def _call(ctx: ConnectorContext, form: dict[str, str]) -> httpx.Response:
    url = f"{API.base_url(ctx)}/oauth/token"
    try:
        response: httpx.Response = ctx.http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise Retriable(f"pluggto POST /oauth/token ({where(ctx)}): {type(exc).__name__}",
                        fix=f"Check that options.base_url of connection {ctx.connection} is reachable; the hub "
                            "retries by itself.") from exc
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise Retriable(f"pluggto POST /oauth/token ({where(ctx)}): Plugg.to answered {response.status_code}",
                        fix="Plugg.to's token service failed; the hub renews again by itself.")
    if response.status_code in (404, 405):
        raise Fatal(f"pluggto POST /oauth/token ({where(ctx)}): no token endpoint at {response.request.url}",
                    fix=f"Check options.base_url of connection {ctx.connection} (Plugg.to's is https://api.plugg.to).")
    return response


def authenticate(ctx: ConnectorContext) -> Credentials:
    creds = dict(ctx.credentials)
    code = creds.pop("authorization_code", None)
    missing = [name for name in CREDENTIALS if not creds.get(name)]
    if missing:
        raise AuthRevoked(f"pluggto ({where(ctx)}): credentials {', '.join(missing)} are missing",
                          fix=f"Give connection {ctx.connection} its {', '.join(missing)} (Plugg.to panel, "
                              "Configurações > API) and re-apply the routes.")
    client = {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
    has_password = bool(creds.get("username") and creds.get("password"))
    answer: dict[str, Any] | None = None
    refused = ""
    if code:
        response = _call(ctx, {"grant_type": "authorization_code", "code": code, **client})
        if response.status_code >= 400:
            raise AuthRevoked(f"pluggto refused the authorization code of {where(ctx)}: {_refusal(response)}",
                              fix="The pluggtocode works once and for a few minutes: install the app again from "
                                  f"the Plugg.to panel and give connection {ctx.connection} the new code as "
                                  "credentials.authorization_code.")
        answer = body_of(response)
    elif creds.get("refresh_token"):
        response = _call(ctx, {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"], **client})
        if response.status_code < 400:
            answer = body_of(response)
        else:
            refused = _refusal(response)  # spent or unknown: the password grant decides, when there is one
    if answer is None:
        if not has_password:
            raise AuthRevoked(
                f"pluggto refused the refresh token of {where(ctx)}: {refused or 'no refresh token stored'}",
                fix=f"Refresh tokens work once: authorize the app again (a new pluggtocode as "
                    f"credentials.authorization_code of connection {ctx.connection}), or give the connection the "
                    "account's API username and password so the hub can log in by itself.")
        response = _call(ctx, {"grant_type": "password", "username": creds["username"],
                               "password": creds["password"], **client})
        if response.status_code >= 400:
            raise AuthRevoked(f"pluggto refused the API login of {where(ctx)}: {_refusal(response)}",
                              fix=f"Check username/password (the API user, not the panel's login) and "
                                  f"client_id/client_secret of connection {ctx.connection}, then re-apply the routes.")
        answer = body_of(response)
    if not isinstance(answer, dict) or not answer.get("access_token"):
        raise Retriable(f"pluggto POST /oauth/token ({where(ctx)}): the answer has no access_token",
                        fix="Plugg.to answered the token request without a token; the hub retries by itself.")
    creds["access_token"] = str(answer["access_token"])
    if answer.get("refresh_token"):
        creds["refresh_token"] = str(answer["refresh_token"])
    else:
        creds.pop("refresh_token", None)
    ttl = int(answer.get("expires_in") or DEFAULT_TTL)
    ctx.credentials.update(creds)
    return Credentials(values=creds, expires_at=_now() + timedelta(seconds=ttl))
