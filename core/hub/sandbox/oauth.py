"""OAuth pieces sandboxes assemble: a token store on the sandbox's clock and the four grant variants.

- :class:`AuthorizationCode`: single-use codes that expire, exchanged for an access + refresh pair (Bling, Plugg.to).
- :class:`PasswordGrant`: username and password for a pair (CPlug, Plugg.to).
- :class:`ClientCredentials`: the client's id and secret for an access token alone (lojinha).
- :class:`StaticToken`: a fixed token that never expires (an API key used as a bearer).

Refresh tokens are single-use: each rotation issues a new pair and spends the old token. With ``grace`` seconds, a
spent token sent again within the window returns the SAME pair it was exchanged for (a client that lost the
answer can retry); Amazon's LWA refresh tokens do not rotate (``rotate=False``). Errors are :class:`OAuthError`,
which each sandbox renders in its platform's envelope. Not thread-safe: call with the sandbox's lock held.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["AuthorizationCode", "ClientCredentials", "Clock", "Code", "Grant", "Issued", "OAuthError", "PasswordGrant",
           "StaticToken", "Token", "TokenStore", "WallClock", "check_client", "random_token"]


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch, as the sandbox sees them."""


@dataclass
class WallClock:
    """Real time plus an offset that ``advance()`` moves (token expiry without sleeping)."""

    offset: float = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class OAuthError(Exception):
    """A refused token request: RFC 6749's ``error`` code, a description and the HTTP status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description = status, error, description


@dataclass
class Grant:
    """One authorization of the app (a merchant's consent, a login); revoking it kills all its tokens."""

    id: int
    alive: bool = True


@dataclass(frozen=True)
class Issued:
    """What a token answer carries; a sandbox renders it in its platform's JSON."""

    access_token: str
    expires_in: int
    refresh_token: str | None = None


@dataclass
class Token:
    grant: Grant
    expires_at: float
    used_at: float | None = None
    answer: Issued | None = None
    """The pair a refresh token was exchanged for, kept while the grace window may hand it out again."""

    @property
    def used(self) -> bool:
        return self.used_at is not None


@dataclass
class Code:
    grant: Grant
    expires_at: float
    used: bool = False


TokenMaker = Callable[[str, float, float], str]
"""``(kind, now, ttl) -> token``: kind is ``access_token`` or ``refresh_token`` (Bling makes JWT-shaped ones)."""


def random_token(kind: str, now: float, ttl: float) -> str:
    return secrets.token_urlsafe(24)


@dataclass
class TokenStore:
    """Access tokens, refresh tokens and codes, each tied to its grant, expiring on ``clock``."""

    clock: Clock
    access_ttl: float = 3600.0
    refresh_ttl: float | None = None
    """None: refresh tokens do not expire."""
    code_ttl: float = 60.0
    grace: float = 0.0
    rotate: bool = True
    """False: a refresh token is not spent by use (LWA); each refresh issues a new access token only."""
    grants: list[Grant] = field(default_factory=list)
    access: dict[str, Token] = field(default_factory=dict)
    refresh: dict[str, Token] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)

    def new_grant(self) -> Grant:
        grant = Grant(len(self.grants) + 1)
        self.grants.append(grant)
        return grant

    def issue(self, grant: Grant, *, refresh: bool = True, make: TokenMaker = random_token) -> Issued:
        now = self.clock.time()
        access = make("access_token", now, self.access_ttl)
        self.access[access] = Token(grant, now + self.access_ttl)
        refresh_token = None
        if refresh:
            ttl = self.refresh_ttl if self.refresh_ttl is not None else float("inf")
            refresh_token = make("refresh_token", now, ttl)
            self.refresh[refresh_token] = Token(grant, now + ttl)
        return Issued(access, int(self.access_ttl), refresh_token)

    def refresh_token(self, grant: Grant | None = None) -> str:
        """A live refresh token with no access token yet, as if the app had just been authorized."""
        ttl = self.refresh_ttl if self.refresh_ttl is not None else float("inf")
        token = secrets.token_hex(20)
        self.refresh[token] = Token(grant or self.new_grant(), self.clock.time() + ttl)
        return token

    def check(self, token: str) -> str | None:
        """None for a live access token, else why not: ``invalid`` (unknown or revoked) or ``expired``."""
        found = self.access.get(token)
        if found is None or not found.grant.alive:
            return "invalid"
        if found.expires_at <= self.clock.time():
            return "expired"
        return None

    def new_code(self, grant: Grant | None = None) -> str:
        code = secrets.token_hex(20)
        self.codes[code] = Code(grant or self.new_grant(), self.clock.time() + self.code_ttl)
        return code

    def redeem(self, code: str, *, reuse_revokes: bool = True) -> Grant:
        """The grant of a single-use ``code``; a code sent twice revokes its grant (RFC 6749 §4.1.2)."""
        found = self.codes.get(code)
        if found is None:
            raise OAuthError(400, "invalid_grant", "Authorization code doesn't exist or is invalid for the client")
        if found.used:
            if reuse_revokes:
                found.grant.alive = False
            raise OAuthError(400, "invalid_grant", "The authorization code has already been used")
        if found.expires_at <= self.clock.time():
            raise OAuthError(400, "invalid_grant", "The authorization code has expired")
        found.used = True
        return found.grant

    def exchange_refresh(self, token: str, *, make: TokenMaker = random_token) -> Issued:
        """A new pair for ``token`` (which is spent), or, within the grace window, the pair it already got."""
        now = self.clock.time()
        found = self.refresh.get(token)
        if (found is not None and found.answer is not None and found.used_at is not None
                and now - found.used_at <= self.grace and found.grant.alive):
            return found.answer
        if found is None or found.used or not found.grant.alive:
            raise OAuthError(400, "invalid_grant", "Invalid refresh token")
        if found.expires_at <= now:
            raise OAuthError(400, "invalid_grant", "Refresh token has expired")
        if not self.rotate:
            return self.issue(found.grant, refresh=False, make=make)
        answer = self.issue(found.grant, make=make)
        found.used_at = now
        if self.grace:
            found.answer = answer
        return answer

    def expire_access(self) -> None:
        """Every access token expires now; refresh tokens still work."""
        now = self.clock.time()
        for token in self.access.values():
            token.expires_at = min(token.expires_at, now)

    def drop_access(self) -> None:
        """Every access token is forgotten (a ``401`` fault)."""
        self.access.clear()

    def drop_refresh(self) -> None:
        self.refresh.clear()

    def revoke_all(self) -> None:
        """Every grant dies (the merchant uninstalled the app): only a new authorization helps."""
        for grant in self.grants:
            grant.alive = False
        self.access.clear()


def _same(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def check_client(client_id: str | None, client_secret: str | None, expected_id: str, expected_secret: str) -> None:
    """The client's own credentials, however the platform sends them (body, Basic header)."""
    if not (_same(client_id, expected_id) and _same(client_secret, expected_secret)):
        raise OAuthError(401, "invalid_client", "Client authentication failed")


@dataclass
class AuthorizationCode:
    """``authorization_code`` and ``refresh_token`` grants over ``store``."""

    store: TokenStore

    def grant(self, form: dict[str, str], make: TokenMaker = random_token) -> Issued:
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            return self.store.issue(self.store.redeem(form.get("code", "")), make=make)
        if grant_type == "refresh_token":
            return self.store.exchange_refresh(form.get("refresh_token", ""), make=make)
        raise OAuthError(400, "unsupported_grant_type", f"The grant type {grant_type!r} is not supported")


@dataclass
class PasswordGrant:
    """``password`` (one user's login) and ``refresh_token`` grants over ``store``."""

    store: TokenStore
    username: str
    password: str
    message: str = "The user credentials were incorrect."

    def grant(self, form: dict[str, str], make: TokenMaker = random_token) -> Issued:
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            if not (_same(form.get("username"), self.username) and _same(form.get("password"), self.password)):
                raise OAuthError(400, "invalid_grant", self.message)
            return self.store.issue(self.store.new_grant(), make=make)
        if grant_type == "refresh_token":
            return self.store.exchange_refresh(form.get("refresh_token", ""), make=make)
        raise OAuthError(400, "unsupported_grant_type", "The authorization grant type is not supported.")


@dataclass
class ClientCredentials:
    """``client_credentials``: the client's own id and secret for an access token (no refresh token)."""

    store: TokenStore
    client_id: str
    client_secret: str

    def grant(self, form: dict[str, str], make: TokenMaker = random_token) -> Issued:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        check_client(form.get("client_id"), form.get("client_secret"), self.client_id, self.client_secret)
        return self.store.issue(self.store.new_grant(), refresh=False, make=make)


@dataclass
class StaticToken:
    """A fixed bearer token (an API key): valid until revoked, never expiring."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    alive: bool = True

    def check(self, token: str) -> str | None:
        return None if self.alive and _same(token, self.token) else "invalid"
