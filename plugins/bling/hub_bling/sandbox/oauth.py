"""OAuth 2.0 as Bling does it: authorization code only, client credentials only in a Basic header, single-use codes
that expire in a minute, and refresh tokens that rotate on every use (the old one dies at once).

A reused authorization code revokes the whole grant, as Bling's docs say ("for security reasons the user has been
revoked"); tokens carry their grant so that takes one flag.

Bling's docs do not say whether a spent refresh token is accepted again for a moment (many OAuth servers keep a
grace window so a client that lost the answer can retry). The ``refresh_grace_seconds`` setting models one, off by
default: within it the spent token returns the SAME pair it was exchanged for (:class:`hub.sandbox.oauth.TokenStore`
keeps the tokens, codes and grants). Two token faults model a lost answer: ``token-timeout``
rotates and answers only after the client's timeout, ``token-drop`` rotates and drops the connection mid-answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode

from hub.sandbox.oauth import Grant, Issued, OAuthError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from .common import ApiError
from .state import State

SCOPES = tuple(str(98309 + 7919 * i) for i in range(48))
"""The scope ids Bling lists (space-separated) for an app; JWTs carry them, which is why they are long."""
TOKEN_WINDOW = 60.0
TOKEN_CALLS_BEFORE_BLOCK = 20
TOKEN_BLOCK_SECONDS = 3600.0
TOKEN_FAULTS = ("token-timeout", "token-drop")
"""Faults of the next ``/oauth/token`` calls: both rotate first, then the answer is late or never complete."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(st: State, kind: str, now: float, ttl: float) -> str:
    """A JWT-shaped token (header.payload.signature, over 1,000 characters); nothing checks the signature."""
    header = {"alg": "RS256", "typ": "JWT", "kid": st.client_id[:16]}
    payload = {"iss": "https://www.bling.com.br", "aud": st.client_id, "sub": st.company_id, "jti": str(uuid.uuid4()),
               "iat": int(now), "exp": int(now + ttl), "type": kind, "companyId": st.company_id,
               "scope": " ".join(SCOPES)}
    return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(os.urandom(256))))


def _hex(kind: str, now: float, ttl: float) -> str:
    return secrets.token_hex(20)


def answer(issued: Issued) -> dict[str, Any]:
    """A token answer in Bling's JSON (a grace-window replay renders the same pair again)."""
    return {"access_token": issued.access_token, "expires_in": issued.expires_in, "token_type": "Bearer",
            "scope": " ".join(SCOPES), "refresh_token": issued.refresh_token}


def issue(st: State, grant: Grant, *, jwt: bool) -> dict[str, Any]:
    """A fresh access + refresh token pair for ``grant`` (lock held)."""
    return answer(st.tokens.issue(grant, make=_maker(st) if jwt else _hex))


def _maker(st: State) -> Any:
    return lambda kind, now, ttl: _jwt(st, kind, now, ttl)


def new_code(st: State) -> str:
    return st.tokens.new_code()


def _oauth_error(status: int, kind: str, description: str) -> ApiError:
    return ApiError(status, kind, kind, description)


def _client(st: State, request: Request, form: dict[str, str]) -> None:
    if "client_id" in form or "client_secret" in form:
        raise _oauth_error(400, "invalid_request", "Client credentials are not allowed in the request body; "
                           "send them in the Authorization header (Basic).")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        raise _oauth_error(400, "invalid_request", "Malformed auth header")
    try:
        client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise _oauth_error(400, "invalid_request", "Malformed auth header") from None
    if client_id != st.client_id or not secrets.compare_digest(secret, st.client_secret):
        raise _oauth_error(401, "invalid_client", "Client authentication failed")


def _exchange(st: State, form: dict[str, str], jwt: bool) -> dict[str, Any]:
    grant_type = form.get("grant_type", "")
    make = _maker(st) if jwt else _hex
    try:
        if grant_type == "authorization_code":
            code = st.tokens.codes.get(form.get("code", ""))
            if code is not None and code.used:
                code.grant.alive = False
                raise ApiError(400, "VALIDATION_ERROR", "invalid_grant", "This authorization code has already been "
                               "used, for security reasons the user has been revoked")
            return answer(st.tokens.issue(st.tokens.redeem(form.get("code", "")), make=make))
        if grant_type == "refresh_token":
            return answer(st.tokens.exchange_refresh(form.get("refresh_token", ""), make=make))
    except OAuthError as error:
        raise _oauth_error(error.status, error.error, error.description) from None
    raise _oauth_error(400, "unsupported_grant_type", f"The grant type {grant_type!r} is not supported")


def check_token_block(st: State) -> None:
    """Count a call to /oauth/token; the 21st within 60 s blocks the IP for an hour (lock held)."""
    now = st.clock.time()
    st.token_window.append(now)
    while st.token_window and st.token_window[0] <= now - TOKEN_WINDOW:
        st.token_window.popleft()
    if len(st.token_window) > TOKEN_CALLS_BEFORE_BLOCK:
        st.blocked_until = max(st.blocked_until, now + TOKEN_BLOCK_SECONDS)


class _Dropped(Response):
    """Starts the answer, then closes the connection: the client never reads the (already rotated) pair."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"access_token": "', "more_body": True})


async def token_endpoint(st: State, request: Request, fault_delay: float = 2.0) -> Response:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    jwt = request.headers.get("enable-jwt", "").strip() == "1"
    with st.lock:
        st.counters.token_calls += 1
        check_token_block(st)
        if st.clock.time() < st.blocked_until:
            return blocked_response()
        fault = st.token_faults.popleft() if st.token_faults else None
        try:
            _client(st, request, form)
            response: Response = JSONResponse(_exchange(st, form, jwt))
        except ApiError as error:
            response = error.response()
    if fault == "token-drop":
        return _Dropped()
    if fault == "token-timeout":
        await asyncio.sleep(fault_delay)
    return response


async def revoke_endpoint(st: State, request: Request) -> Response:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    with st.lock:
        try:
            _client(st, request, form)
        except ApiError as error:
            return error.response()
        token = st.tokens.access.get(form.get("token", "")) or st.tokens.refresh.get(form.get("token", ""))
        if token is not None:
            token.grant.alive = False
        return Response(status_code=200)


async def authorize_endpoint(st: State, request: Request) -> Response:
    """The consent screen, already agreed to: redirect straight back with a code (or an error)."""
    q = request.query_params
    state = q.get("state", "")
    with st.lock:
        if q.get("response_type") != "code":
            params = {"error": "unsupported_response_type", "error_description": "response_type must be code"}
        elif q.get("client_id") != st.client_id:
            params = {"error": "invalid_client", "error_description": "Unknown client_id"}
        else:
            params = {"code": new_code(st)}
        redirect = st.redirect_uri
    params["state"] = state
    separator = "&" if "?" in redirect else "?"
    return RedirectResponse(f"{redirect}{separator}{urlencode(params)}", status_code=302)


def blocked_response() -> Response:
    return ApiError(403, "FORBIDDEN", "IP bloqueado",
                    "O IP foi bloqueado temporariamente por excesso de requisições.").response()
