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
        conn.token_expires_at = conn.token_issued_at = None
        # A new grant: an earlier lost rotation is moot.
        conn.auth_attempt_at = conn.auth_attempt_token = conn.auth_attempt_sent_at = None
    ensure_auth(rt, connection_id, force=True)
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id)
        conn.paused_until = conn.pause_kind = conn.pause_reason = None
        resumed = s.execute(update(Operation).where(Operation.connection_id == connection_id,
                                                    Operation.state == "pending")
                            .values(available_at=utcnow()))
        return int(resumed.rowcount)  # type: ignore[attr-defined]


class Authorization:
    """What a plugin's ``hub auth PLATFORM TENANT`` command works with, without touching the store itself: the
    connection's context (options and stored credentials, e.g. to build the platform's consent link) and
    :meth:`complete`, which exchanges the grant a person brought back and resumes the connection's queued work."""

    def __init__(self, tenant: str, platform: str, connection: str | None = None) -> None:
        from hub.app import build_runtime
        from hub.store.migrate import require_head
        from hub.sync.loading import connection_context

        self._rt = build_runtime()
        require_head(self._rt.store)
        self._conn = find_connection(self._rt, tenant, platform, connection)
        self.tenant, self.platform, self.connection = tenant, platform, self._conn.name
        self.context = connection_context(self._rt, self._conn)

    def complete(self, grant: dict[str, str]) -> int:
        """Store ``grant`` (e.g. ``{"authorization_code": ...}``), let the plugin exchange it, resume the
        connection; return how many waiting operations resume."""
        try:
            return authorize(self._rt, self._conn.id, grant)
        finally:
            self.context.close()
