"""OAuth 2.0 as Bling does it: authorization code only, client credentials only in a Basic header, single-use codes
that expire in a minute, and refresh tokens that rotate on every use (the old one dies at once).

A reused authorization code revokes the whole grant, as Bling's docs say ("for security reasons the user has been
revoked"); tokens carry their grant so that takes one flag.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from .common import ApiError
from .state import Code, Grant, State, Token

SCOPES = tuple(str(98309 + 7919 * i) for i in range(48))
"""The scope ids Bling lists (space-separated) for an app; JWTs carry them, which is why they are long."""
TOKEN_WINDOW = 60.0
TOKEN_CALLS_BEFORE_BLOCK = 20
TOKEN_BLOCK_SECONDS = 3600.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(st: State, kind: str, now: float, ttl: float) -> str:
    """A JWT-shaped token (header.payload.signature, over 1,000 characters); nothing checks the signature."""
    header = {"alg": "RS256", "typ": "JWT", "kid": st.client_id[:16]}
    payload = {"iss": "https://www.bling.com.br", "aud": st.client_id, "sub": st.company_id, "jti": str(uuid.uuid4()),
               "iat": int(now), "exp": int(now + ttl), "type": kind, "companyId": st.company_id,
               "scope": " ".join(SCOPES)}
    return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(os.urandom(256))))


def new_grant(st: State) -> Grant:
    grant = Grant(len(st.grants) + 1)
    st.grants.append(grant)
    return grant


def issue(st: State, grant: Grant, *, jwt: bool) -> dict[str, Any]:
    """A fresh access + refresh token pair for ``grant`` (lock held)."""
    now = st.clock.time()
    access = _jwt(st, "access_token", now, st.token_ttl) if jwt else secrets.token_hex(20)
    refresh = _jwt(st, "refresh_token", now, st.refresh_ttl) if jwt else secrets.token_hex(20)
    st.access[access] = Token(grant, now + st.token_ttl)
    st.refresh[refresh] = Token(grant, now + st.refresh_ttl)
    return {"access_token": access, "expires_in": int(st.token_ttl), "token_type": "Bearer",
            "scope": " ".join(SCOPES), "refresh_token": refresh}


def new_code(st: State) -> str:
    code = secrets.token_hex(20)
    st.codes[code] = Code(new_grant(st), st.clock.time() + st.code_ttl)
    return code


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
    now = st.clock.time()
    grant_type = form.get("grant_type", "")
    if grant_type == "authorization_code":
        code = st.codes.get(form.get("code", ""))
        if code is None:
            raise _oauth_error(400, "invalid_grant", "Authorization code doesn't exist or is invalid for the client")
        if code.used:
            code.grant.alive = False
            raise ApiError(400, "VALIDATION_ERROR", "invalid_grant", "This authorization code has already been "
                           "used, for security reasons the user has been revoked")
        if code.expires_at <= now:
            raise _oauth_error(400, "invalid_grant", "The authorization code has expired")
        code.used = True
        return issue(st, code.grant, jwt=jwt)
    if grant_type == "refresh_token":
        token = st.refresh.get(form.get("refresh_token", ""))
        if token is None or token.used or not token.grant.alive:
            raise _oauth_error(400, "invalid_grant", "Invalid refresh token")
        if token.expires_at <= now:
            raise _oauth_error(400, "invalid_grant", "Refresh token has expired")
        token.used = True
        return issue(st, token.grant, jwt=jwt)
    raise _oauth_error(400, "unsupported_grant_type", f"The grant type {grant_type!r} is not supported")


def check_token_block(st: State) -> None:
    """Count a call to /oauth/token; the 21st within 60 s blocks the IP for an hour (lock held)."""
    now = st.clock.time()
    st.token_window.append(now)
    while st.token_window and st.token_window[0] <= now - TOKEN_WINDOW:
        st.token_window.popleft()
    if len(st.token_window) > TOKEN_CALLS_BEFORE_BLOCK:
        st.blocked_until = max(st.blocked_until, now + TOKEN_BLOCK_SECONDS)


async def token_endpoint(st: State, request: Request) -> Response:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    jwt = request.headers.get("enable-jwt", "").strip() == "1"
    with st.lock:
        st.token_calls += 1
        check_token_block(st)
        if st.clock.time() < st.blocked_until:
            return blocked_response()
        try:
            _client(st, request, form)
            return JSONResponse(_exchange(st, form, jwt))
        except ApiError as error:
            return error.response()


async def revoke_endpoint(st: State, request: Request) -> Response:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    with st.lock:
        try:
            _client(st, request, form)
        except ApiError as error:
            return error.response()
        token = st.access.get(form.get("token", "")) or st.refresh.get(form.get("token", ""))
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
