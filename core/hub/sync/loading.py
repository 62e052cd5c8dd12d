"""Reading routes and connections out of the store, and building a connector context for them."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from pydantic import ValidationError
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from hub.config.routes import env_refusal
from hub.config.secrets import connection_options
from hub.crypto import Vault
from hub.errors import AuthRevoked, Fatal, HubError, QuotaExhausted, RateLimited, Retriable
from hub.models import Ref
from hub.platform import Credentials
from hub.privacy import mask_documents
from hub.ratelimit import PROCESS_THROTTLE, Throttle
from hub.registry import Registry
from hub.settings import Settings
from hub.store.engine import Store, utcnow
from hub.store.schema import ApiCall, Binding, Connection, Record, Route, WebhookEvent
from hub.sync.context import ApiEntry, ConnectorContext, Endpoint, RouteView

AUTH_SKEW = timedelta(seconds=60)
"""The most a token is renewed ahead of its expiry (see :func:`renewal_margin`)."""
RENEW_FRACTION = 0.2
"""...or this share of its lifetime when that is less: a 6 h Bling token is renewed a minute ahead, a 30 s token
6 s ahead, so short tokens are not renewed on every call (Bling blocks an IP at 20 token calls a minute)."""
AUTH_LEASE_FACTOR = 2.5
"""A recorded token call counts as in flight for this many token timeouts (``authenticate`` may make two calls
and wait for the host's token pace); after that, other processes treat its answer as lost."""
UNSENT_GRACE = 30.0
"""Seconds a detached renewal process has to start and mark its attempt sent; an attempt still unmarked after
that spent nothing (its worker died before starting it, or it failed first) and is taken over at once rather
than waited out (the whole lease) and then decided as a lost answer (a pause for nothing)."""
AUTH_WAIT_POLL = 0.1
"""Seconds between re-reads while another process holds the lease."""
PAUSE_FOR_REAUTH = timedelta(days=3650)

log = logging.getLogger("hub.auth")


@dataclass
class Runtime:
    """Everything the sync and operation code needs, passed explicitly (no globals)."""

    store: Store
    vault: Vault
    registry: Registry
    lease_seconds: float = 60.0
    max_attempts: int = 8
    max_backoff_seconds: float = 3600.0
    throttle: Throttle = PROCESS_THROTTLE
    detached_renewal: bool = False
    """Renew refresh tokens that rotate strictly in a detached process (:mod:`hub.sync.renewal`) that outlives
    this one, so a worker killed mid-rotation does not lose the new pair. Needs ``settings``: the renewal
    process rebuilds this runtime from them (``build_runtime`` sets both; a runtime built by hand, with its own
    registry, renews in process)."""
    settings: Settings | None = None
    """The settings this runtime was built from (home, key, broker), for a renewal process to rebuild it."""

    def __post_init__(self) -> None:
        if self.detached_renewal and self.settings is None:
            raise ValueError("Runtime(detached_renewal=True) needs the settings a renewal process rebuilds it from")


def find_route(s: Session, tenant: str, name: str) -> Route:
    route = s.scalar(select(Route).where(Route.tenant_id == tenant, Route.name == name))
    if route is None:
        known = ", ".join(s.scalars(select(Route.name).where(Route.tenant_id == tenant))) or "none"
        raise Fatal(f"tenant {tenant!r} has no route {name!r} (routes: {known})",
                    fix="Check the names, or apply the route file with `hub routes apply FILE`.")
    return route


def route_view(s: Session, route: Route) -> RouteView:
    source = s.get_one(Connection, route.source_id)
    sink = s.get_one(Connection, route.sink_id)
    cfg = route.config
    return RouteView(
        tenant=route.tenant_id, name=route.name,
        source=Endpoint(connection=source.name, platform=source.platform),
        sink=Endpoint(connection=sink.name, platform=sink.platform),
        streams=list(cfg.get("streams", [])), mappings=dict(cfg.get("mappings") or {}),
        transitions=list(cfg.get("transitions") or []), options=dict(cfg.get("options") or {}),
        emit_invoices=bool(cfg.get("emit_invoices")), cancel_replaced=cfg.get("cancel_replaced"),
        replace=list(cfg.get("replace") or []), updates=dict(cfg.get("updates") or {}),
    )


def credentials_of(vault: Vault, conn: Connection) -> dict[str, str]:
    """The stored secrets, completed from the environment variables the route file named (only names the
    allowlist accepts: a row applied before the allowlist existed cannot read ``HUB_SECRET_KEY``)."""
    values = vault.decrypt(conn.credentials) if conn.credentials else {}
    for key, var in (conn.credentials_env or {}).items():
        if key not in values and var in os.environ and env_refusal(var, conn.platform) is None:
            values[key] = os.environ[var]
    return values


def write_calls(s: Session, tenant: str, connection_id: int | None, calls: list[ApiEntry]) -> None:
    from hub.runs import CURRENT_RUN

    now = utcnow()
    if calls:
        s.execute(insert(cast(Table, ApiCall.__table__)), [
            dict(tenant_id=tenant, connection_id=connection_id, at=c.at or now, action=mask_documents(c.action)[:200],
                 model=c.model, status=c.status, duration_ms=c.duration_ms, error=mask_documents(c.error),
                 fix=mask_documents(c.fix), run_id=CURRENT_RUN.get()) for c in calls])
    calls.clear()


_auth_locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)
_settled: dict[int, datetime] = {}
"""Per connection, the recorded attempt this process saw end without an answer: it is not in flight, so nobody
here waits for its lease."""


def renewal_margin(issued_at: datetime | None, expires_at: datetime | None) -> timedelta:
    """How long before ``expires_at`` a token is renewed: :data:`AUTH_SKEW`, or :data:`RENEW_FRACTION` of its
    lifetime when that is shorter (a fixed minute would renew a 30 s token on every call)."""
    if issued_at is None or expires_at is None or expires_at <= issued_at:
        return AUTH_SKEW
    return min(AUTH_SKEW, (expires_at - issued_at) * RENEW_FRACTION)


def grant_digest(creds: dict[str, str]) -> str | None:
    """SHA-256 of the single-use grant ``authenticate`` spends (an authorization code, else the refresh token):
    what ``auth_attempt_token`` records, never the token itself."""
    secret = creds.get("authorization_code") or creds.get("refresh_token")
    return hashlib.sha256(secret.encode()).hexdigest() if secret else None


def _reauth_fix(platform: str, tenant: str) -> str:
    return (f"Re-authorize the connection: run `hub auth {platform} {tenant}` and open the link it prints; queued "
            "work resumes by itself afterwards.")


def _pause_for_reauth(rt: Runtime, connection_id: int, message: str, fix: str) -> AuthRevoked:
    """Committed on its own, so the pause survives the error it reports."""
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id)
        conn.paused_until, conn.pause_kind = utcnow() + PAUSE_FOR_REAUTH, "auth"
        conn.pause_reason = f"{message} (fix: {fix})"
    return AuthRevoked(message, fix=fix)


def _never_sent(exc: BaseException) -> bool:
    """The request never left (no connection): the single-use grant was not spent."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (httpx.ConnectError, httpx.ConnectTimeout)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _refused_by_answer(calls: list[ApiEntry]) -> bool:
    """Every call got an error answer: the platform did not rotate (an error answer changes nothing)."""
    return bool(calls) and all(c.status is not None and c.status >= 400 for c in calls)


@dataclass
class _Attempt:
    """A token call this process holds the lease for."""

    at: datetime
    digest: str | None
    resend: bool
    """The grant of an earlier attempt whose answer was lost, sent again (the platform allows it)."""
    ctx: ConnectorContext
    lease_seconds: float = 0.0
    detach: bool = False
    """Spend the grant in a detached renewal process: it is single-use and nothing could recover a lost answer."""


def ensure_auth(rt: Runtime, connection_id: int, *, stale_token: str | None = None,
                force: bool = False) -> dict[str, str]:
    """Single-flight token renewal that survives a lost answer.

    The process lock serializes this process's threads; across processes ``auth_attempt_at`` is a lease: the
    attempt (time and digest of the grant sent) is committed BEFORE the call, no transaction stays open during
    it, and others wait for it to end (or its lease, :data:`AUTH_LEASE_FACTOR` token timeouts, to run out) and
    then re-read. The old pair stays stored until the new one replaces it and clears the attempt, in one
    transaction. An attempt left without an answer (timeout, dropped connection, killed process) is sent again
    only where the platform allows it (``Platform.refresh_reuse_seconds``, ``reauth_unattended``); otherwise
    the connection pauses with what happened and the exact fix.

    With ``stale_token`` it renews only if nobody has replaced that token yet; ``force`` renews even a fresh
    token (idle renewal, a new authorization)."""
    if stale_token is None and not force:
        fresh = _fresh_credentials(rt, connection_id)
        if fresh is not None:
            return fresh
    with _auth_locks[connection_id]:
        seen: bytes | None = None
        lost: str | None = None
        superseded = 0
        while True:
            plan = _plan(rt, connection_id, stale_token, force, seen, lost)
            if isinstance(plan, dict):
                return plan
            if isinstance(plan, bytes):
                seen = plan
                time.sleep(AUTH_WAIT_POLL)
                continue
            outcome = _call_detached(rt, connection_id, plan) if plan.detach else _call(rt, connection_id, plan)
            if outcome is None:  # the recorded attempt changed before the renewal process sent anything
                superseded += 1
                if superseded > 3:
                    raise Retriable(f"connection {connection_id}: its token renewal attempt kept changing before "
                                    "the renewal process could send it", fix="The hub retries by itself.")
                continue
            if isinstance(outcome, dict):
                return outcome
            if plan.resend:
                raise outcome
            lost = outcome.message  # decided at once: pause, or send the same grant again where allowed


def _fresh_credentials(rt: Runtime, connection_id: int) -> dict[str, str] | None:
    """The stored credentials when nothing needs deciding (an unexpired token, no pause, no renewal in flight),
    read without a lock; None sends the caller to :func:`_plan`. Every operation asks for its connection's token:
    taking the row lock (and the process lock) each time queued every worker thread of a connection behind one
    row."""
    with rt.store.sessions() as s:
        conn = s.get_one(Connection, connection_id)
        paused = conn.pause_kind == "auth" and conn.paused_until is not None and conn.paused_until > utcnow()
        if paused or conn.auth_attempt_at is not None:
            return None
        creds = credentials_of(rt.vault, conn)
        if not rt.registry.implements(conn.platform, "authenticate"):
            return creds
        margin = renewal_margin(conn.token_issued_at, conn.token_expires_at)
        if "access_token" in creds and (conn.token_expires_at is None or conn.token_expires_at > utcnow() + margin):
            return creds
    return None


def _plan(rt: Runtime, connection_id: int, stale_token: str | None, force: bool, seen: bytes | None,
          lost: str | None) -> dict[str, str] | bytes | _Attempt:
    """Decide under the row lock: the stored credentials (dict), wait for another's lease (the credentials seen),
    or take the lease and make the call (_Attempt)."""
    pause: tuple[str, str] | None = None
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id, with_for_update=True)
        creds = credentials_of(rt.vault, conn)
        if not rt.registry.implements(conn.platform, "authenticate"):
            return creds
        platform = rt.registry.platform(conn.platform)
        now = utcnow()
        if conn.pause_kind == "auth" and conn.paused_until is not None and conn.paused_until > now and not force:
            raise AuthRevoked(f"connection {conn.tenant_id}/{conn.name} is paused: {conn.pause_reason}",
                              fix=_reauth_fix(conn.platform, conn.tenant_id))
        margin = renewal_margin(conn.token_issued_at, conn.token_expires_at)
        fresh = "access_token" in creds and (conn.token_expires_at is None or conn.token_expires_at > now + margin)
        if stale_token is None and fresh and not force:
            return creds
        if stale_token is not None and creds.get("access_token") != stale_token:
            return creds
        if force and seen is not None and conn.credentials != seen and "access_token" in creds:
            return creds  # renewed by the process we waited for
        digest = grant_digest(creds)
        attempt_at, resend = now, False
        lease = timedelta(seconds=AUTH_LEASE_FACTOR * platform.token_timeout_seconds)
        unsent = conn.auth_attempt_at is not None and conn.auth_attempt_sent_at is None
        if unsent and conn.auth_attempt_at is not None and (
                _settled.get(connection_id) == conn.auth_attempt_at or conn.auth_attempt_at + lease <= now
                or (now - conn.auth_attempt_at).total_seconds() > UNSENT_GRACE):
            log.info("%s connection %s/%s: the token renewal recorded at %s UTC was never sent (its worker or "
                     "renewal process stopped first); renewing now", conn.platform, conn.tenant_id, conn.name,
                     f"{conn.auth_attempt_at:%H:%M:%S}")
            conn.auth_attempt_at = conn.auth_attempt_token = None  # nothing was spent: no doubt to decide
        if conn.auth_attempt_at is not None and conn.auth_attempt_token in (None, digest):
            if _settled.get(connection_id) != conn.auth_attempt_at and conn.auth_attempt_at + lease > now:
                return conn.credentials or b""
            if digest is not None and conn.auth_attempt_token == digest:
                age = (now - conn.auth_attempt_at).total_seconds()
                if platform.reauth_unattended or age <= platform.refresh_reuse_seconds:
                    attempt_at, resend = conn.auth_attempt_at, True  # a grace window counts from the first send
                else:
                    window = (f" and the {platform.refresh_reuse_seconds:g} s during which {platform.title} accepts "
                              f"it again are over" if platform.refresh_reuse_seconds else "")
                    pause = (f"{conn.platform} connection {conn.tenant_id}/{conn.name}: the token renewal sent at "
                             f"{conn.auth_attempt_at:%Y-%m-%d %H:%M:%S} UTC got no answer "
                             f"({lost or 'the process sending it stopped before storing the answer'}); "
                             f"{platform.title} rotates refresh tokens on every use, so the refresh token it sent is "
                             f"most likely spent and the new pair it issued lost{window}",
                             _reauth_fix(conn.platform, conn.tenant_id))
        if pause is None:
            strict = not platform.reauth_unattended and not platform.refresh_reuse_seconds
            detach = rt.detached_renewal and strict and digest is not None
            conn.auth_attempt_at, conn.auth_attempt_token = attempt_at, digest
            conn.auth_attempt_sent_at = None if detach else attempt_at  # the renewal process marks its own send
            ctx = auth_context(rt, conn, creds, platform.token_timeout_seconds)
            return _Attempt(attempt_at, digest, resend, ctx, lease.total_seconds(), detach=detach)
    raise _pause_for_reauth(rt, connection_id, *pause)


def auth_context(rt: Runtime, conn: Connection, creds: dict[str, str], token_timeout: float) -> ConnectorContext:
    """The context ``authenticate`` runs in: the connection's options with the token calls' longer timeout."""
    options = connector_options(rt, conn)
    options["timeout_seconds"] = max(float(options.get("timeout_seconds") or 0), token_timeout)
    return ConnectorContext(tenant=conn.tenant_id, connection=conn.name, platform=conn.platform,
                            options=options, credentials=creds, stream="auth", budget=rt.throttle)


def _call_detached(rt: Runtime, connection_id: int, attempt: _Attempt) -> dict[str, str] | HubError | None:
    """:func:`_call` in a detached renewal process, and what it stored, as :func:`_call` tells it: the new pair,
    a pause (raised), a harmless error (raised) or a lost answer (returned; the attempt stays recorded). None:
    the recorded attempt changed before anything was sent (plan again)."""
    from hub.sync.renewal import error_from, run_detached

    ctx = attempt.ctx
    ctx.close()
    ended = run_detached(rt, connection_id, attempt)
    where = f"{ctx.platform} connection {ctx.tenant}/{ctx.connection}"
    report = ended.report
    if report is None or report.get("outcome") == "unsent":
        if report is None and ended.sent:
            _settled[connection_id] = attempt.at
            return Retriable(f"{where}: the renewal process ended (exit code {ended.returncode}) after sending the "
                             "token call and before storing its answer",
                             fix="See the renewal process's lines in the worker's log; the hub decides as for a "
                                 "lost answer.")
        with rt.store.begin() as s:
            conn = s.get_one(Connection, connection_id, with_for_update=True)
            if conn.auth_attempt_at == attempt.at and conn.auth_attempt_token == attempt.digest:
                conn.auth_attempt_at = conn.auth_attempt_token = conn.auth_attempt_sent_at = None
        reason = (str(report.get("message")) if report else
                  f"{where}: the renewal process ended (exit code {ended.returncode}) before sending the token call")
        raise Retriable(f"{reason}; nothing was spent",
                        fix="See the renewal process's lines in the worker's log; the hub retries.")
    outcome = report["outcome"]
    if outcome == "superseded":
        return None
    if outcome == "stored":
        _settled.pop(connection_id, None)
        with rt.store.sessions() as s:
            return credentials_of(rt.vault, s.get_one(Connection, connection_id))
    error = error_from(report)
    if outcome == "lost":
        _settled[connection_id] = attempt.at
        return error
    if outcome == "revoked":
        _settled.pop(connection_id, None)
    raise error


def _call(rt: Runtime, connection_id: int, attempt: _Attempt) -> dict[str, str] | HubError:
    """Make the token call the lease was taken for and store what it tells: the new pair, a refusal (pause,
    unless another process stored a pair meanwhile), or an error (the attempt stays recorded when the answer was
    lost, so the next try knows the grant may be spent)."""
    ctx = attempt.ctx
    try:
        result: Credentials | None = rt.registry.call(ctx.platform, "authenticate", ctx=ctx)
    except AuthRevoked as exc:
        ctx.log_failure("authenticate", exc.message, exc.fix)
        with rt.store.begin() as s:
            conn = s.get_one(Connection, connection_id, with_for_update=True)
            write_calls(s, conn.tenant_id, conn.id, ctx.calls)
            stored = credentials_of(rt.vault, conn)
            if "access_token" in stored and grant_digest(stored) != attempt.digest:
                return stored  # another process stored a newer pair: nothing to pause
            conn.auth_attempt_at = conn.auth_attempt_token = conn.auth_attempt_sent_at = None
        _settled.pop(connection_id, None)
        message = exc.message
        if attempt.resend:
            message = (f"{exc.message}; it was the refresh token of an earlier renewal (sent at "
                       f"{attempt.at:%Y-%m-%d %H:%M:%S} UTC) whose answer was lost, sent again")
        raise _pause_for_reauth(rt, connection_id, message, exc.fix) from None
    except Exception as exc:
        error = exc if isinstance(exc, HubError) else Retriable(
            f"{type(exc).__name__}: {exc}", fix="The plugin's authenticate failed unexpectedly; the hub retries.")
        # Nothing single-use was spent when no grant was sent, the request never left, or it was refused.
        harmless = attempt.digest is None or _refused_by_answer(ctx.calls) or _never_sent(exc)
        ctx.log_failure("authenticate", error.message, error.fix)
        with rt.store.begin() as s:
            conn = s.get_one(Connection, connection_id, with_for_update=True)
            write_calls(s, conn.tenant_id, conn.id, ctx.calls)
            if harmless and conn.auth_attempt_at == attempt.at and conn.auth_attempt_token == attempt.digest:
                conn.auth_attempt_at = conn.auth_attempt_token = conn.auth_attempt_sent_at = None
        if harmless:
            raise error from exc
        _settled[connection_id] = attempt.at
        return error
    finally:
        ctx.close()
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id, with_for_update=True)
        write_calls(s, conn.tenant_id, conn.id, ctx.calls)
        conn.auth_attempt_at = conn.auth_attempt_token = conn.auth_attempt_sent_at = None
        if result is None:
            return credentials_of(rt.vault, conn)
        conn.credentials = rt.vault.encrypt(result.values)
        conn.token_expires_at = _naive(result.expires_at)
        conn.token_issued_at = utcnow()  # not before the call: the plugin may wait for the host's token pace
        conn.renew_by = _naive(result.renew_by)
        if conn.pause_kind == "auth":
            conn.paused_until = conn.pause_kind = conn.pause_reason = None
    _settled.pop(connection_id, None)
    return dict(result.values)


def pause_for_quota(rt: Runtime, connection_id: int, exc: QuotaExhausted) -> None:
    """Stop every route of the connection until the quota renews; ``hub status`` shows why and until when."""
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id)
        if conn.pause_kind == "auth":
            return
        conn.paused_until, conn.pause_kind = exc.until, "quota"
        conn.pause_reason = f"{exc.message} (until {exc.until:%Y-%m-%d %H:%M} UTC; fix: {exc.fix})"


def _naive(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.replace(tzinfo=None) - (value.utcoffset() or timedelta())


def connector_options(rt: Runtime, conn: Connection) -> dict[str, Any]:
    """The options a connector sees: the stored ones, the encrypted secrets merged back, and the platform's defaults
    for what the route file left out (so a real account reaches the platform's real host without a ``base_url``).

    An option the platform's model refuses is a :class:`Fatal` naming the connection, the option and the fix."""
    options = connection_options(rt.vault, conn)
    registered = rt.registry.platforms.get(conn.platform)
    model = registered.platform.options if registered is not None else None
    if model is None:
        return options
    try:
        validated = model.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "(options)"
        raise Fatal(f"{conn.platform} connection {conn.tenant_id}/{conn.name}: option {name}: {first['msg']}",
                    fix=f"Correct tenants.{conn.tenant_id}.connections.{conn.name}.options.{name} in the route file, "
                        "check it with `hub routes validate FILE`, then `hub routes apply FILE`.") from None
    defaults = validated.model_dump(mode="json", by_alias=True)
    for key, value in defaults.items():
        options.setdefault(key, value)
    return options


def connection_context(rt: Runtime, conn: Connection, stream: str | None = None) -> ConnectorContext:
    """A context for ``conn`` outside a sync (plugin commands, webhooks): validated options and stored credentials,
    no token renewal."""
    return ConnectorContext(tenant=conn.tenant_id, connection=conn.name, platform=conn.platform,
                            options=connector_options(rt, conn), credentials=credentials_of(rt.vault, conn),
                            stream=stream, budget=rt.throttle)


def make_context(rt: Runtime, conn: Connection, view: RouteView | None, stream: str | None,
                 source_id: int | None = None) -> ConnectorContext:
    now = utcnow()
    if conn.paused_until is not None and conn.paused_until > now:
        if conn.pause_kind == "quota":
            raise RateLimited(f"connection {conn.tenant_id}/{conn.name} is paused: {conn.pause_reason}",
                              retry_after=(conn.paused_until - now).total_seconds())
        raise AuthRevoked(f"connection {conn.tenant_id}/{conn.name} is paused: {conn.pause_reason}",
                          fix=f"Re-authorize it: hub auth {conn.platform} {conn.tenant_id}")
    creds = ensure_auth(rt, conn.id)
    ctx = ConnectorContext(tenant=conn.tenant_id, connection=conn.name, platform=conn.platform,
                           options=connector_options(rt, conn), credentials=creds, route=view, stream=stream,
                           started_at=now, budget=rt.throttle)
    conn_id, tenant = conn.id, conn.tenant_id

    def find(entity: str, natural_key: str) -> str | None:
        with rt.store.sessions() as s:
            return s.scalar(select(Binding.external_id).join(Record, (Record.canonical_id == Binding.canonical_id)
                                                            & (Record.entity == Binding.entity)
                                                            & (Record.tenant_id == tenant))
                            .where(Binding.connection_id == conn_id, Binding.entity == entity,
                                   Record.natural_key == natural_key).limit(1))

    ctx._finder = find

    def webhook_clock(events: tuple[str, ...], within: float) -> bool:
        with rt.store.sessions() as s:
            return s.scalar(select(WebhookEvent.id).where(
                WebhookEvent.connection_id == conn_id, WebhookEvent.event.in_(events),
                WebhookEvent.received_at > utcnow() - timedelta(seconds=within)).limit(1)) is not None

    ctx._webhook_clock = webhook_clock
    if view is not None and view.updates and source_id is None:
        def carried(entity: str, external_id: str) -> bool:
            with rt.store.sessions() as s:
                canonical = s.scalar(select(Binding.canonical_id).where(
                    Binding.connection_id == conn_id, Binding.entity == entity, Binding.external_id == external_id))
                if canonical is None:
                    return False
                sink = select(Connection.id).where(Connection.tenant_id == tenant,
                                                   Connection.name == view.sink.connection).scalar_subquery()
                return s.scalar(select(Binding.id).where(Binding.connection_id == sink, Binding.entity == entity,
                                                         Binding.canonical_id == canonical).limit(1)) is not None

        ctx._carrier = carried
    if source_id is not None:
        sink_id = conn.id

        def resolve(entity: str, ref: Ref) -> str | None:
            with rt.store.sessions() as s:
                canonical = s.scalar(select(Binding.canonical_id).where(
                    Binding.connection_id == source_id, Binding.entity == entity,
                    Binding.external_id == ref.external_id))
                if canonical is None:
                    return None
                return s.scalar(select(Binding.external_id).where(
                    Binding.connection_id == sink_id, Binding.entity == entity,
                    Binding.canonical_id == canonical))

        ctx._resolver = resolve
    return ctx


def refresh_after_expiry(rt: Runtime, conn: Connection, ctx: ConnectorContext) -> None:
    """After AuthExpired: renew (single-flight) and give the context the new token."""
    creds = ensure_auth(rt, conn.id, stale_token=ctx.credentials.get("access_token"))
    ctx.credentials.clear()
    ctx.credentials.update(creds)
