"""Authorizing a connection: what ``hub auth PLATFORM TENANT`` commands call once a person has granted access."""

from __future__ import annotations

from sqlalchemy import select, update

from hub.errors import Fatal
from hub.store.engine import utcnow
from hub.store.schema import Connection, Operation
from hub.sync.loading import Runtime, credentials_of, ensure_auth


def find_connection(rt: Runtime, tenant: str, platform: str, name: str | None = None) -> Connection:
    """The tenant's connection on ``platform`` (by name when the tenant has several)."""
    with rt.store.sessions() as s:
        query = select(Connection).where(Connection.tenant_id == tenant, Connection.platform == platform)
        if name:
            query = query.where(Connection.name == name)
        found = list(s.scalars(query))
    if len(found) != 1:
        which = ", ".join(c.name for c in found) or "none"
        raise Fatal(f"tenant {tenant!r} has {len(found)} {platform} connections ({which})",
                    fix="Apply the tenant's route file first, and name the connection with --connection when there "
                        "are several.")
    return found[0]


def authorize(rt: Runtime, connection_id: int, grant: dict[str, str]) -> int:
    """Store ``grant`` (e.g. an authorization code) with the credentials, let the plugin exchange it, and resume
    the connection: its paused operations become due at once. Returns how many operations were resumed."""
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id, with_for_update=True)
        creds = credentials_of(rt.vault, conn)
        creds.update(grant)
        creds.pop("access_token", None)
        conn.credentials = rt.vault.encrypt(creds)
        conn.token_expires_at = None
    ensure_auth(rt, connection_id, force=True)
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id)
        conn.paused_until = conn.pause_kind = conn.pause_reason = None
        resumed = s.execute(update(Operation).where(Operation.connection_id == connection_id,
                                                    Operation.state == "pending")
                            .values(available_at=utcnow()))
        return int(resumed.rowcount)  # type: ignore[attr-defined]
