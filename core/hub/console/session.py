"""Signed session cookies (HMAC-SHA256 over the JSON), HttpOnly, SameSite=Lax, Secure over https, and the CSRF
token each session carries for its forms.

The signing key is derived from the hub's own secret (``HUB_SECRET_KEY``, or ``HUB_HOME/secret.key``), so every
``hub serve`` process of one deployment accepts the others' cookies and nothing new has to be configured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "hub_session"
MAX_AGE = 12 * 3600


def derive_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"hub console session v1", hashlib.sha256).digest()


def hub_secret(settings: Any) -> bytes:
    """The first Fernet key the hub encrypts with (created in HUB_HOME on first use, like the Vault does)."""
    from hub.crypto import Vault

    if settings.secret_key:
        return str(settings.secret_key).split(",")[0].strip().encode()
    Vault(settings)  # creates HUB_HOME/secret.key (0600) when missing
    return bytes((settings.home / "secret.key").read_bytes().strip())


class Sessions:
    def __init__(self, key: bytes, max_age: int = MAX_AGE) -> None:
        self.key, self.max_age = key, max_age

    def _sign(self, body: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.key, body, hashlib.sha256).digest()).decode().rstrip("=")

    def dump(self, data: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps({**data, "t": int(time.time())}).encode()).decode().rstrip("=")
        return f"{body}.{self._sign(body.encode())}"

    def load(self, value: str | None) -> dict[str, Any]:
        if not value or "." not in value:
            return {}
        body, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(body.encode())):
            return {}
        try:
            data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return {}
        if not isinstance(data, dict) or time.time() - float(data.get("t", 0)) > self.max_age:
            return {}
        return data

    def read(self, request: Request) -> dict[str, Any]:
        return self.load(request.cookies.get(COOKIE))

    def write(self, request: Request, response: Response, data: dict[str, Any]) -> None:
        response.set_cookie(COOKIE, self.dump(data), max_age=self.max_age, httponly=True, samesite="lax",
                            secure=secure(request), path="/")

    def clear(self, request: Request, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=secure(request))


def secure(request: Request) -> bool:
    """Served over https: directly, or behind a proxy that says so (uvicorn's --proxy-headers sets the scheme)."""
    return request.url.scheme == "https"


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(session: dict[str, Any], given: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
