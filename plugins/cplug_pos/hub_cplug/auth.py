"""CPlug's OAuth2: the password grant of a CPlug user, renewed with the refresh token when CPlug gives one.

The token answer and the refresh grant are not published (research brief, A.1): both are assumed Laravel
Passport-style, and any failure of the refresh grant falls back to the password grant, which always works while
the user's password does. That is why the platform is declared ``reauth_unattended``: a rotation whose answer was
lost is retried at once (the spent refresh token is refused, the password grant answers) instead of pausing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hub import ConnectorContext, Credentials
from hub.errors import AuthRevoked, Retriable

from hub_cplug.client import error_body, raise_for_error, state, where

CREDENTIALS = ("client_id", "client_secret", "username", "password")
SCOPE = "*"


def _post(ctx: ConnectorContext, body: dict[str, str]) -> httpx.Response:
    url = state(ctx).options.token_url or "/oauth/token"
    try:
        response: httpx.Response = ctx.http.post(url, json=body, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise Retriable(f"cplug POST /oauth/token ({where(ctx)}): {type(exc).__name__}",
                        fix=f"Check that options.base_url (or options.token_url) of connection {ctx.connection} "
                            "is reachable.") from exc  # chained: the core tells "never sent" from "answer lost"
    return response


def _refused(response: httpx.Response) -> str:
    body = error_body(response)
    return str(body.get("error_description") or body.get("message") or body.get("error") or response.reason_phrase)


def authenticate(ctx: ConnectorContext) -> Credentials:
    creds = ctx.credentials
    missing = [name for name in CREDENTIALS if not creds.get(name)]
    if missing:
        raise AuthRevoked(f"cplug ({where(ctx)}): credentials {', '.join(missing)} are missing",
                          fix=f"Give connection {ctx.connection} its {', '.join(missing)} (client id/secret from CPlug "
                              "support, e-mail and password of a CPlug user with API access) and re-apply the routes.")
    client = {"client_id": creds["client_id"], "client_secret": creds["client_secret"], "scope": SCOPE}
    answer: dict[str, Any] | None = None
    if creds.get("refresh_token"):
        response = _post(ctx, {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"], **client})
        if response.status_code < 300:
            answer = error_body(response)
        elif response.status_code >= 500:
            raise_for_error(ctx, response, "POST /oauth/token (refresh_token)")
        # 400/401: the refresh token is spent or unknown; the password grant below decides.
    if answer is None or not answer.get("access_token"):
        response = _post(ctx, {"grant_type": "password", "username": creds["username"],
                               "password": creds["password"], **client})
        if response.status_code in (400, 401, 403):
            raise AuthRevoked(
                f"cplug refused the login of {creds['username']} for {where(ctx)}: {_refused(response)}",
                fix=f"Check username/password (a CPlug user with API access) and client_id/client_secret of "
                    f"connection {ctx.connection}, then re-apply the routes (hub routes apply FILE).")
        raise_for_error(ctx, response, "POST /oauth/token (password)")
        answer = error_body(response)
    token = answer.get("access_token")
    if not token:
        raise Retriable(f"cplug POST /oauth/token ({where(ctx)}): the answer has no access_token",
                        fix="CPlug answered the token request without a token; the hub retries by itself.")
    values = {**creds, "access_token": str(token)}
    refresh = answer.get("refresh_token") or creds.get("refresh_token")
    if refresh:
        values["refresh_token"] = str(refresh)
    expires_at = None
    if answer.get("expires_in"):
        # The core stores naive UTC datetimes; say so explicitly rather than rely on its conversion.
        expires_at = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=int(answer["expires_in"]))
    return Credentials(values=values, expires_at=expires_at)
