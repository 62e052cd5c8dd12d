"""Console users: argon2id password hashes (argon2-cffi), each user bound to the tenants it may see."""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select

from hub.errors import ConfigError
from hub.store.engine import Store, utcnow
from hub.store.schema import Tenant, User, UserTenant

HASHER = PasswordHasher()
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 10
# A hash to verify against when the e-mail is unknown, so a wrong e-mail takes as long as a wrong password.
_DUMMY = HASHER.hash("not a password of anyone")


@dataclass(frozen=True)
class Principal:
    """Who is signed in and which tenants they may see (read from the store on every request)."""

    id: int
    email: str
    tenants: tuple[str, ...]


def add_user(store: Store, email: str, password: str, tenants: list[str]) -> Principal:
    """Create the user, or bind an existing one to more tenants (the password is then replaced)."""
    email = email.strip().lower()
    if not EMAIL.match(email) or len(email) > 254:
        raise ConfigError(f"{email!r} is not an e-mail address", fix="Give the user's e-mail, e.g. ana@loja.com.br.")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password for {email} is too short ({len(password)} characters)",
                          fix=f"Use at least {MIN_PASSWORD} characters.")
    if not tenants:
        raise ConfigError(f"user {email} needs at least one tenant", fix="Pass --tenant T (repeatable).")
    with store.begin() as s:
        known = set(s.scalars(select(Tenant.id).where(Tenant.id.in_(tenants))))
        missing = sorted(set(tenants) - known)
        if missing:
            raise ConfigError(f"no tenant {', '.join(missing)} in the store",
                              fix="Apply the route file that declares it first: hub routes apply FILE")
        user = s.scalar(select(User).where(User.email == email))
        if user is None:
            user = User(email=email, password_hash=HASHER.hash(password), created_at=utcnow(), last_login_at=None)
            s.add(user)
            s.flush()
        else:
            user.password_hash = HASHER.hash(password)
        bound = set(s.scalars(select(UserTenant.tenant_id).where(UserTenant.user_id == user.id)))
        for tenant in sorted(set(tenants) - bound):
            s.add(UserTenant(user_id=user.id, tenant_id=tenant))
        s.flush()
        return Principal(user.id, email, tuple(sorted(bound | set(tenants))))


def remove_user(store: Store, email: str) -> bool:
    with store.begin() as s:
        return bool(s.execute(delete(User).where(User.email == email.strip().lower())).rowcount)  # type: ignore[attr-defined]


def authenticate(store: Store, email: str, password: str) -> Principal | None:
    with store.sessions() as s:
        user = s.scalar(select(User).where(User.email == email.strip().lower()))
    try:
        HASHER.verify(user.password_hash if user is not None else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    with store.begin() as s:
        found = s.get_one(User, user.id)
        found.last_login_at = utcnow()
        if HASHER.check_needs_rehash(found.password_hash):
            found.password_hash = HASHER.hash(password)
    return principal(store, user.id)


def principal(store: Store, user_id: int) -> Principal | None:
    with store.sessions() as s:
        user = s.get(User, user_id)
        if user is None:
            return None
        tenants = tuple(s.scalars(select(UserTenant.tenant_id).where(UserTenant.user_id == user_id)
                                  .order_by(UserTenant.tenant_id)))
        return Principal(user.id, user.email, tenants)
