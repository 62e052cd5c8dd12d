"""The canonical store's tables. One schema for SQLite (the embedded default) and PostgreSQL.

Times are naive UTC (SQLite keeps no zone); money lives inside the JSON payloads as strings, never floats.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: Json, int: Integer, bytes: LargeBinary}


class Tenant(Base):
    """A merchant. Everything else hangs off a tenant; no query crosses tenants."""

    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    time_zone: Mapped[str | None] = mapped_column(String(64))
    """IANA zone the console shows the tenant's dates in (America/Sao_Paulo when unset)."""


class Connection(Base):
    """A tenant's account on one platform: options, encrypted credentials and pause state."""

    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict[str, Any]]
    credentials: Mapped[bytes | None]
    credentials_env: Mapped[dict[str, Any]]
    token_expires_at: Mapped[datetime | None]
    paused_until: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(Text)
    pause_kind: Mapped[str | None] = mapped_column(String(16))
    renew_by: Mapped[datetime | None]
    token_issued_at: Mapped[datetime | None]
    """When the stored access token was issued: the renewal margin scales with the token's lifetime."""
    auth_attempt_at: Mapped[datetime | None]
    """A token call in flight (recorded before it is sent, cleared once its answer is stored): a crash or a
    timeout between the two leaves it set, so the next renewal knows the platform may already have rotated."""
    auth_attempt_token: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the refresh token that call sent (never the token itself)."""
    auth_attempt_sent_at: Mapped[datetime | None]
    """When that call left: set with the attempt for an in-process call, by the renewal process right before it
    sends for a detached one. An attempt never marked sent spent nothing (its worker died before the renewal
    process started, or that process failed first), so it is taken over instead of pausing the connection."""
    secret_options: Mapped[bytes | None]
    """Option values that are secrets (``${VAR}`` expansions, fields marked secret), encrypted like credentials."""
    updated_at: Mapped[datetime]


class Route(Base):
    """An applied route: source connection to sink connection, streams, schedule and mappings."""

    __tablename__ = "routes"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    sink_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    config: Mapped[dict[str, Any]]
    enabled: Mapped[bool]
    schedule_seconds: Mapped[int | None]
    next_run_at: Mapped[datetime | None]
    sync_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    """Consecutive failed runs: a failed run is retried with backoff, scheduled or triggered by a webhook."""
    paused_at: Mapped[datetime | None]
    """Set by ``hub pause TENANT --route R``: no scheduled run and no push until ``hub resume``; a route file
    applied again does not undo it (the operator's pause outlives a redeploy)."""
    updated_at: Mapped[datetime]


class Record(Base):
    """The canonical copy of one entity, with its content hash for change detection."""

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("tenant_id", "entity", "canonical_id"),
        Index("ix_records_natural_key", "tenant_id", "entity", "natural_key"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    canonical_id: Mapped[str] = mapped_column(String(36))
    natural_key: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    updated_at: Mapped[datetime]


class Binding(Base):
    """External id on a connection <-> canonical id, unique both ways (OCA's external.binding)."""

    __tablename__ = "bindings"
    __table_args__ = (
        UniqueConstraint("connection_id", "entity", "external_id"),
        UniqueConstraint("connection_id", "entity", "canonical_id"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    canonical_id: Mapped[str] = mapped_column(String(36))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(8))
    synced_at: Mapped[datetime]


class Cursor(Base):
    """Where a stream's incremental pull resumes, and when it last completed."""

    __tablename__ = "cursors"
    __table_args__ = (UniqueConstraint("route_id", "stream"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    route_id: Mapped[int] = mapped_column(ForeignKey("routes.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(32))
    position: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Operation(Base):
    """The outbox: one remote write, recorded with its idempotency key before any call is made."""

    __tablename__ = "operations"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_operations_due", "state", "available_at"),
        Index("ix_operations_record", "route_id", "canonical_id", "state"),  # coalesce: one probe per record
        Index("ix_operations_run", "run_id"),
        # hub.sync.fairness: urgent kinds first, each route's queue in order, what is in flight
        Index("ix_operations_kind_due", "state", "kind", "available_at"),
        Index("ix_operations_route_queue", "route_id", "state", "id"),
        Index("ix_operations_dispatched", "state", "dispatched_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    route_id: Mapped[int] = mapped_column(ForeignKey("routes.id", ondelete="CASCADE"))
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    canonical_id: Mapped[str] = mapped_column(String(36))
    content_hash: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    idempotency_key: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int]
    waits: Mapped[int]
    available_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    remote_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    fix: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    run_id: Mapped[int | None] = mapped_column(Id)
    """The run (``hub runs``) whose outcome it is: the run that queued it, or a run that ran it since (a worker
    outside any run leaves it to the run that queued it)."""


class ApiCall(Base):
    """Each remote call: the "Logs de API" screen, with a suggested fix for failures."""

    __tablename__ = "api_log"
    __table_args__ = (Index("ix_api_log_tenant_at", "tenant_id", "at"), Index("ix_api_log_run", "run_id"))
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[int | None]
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[int | None]
    duration_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    fix: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(Id)
    """The run (``hub runs``) that made the call, if any: a run's counts are its own, never another's."""


class Quarantine(Base):
    """A refused record with its reason; the rest of the sync went on without it."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_tenant", "tenant_id", "resolved_at"), Index("ix_quarantine_run", "run_id"))
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    route_id: Mapped[int | None]
    connection_id: Mapped[int | None]
    entity: Mapped[str] = mapped_column(String(32))
    record: Mapped[str] = mapped_column(String(200))
    field: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    fix: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    run_id: Mapped[int | None] = mapped_column(Id)
    """The run (``hub runs``) that refused the record last, if any: a run's counts are its own, never another's."""


class WebhookEvent(Base):
    """A webhook already accepted: platforms deliver twice, so the event id is remembered per connection."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("connection_id", "event_id"),
                      Index("ix_webhook_events_recent", "connection_id", "event", "received_at"),
                      Index("ix_webhook_events_named", "connection_id", "external_id", "received_at"))
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    external_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """The record the event names, if any: a wait for that record's change ends once it arrived."""


class WebhookTarget(Base):
    """A record a webhook named, waiting for its route to read it (``hub.sync.targets``).

    One row per route, stream and record: a second event for the same record only moves ``received_at``, so a burst
    over a few records stays a few rows. The row is the truth; a broker or pub/sub message about it is only a wake-up.
    """

    __tablename__ = "webhook_targets"
    __table_args__ = (UniqueConstraint("route_id", "stream", "external_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    route_id: Mapped[int] = mapped_column(ForeignKey("routes.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime]


class Run(Base):
    """One run of a route (``hub sync`` or scheduled): the sync history ``hub runs`` lists."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_tenant_started", "tenant_id", "started_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    route_id: Mapped[int] = mapped_column(ForeignKey("routes.id", ondelete="CASCADE"))
    route: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))
    """``sync`` (the command), ``schedule`` or ``webhook`` (``hub run``)."""
    status: Mapped[str] = mapped_column(String(16))
    """``running``, ``ok`` or ``failed``."""
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    streams: Mapped[dict[str, Any]]
    """Per stream: read, new, changed, unchanged, quarantined, operations, error."""
    operations_done: Mapped[int] = mapped_column(default=0, server_default="0")
    operations_failed: Mapped[int] = mapped_column(default=0, server_default="0")
    quarantined: Mapped[int] = mapped_column(default=0, server_default="0")
    """Records refused during the run, at pull or at push time."""
    api_calls: Mapped[int] = mapped_column(default=0, server_default="0")
    rate_limited: Mapped[int] = mapped_column(default=0, server_default="0")
    """Answers 429 (too many requests) among those calls."""
    error: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A person who signs in to the console (``hub serve``); the password is kept only as an argon2 hash."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("email"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class UserTenant(Base):
    """Which tenants a user may see: an integrator has many, a shop only its own."""

    __tablename__ = "user_tenants"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
