"""Login with Amazon (LWA) and restricted data tokens, in one place.

* A seller authorizes the app once (Seller Central -> Manage Your Apps, or the app's consent link); the
  ``spapi_oauth_code`` is exchanged (``grant_type=authorization_code``) for a refresh token, and the hub records
  when (``authorized_at``): public apps must be re-authorized every 365 days ("token válido por 1 ano" in the
  sellers' manuals), and :func:`authorization_notice` warns 30, 7 and 1 day(s) before.
* Every access token comes from the refresh token (``grant_type=refresh_token``; LWA does not rotate it) and lives
  one hour; it is sent in ``x-amz-access-token``.
* ``invalid_grant`` on the refresh means the seller revoked the app or the authorization lapsed: the connection
  pauses (AuthRevoked) with the re-authorization steps. ``invalid_client`` means the client secret was not rotated
  within its 180 days.
* Grantless operations (the Notifications API's destinations) take a token from the app's own
  ``client_credentials`` grant with a scope (``sellingpartnerapi::notifications``), not the seller's.
* ``getShipmentDetails`` is a restricted operation: it takes a restricted data token (RDT) minted for its path at
  ``POST /tokens/2021-03-01/restrictedDataToken``, also sent in ``x-amz-access-token``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hub import ConnectorContext, Credentials
from hub.errors import AuthRevoked, HubError, Retriable

from hub_amazon_fba.client import AMAZON, RDT, body_of, options, where

CREDENTIALS = ("client_id", "client_secret", "refresh_token", "sqs_access_key_id", "sqs_secret_access_key")
WARN_DAYS = (30, 7, 1)
NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
SECRET_ROTATION = timedelta(days=180)
REAUTH_FIX = ("The seller's authorization of the app was revoked or has lapsed (it lasts {days} days{since}). In "
              "Seller Central (sellercentral.amazon.com.br) open Apps and Services > Manage Your Apps, choose the app "
              "and Authorize again (or use the app's consent link), then give the new spapi_oauth_code to "
              "`hub auth amazon_fba {tenant}` (or set credentials.refresh_token of connection {connection} and "
              "re-apply the routes). Queued work resumes by itself.")
CLIENT_FIX = ("Login with Amazon refused the app's client id/secret: LWA client secrets must be rotated every 180 "
              "days. Rotate it in Developer Central (or the Application Management API), set "
              "credentials.client_secret of connection {connection} and re-apply the routes.")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _token_call(ctx: ConnectorContext, form: dict[str, str]) -> dict[str, Any]:
    url = options(ctx).lwa_url
    action = f"POST {httpx.URL(url).path}"
    try:
        response: httpx.Response = ctx.http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise Retriable(f"amazon_fba {action} ({where(ctx)}): {type(exc).__name__}",
                        fix=f"Check that options.lwa_url of connection {ctx.connection} is reachable.") from exc
    found = body_of(response)
    error = found.get("error") if isinstance(found, dict) else None
    if response.status_code in (400, 401) and error in ("invalid_grant", "invalid_client", "unauthorized_client"):
        authorized = parse_moment(ctx.credentials.get("authorized_at"))
        days = options(ctx).authorization_days
        since = f", granted {authorized:%Y-%m-%d}" if authorized else ""
        fix = (CLIENT_FIX if error == "invalid_client" else REAUTH_FIX).format(
            days=days, since=since, tenant=ctx.tenant, connection=ctx.connection)
        revoked = AuthRevoked(f"amazon_fba {action} ({where(ctx)}): {response.status_code} {error}: "
                              f"{found.get('error_description') or ''}".strip(), fix=fix)
        ctx.log_failure(action, revoked.message, revoked.fix)
        raise revoked
    failure: HubError | None = AMAZON.error_for(ctx, response, action=action)
    if failure is not None:
        ctx.log_failure(action, failure.message, failure.fix)
        raise failure
    if not isinstance(found, dict) or not found.get("access_token"):
        raise Retriable(f"amazon_fba {action} ({where(ctx)}): the answer has no access_token",
                        fix="Login with Amazon answered without a token; the hub tries again.")
    return found


def authenticate(ctx: ConnectorContext) -> Credentials:
    """A new one-hour access token from the refresh token; a pending authorization code is exchanged first and
    the moment of the seller's authorization recorded."""
    creds = dict(ctx.credentials)
    code = creds.pop("authorization_code", None)
    if code:
        answer = _token_call(ctx, {"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": creds.get("redirect_uri", ""),
                                   "client_id": creds.get("client_id", ""),
                                   "client_secret": creds.get("client_secret", "")})
        if answer.get("refresh_token"):
            creds["refresh_token"] = str(answer["refresh_token"])
        creds["authorized_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if not creds.get("refresh_token"):
        raise AuthRevoked(f"amazon_fba ({where(ctx)}): no refresh token: the seller has not authorized the app",
                          fix=REAUTH_FIX.format(days=options(ctx).authorization_days, since="", tenant=ctx.tenant,
                                                connection=ctx.connection))
    answer = _token_call(ctx, {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"],
                               "client_id": creds.get("client_id", ""),
                               "client_secret": creds.get("client_secret", "")})
    creds["access_token"] = str(answer["access_token"])
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    creds.setdefault("authorized_at", stamp)
    fingerprint = hashlib.sha256(creds.get("client_secret", "").encode()).hexdigest()[:16]
    if creds.get("client_secret_fingerprint") != fingerprint:  # a new secret: its 180 days start now
        creds["client_secret_fingerprint"], creds["client_secret_since"] = fingerprint, stamp
    lifetime = float(answer.get("expires_in") or 3600)
    return Credentials(values=creds, expires_at=now() + timedelta(seconds=lifetime))


def authorization_expires(credentials: dict[str, str], days: int = 365) -> datetime | None:
    granted = parse_moment(credentials.get("authorized_at"))
    return granted + timedelta(days=days) if granted else None


def authorization_notice(credentials: dict[str, str], at: datetime | None = None, days: int = 365) -> str | None:
    """A warning 30, 7 and 1 day(s) before the seller's authorization lapses (and once it has), else None."""
    expires = authorization_expires(credentials, days)
    if expires is None:
        return None
    left = expires - (at or now())
    if left <= timedelta(0):
        return (f"the seller's Amazon authorization expired on {expires:%Y-%m-%d}: re-authorize the app in Seller "
                "Central (Manage Your Apps > Authorize) and run `hub auth amazon_fba TENANT`")
    threshold = next((d for d in sorted(WARN_DAYS) if left <= timedelta(days=d)), None)
    if threshold is None:
        return None
    remaining = max(1, left.days + (1 if left.seconds else 0))
    return (f"the seller's Amazon authorization expires on {expires:%Y-%m-%d} (in {remaining} day(s), within "
            f"{threshold}): re-authorize the app in Seller Central (Manage Your Apps > Authorize) before then, and run "
            "`hub auth amazon_fba TENANT` with the new code")


def secret_notice(credentials: dict[str, str], at: datetime | None = None) -> str | None:
    """A warning 30, 7 and 1 day(s) before the LWA client secret in use reaches its 180 days (Amazon stops
    accepting it after that), counted from when the hub first used it."""
    since = parse_moment(credentials.get("client_secret_since"))
    if since is None:
        return None
    due = since + SECRET_ROTATION
    left = due - (at or now())
    if left > timedelta(days=max(WARN_DAYS)):
        return None
    if left <= timedelta(0):
        return (f"the LWA client secret in use since {since:%Y-%m-%d} passed its 180 days on {due:%Y-%m-%d}: rotate "
                "it in Developer Central and set credentials.client_secret")
    return (f"the LWA client secret in use since {since:%Y-%m-%d} must be rotated by {due:%Y-%m-%d} (180 days): "
            "rotate it in Developer Central (or the Application Management API) and set credentials.client_secret")


def grantless_token(ctx: ConnectorContext, scope: str = NOTIFICATIONS_SCOPE) -> str:
    """An LWA access token for grantless operations (the Notifications API's destinations): the app's own
    ``client_credentials`` grant with ``scope``, no seller involved; kept in the context while it lives."""
    key = f"grantless:{scope}"
    cached = ctx.scratch.get(key)
    if isinstance(cached, tuple) and cached[1] > now():
        return str(cached[0])
    answer = _token_call(ctx, {"grant_type": "client_credentials", "scope": scope,
                               "client_id": ctx.credentials.get("client_id", ""),
                               "client_secret": ctx.credentials.get("client_secret", "")})
    token = str(answer["access_token"])
    ctx.scratch[key] = (token, now() + timedelta(seconds=float(answer.get("expires_in") or 3600) - 60))
    return token


def restricted_token(ctx: ConnectorContext, paths: list[str], method: str = "GET") -> str:
    """An RDT for ``paths`` (at most 50 per token), kept in the context while it lives."""
    key = f"rdt:{method}:{','.join(sorted(paths))}"
    cached = ctx.scratch.get(key)
    if isinstance(cached, tuple) and cached[1] > now():
        return str(cached[0])
    body = {"restrictedResources": [{"method": method, "path": p} for p in paths]}
    answer = body_of(AMAZON.call(ctx, "POST", RDT, json=body))
    token = str(answer["restrictedDataToken"])
    ctx.scratch[key] = (token, now() + timedelta(seconds=float(answer.get("expiresIn") or 3600) - 60))
    return token


__all__ = ["CREDENTIALS", "NOTIFICATIONS_SCOPE", "WARN_DAYS", "authenticate", "authorization_expires",
           "authorization_notice", "grantless_token", "restricted_token", "secret_notice"]
