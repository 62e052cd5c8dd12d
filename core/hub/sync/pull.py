"""One run of a route's pull side: every stream, page by page, cursor committed with each page."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.errors import AuthExpired, AuthRevoked, ConfigError, Fatal, HubError, PaginationLoop, QuotaExhausted
from hub.models import PaymentMethod
from hub.platform import Incoming, Page
from hub.privacy import mask_documents
from hub.ratelimit import BULK
from hub.store import statistics
from hub.store.engine import utcnow
from hub.store.schema import Connection, Cursor, Route
from hub.streams import stream_spec
from hub.sync import targets
from hub.sync.context import ApiEntry, ConnectorContext, RouteView, budget_priority
from hub.sync.give_way import give_way
from hub.sync.ingest import FUTURE_TOLERANCE, PageCounts, enqueue, in_the_future, operation_row, write_page
from hub.sync.loading import (
    Runtime,
    find_route,
    make_context,
    pause_for_quota,
    refresh_after_expiry,
    route_view,
    write_calls,
)

Progress = Callable[[str, PageCounts], None]
Started = Callable[[str], None]
"""Called with a stream's name (or ``preflight``) as its reading starts, before the first page arrives."""


@dataclass
class StreamResult:
    stream: str
    counts: PageCounts = field(default_factory=PageCounts)
    pages: int = 0
    error: str | None = None
    fix: str | None = None
    error_class: type[HubError] | None = None
    """The class of the error that stopped the stream (a RateLimited is waited out, a Fatal is not)."""


@dataclass
class SyncReport:
    tenant: str
    route: str
    streams: list[StreamResult] = field(default_factory=list)
    run_id: int | None = None
    """The run recorded in the run history (``hub runs``), when one was."""
    backstop_at: datetime | None = None
    """A run that read webhook-named records only (``targeted``): when the route's incremental run is due, at the
    latest (the scheduler starts the route then even if no webhook comes)."""

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.streams)


def _pages(rt: Runtime, ctx: ConnectorContext, platform: str, stream: str, since: str | None) -> Iterable[Page]:
    hook = stream_spec(stream, rt.registry).pull_hook
    kwargs = {"ctx": ctx, "stream": stream, "since": since}
    pages: Iterable[Page] = rt.registry.call(platform, hook, **kwargs)
    return pages


READ_AHEAD = 1
"""Pages read ahead of the one being written: the platform's next page is fetched while the store writes this one
(memory stays bounded by a few pages)."""


def read_ahead(pages: Iterable[Page], ctx: ConnectorContext) -> Iterator[tuple[Page, list[ApiEntry]]]:
    """Run the plugin's page generator in a thread, so reading the platform and writing the store overlap. Each page
    comes with the API calls made to read it; an error in the reader is raised here, in order."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(pages)
        try:
            for page in iterator:
                calls = ctx.calls[:]
                del ctx.calls[:len(calls)]
                if not put(("page", (page, calls))):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it where the page would be
            put(("error", exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=contextvars.copy_context().run, args=(produce,), name="hub-read-ahead",
                              daemon=True)  # in the run's context (hub.runs.CURRENT_RUN): a token renewal is its call
    reader.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        reader.join()


def preflight(rt: Runtime, route: Route, view: RouteView, source: Connection) -> None:
    """Refuse to move anything when the source has payment methods the route's DE-PARA does not map."""
    table = view.mappings.get("payment_methods")
    if table is None or "sales" not in view.streams:
        return
    platform = rt.registry.platform(source.platform)
    if "payment_methods" not in platform.pulls:
        return
    unmapped: list[str] = []
    for attempt in (1, 2):
        ctx = make_context(rt, source, view, "payment_methods")
        unmapped = []
        try:
            for page in _pages(rt, ctx, source.platform, "payment_methods", None):
                for item in _checked(rt, source.platform, "payment_methods", page).records:
                    if isinstance(item, Incoming):
                        data = item.data
                        try:
                            method = data if isinstance(data, PaymentMethod) else PaymentMethod.model_validate(data)
                        except ValidationError:
                            continue  # quarantined with its field when the payment_methods stream is pulled
                        if method.active and method.code not in table:
                            unmapped.append(f"{method.code} ({method.name})")
            break
        except AuthExpired as exc:
            if isinstance(exc, AuthRevoked) or attempt == 2:
                raise
            refresh_after_expiry(rt, source, ctx)
        finally:
            with rt.store.begin() as s:
                write_calls(s, route.tenant_id, source.id, ctx.calls)
            ctx.close()
    if unmapped:
        raise ConfigError(
            f"tenant {route.tenant_id}, route {route.name}: payment methods of {source.name} with no DE-PARA "
            f"entry: {', '.join(unmapped)}; nothing was synced",
            fix=f"Add them under tenants.{route.tenant_id}.routes.{route.name}.mappings.payment_methods "
                "and run `hub routes apply FILE` (a method is never guessed).",
        )


def sync_route(rt: Runtime, tenant: str, name: str, *, full: bool = False,
               progress: Progress | None = None, streams: list[str] | None = None,
               started: Started | None = None, trigger: str | None = "sync", close_run: bool = True,
               targeted: bool = False) -> SyncReport:
    """Pull ROUTE's streams (``streams``: only these) into the store.

    ``trigger`` names the run in the run history (None: record none); with ``close_run=False`` the caller ends it
    (``hub.runs.end_run``) after pushing, so the run's figures include the push. ``targeted`` (the scheduler's
    runs): a stream whose incremental run is not due yet reads only the records webhooks named, or nothing when
    none is waiting (see :mod:`hub.sync.targets`)."""
    report = SyncReport(tenant, name)
    with rt.store.begin() as s:
        route = find_route(s, tenant, name)
        view = route_view(s, route)
        source = s.get_one(Connection, route.source_id)
        s.expunge_all()
    if streams:
        unknown = [st for st in streams if st not in view.streams]
        if unknown:
            raise ConfigError(f"tenant {tenant}, route {name} has no stream {', '.join(unknown)} "
                              f"(its streams: {', '.join(view.streams)})", fix="Name one of the route's streams.")
    if trigger is not None:
        from hub.runs import start_run

        report.run_id = start_run(rt, route, trigger)
    try:
        _sync_streams(rt, route, view, source, streams, full, report, progress, started, targeted)
    except BaseException as exc:
        if report.run_id is not None:
            from hub.runs import end_run

            try:
                end_run(rt, report.run_id, report, error=mask_documents(f"{type(exc).__name__}: {exc}"))
            except Exception:  # the store may be what failed: the original error is the one to see
                pass
        raise
    if report.run_id is not None and close_run:
        from hub.runs import end_run

        end_run(rt, report.run_id, report)
    return report


def _backstop_every(route: Route) -> float:
    return float(route.schedule_seconds or targets.BACKSTOP_SECONDS)


def _plan(rt: Runtime, route: Route, source: Connection, streams: list[str]
          ) -> dict[str, tuple[str, dict[str, datetime]]]:
    """What a scheduled run does with each stream, and the records webhooks named for it. With none named on any
    stream, the run is the schedule's (or someone asked for it): every stream is read incrementally, as always.
    Otherwise a stream reads ``incremental`` (first run, its incremental due, an event that named no record, too
    many records waiting, or a plugin without ``pull_records``), ``targeted`` (only the named records) or nothing
    (``skip``: none named and not due)."""
    with rt.store.sessions() as s:
        cursors = {c.stream: c for c in s.scalars(select(Cursor).where(Cursor.route_id == route.id,
                                                                       Cursor.stream.in_(streams)))}
        waiting = {stream: targets.pending(s, route.id, stream) for stream in streams}
    if not any(waiting.values()):
        return {stream: ("incremental", {}) for stream in streams}
    every = _backstop_every(route)
    due_by = utcnow() + timedelta(seconds=min(5.0, every / 10))  # streams of one run finish seconds apart
    plan: dict[str, tuple[str, dict[str, datetime]]] = {}
    for stream in streams:
        cursor, named = cursors.get(stream), waiting[stream]
        if cursor is None or cursor.position is None or cursor.last_success_at is None \
                or cursor.last_success_at + timedelta(seconds=every) <= due_by:
            plan[stream] = ("incremental", named)
        elif not named:
            plan[stream] = ("skip", named)
        elif (targets.ANY in named or len(named) > targets.MAX_TARGETED
              or not rt.registry.implements(source.platform, "pull_records")):
            plan[stream] = ("incremental", named)
        else:
            plan[stream] = ("targeted", named)
    return plan


def _backstop_at(rt: Runtime, route: Route, streams: list[str]) -> datetime | None:
    """When the oldest of the route's incremental reads is due again (the scheduler's next start at the latest)."""
    with rt.store.sessions() as s:
        done = [c.last_success_at for c in s.scalars(select(Cursor).where(Cursor.route_id == route.id,
                                                                           Cursor.stream.in_(streams)))]
    if len(done) < len(streams) or any(d is None for d in done):
        return None
    return min(d for d in done if d is not None) + timedelta(seconds=_backstop_every(route))


def _sync_streams(rt: Runtime, route: Route, view: RouteView, source: Connection, only: list[str] | None,
                  full: bool, report: SyncReport, progress: Progress | None, started: Started | None,
                  targeted: bool = False) -> None:
    if started:
        started("preflight")
    try:
        preflight(rt, route, view, source)
    except HubError as exc:
        report.streams.append(StreamResult("preflight", error=exc.message, fix=exc.fix))
        return
    except Exception as exc:
        error = _unexpected(rt, route, source, "payment_methods", exc)
        report.streams.append(StreamResult("preflight", error=error.message, fix=error.fix))
        return
    incremental: set[str] = set()
    chosen = [st for st in view.streams if not only or st in only]
    plans = _plan(rt, route, source, chosen) if targeted and not full else {}
    for stream in chosen:
        plan, _named = plans.get(stream, ("incremental", {}))
        if plan == "skip":
            continue
        result = StreamResult(stream)
        report.streams.append(result)
        if started:
            started(stream)
        try:
            try:
                if plan == "targeted" and _read_targets(rt, route, view, source, stream, result, progress):
                    continue
                plan = "incremental"
                read_from = utcnow()
                _sync_stream(rt, route, view, source, stream, full, result, progress)
                with rt.store.begin() as s:  # it answered every record announced before it started
                    targets.clear(s, route.id, stream, read_from)
            except HubError:
                raise
            except Exception as exc:  # a plugin's bug in one stream must not stop the route's other streams
                raise _unexpected(rt, route, source, stream, exc) from exc
        except HubError as exc:
            result.error, result.fix, result.error_class = exc.message, exc.fix, type(exc)
            with rt.store.begin() as s:
                cursor = _cursor(s, route, stream)
                cursor.last_error = mask_documents(f"{exc.message} (fix: {exc.fix})")
                cursor.updated_at = utcnow()
            if isinstance(exc, AuthRevoked | ConfigError | QuotaExhausted):
                break
        if plan == "incremental":
            incremental.add(stream)
    if targeted and not full and route.schedule_seconds and set(chosen) - incremental:
        # A run that read webhook-named records: the route comes back when its oldest incremental read is due, so
        # a lost webhook converges on schedule. A route with no schedule rests as before: its first webhook-started
        # run BACKSTOP_SECONDS after the last incremental read is incremental again.
        report.backstop_at = _backstop_at(rt, route, chosen)


def _plugin(rt: Runtime, platform: str) -> str:
    return rt.registry.get(platform).plugin if platform in rt.registry.platforms else "(not installed)"


def _unexpected(rt: Runtime, route: Route, source: Connection, stream: str, exc: BaseException) -> Fatal:
    """An exception no connector should raise, as an error naming the plugin, recorded in the API log."""
    error = Fatal(f"tenant {route.tenant_id}, route {route.name}: plugin {_plugin(rt, source.platform)} failed "
                  f"reading {stream} from {source.name}: {type(exc).__name__}: {exc}",
                  fix=f"Report it to the maintainers of plugin {_plugin(rt, source.platform)} with this message; the "
                      "route's other streams went on, and this one is retried on the next sync.")
    with rt.store.begin() as s:
        write_calls(s, route.tenant_id, source.id, [ApiEntry(action=f"pull {stream}", model=stream, status=None,
                                                              duration_ms=None, error=error.message, fix=error.fix)])
    return error


def _checked(rt: Runtime, platform: str, stream: str, page: Any) -> Page:
    if not isinstance(page, Page):
        plugin = _plugin(rt, platform)
        raise Fatal(f"plugin {plugin} yielded a {type(page).__name__} instead of a hub.Page while reading {stream} "
                    f"from {platform}", fix=f"Report it to the maintainers of plugin {plugin}: a pull hook must "
                                            "yield hub.Page objects.")
    return page


def _safe_cursor(rt: Runtime, platform: str, stream: str, proposed: str, previous: str | None,
                 calls: list[ApiEntry]) -> str | None:
    """The page's cursor, unless it is a date in the future: stored, it would hide every record dated before it,
    so the previous cursor is kept and the API log says which plugin gave it."""
    try:
        moment = datetime.fromisoformat(proposed.strip().replace("Z", "+00:00"))
    except ValueError:
        return proposed
    if not in_the_future(moment):
        return proposed
    plugin = _plugin(rt, platform)
    calls.append(ApiEntry(
        action=f"cursor {stream}", model=stream, status=None, duration_ms=None,
        error=f"plugin {plugin} gave {stream} the cursor {proposed}, more than "
              f"{int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes in the future; the previous one "
              f"({previous or 'none'}) was kept",
        fix=f"A record on {platform} is probably future-dated (it is quarantined: see hub logs); correct its date "
            f"there. If this repeats with no such record, report it to the maintainers of plugin {plugin}."))
    return previous


def _cursor(s: Session, route: Route, stream: str) -> Cursor:
    cursor = s.scalar(select(Cursor).where(Cursor.route_id == route.id, Cursor.stream == stream))
    if cursor is None:
        cursor = Cursor(tenant_id=route.tenant_id, route_id=route.id, stream=stream, position=None,
                        last_success_at=None, last_error=None, updated_at=utcnow())
        s.add(cursor)
    return cursor


def _sync_stream(rt: Runtime, route: Route, view: RouteView, source: Connection, stream: str, full: bool,
                 result: StreamResult, progress: Progress | None) -> None:
    with rt.store.begin() as s:
        since = None if full else _cursor(s, route, stream).position
    full_run = since is None
    bulk = budget_priority(stream, view.streams) == BULK
    for attempt in (1, 2):
        ctx = make_context(rt, source, view, stream)
        try:
            previous: tuple[tuple[str, ...], str | None] | None = None
            for raw_page, calls in read_ahead(_pages(rt, ctx, source.platform, stream, since), ctx):
                page = _checked(rt, source.platform, stream, raw_page)
                signature = (tuple(r.external_id for r in page.records), page.cursor)
                if page.records and signature == previous:
                    raise PaginationLoop(f"{source.platform} returned the same page twice while reading {stream} "
                                         f"(tenant {route.tenant_id}, route {route.name}); stopped")
                previous = signature
                with rt.store.begin() as s:
                    s.add(route)
                    counts = write_page(s, rt.registry, route, view, stream, page.records)
                    cursor = _cursor(s, route, stream)
                    if page.cursor is not None:
                        cursor.position = since = _safe_cursor(rt, source.platform, stream, page.cursor,
                                                               cursor.position, calls)
                    cursor.updated_at = utcnow()
                    write_calls(s, route.tenant_id, source.id, calls)
                    s.expunge(route)
                    statistics.refresh(s, result.pages + 1, full=full_run)
                result.pages += 1
                if bulk:
                    give_way()
                result.counts.add(counts)
                if progress:
                    progress(stream, counts)
            with rt.store.begin() as s:
                cursor = _cursor(s, route, stream)
                cursor.last_success_at, cursor.last_error, cursor.updated_at = utcnow(), None, utcnow()
                write_calls(s, route.tenant_id, source.id, ctx.calls)
                if full_run and stream in view.replace:
                    s.add(route)
                    enqueue(s, [operation_row(route, kind="prune_catalog", entity=stream,
                                              canonical_id=f"prune:{stream}", content_hash=utcnow().isoformat())])
                    s.expunge(route)
            return
        except AuthExpired as exc:
            if isinstance(exc, AuthRevoked) or attempt == 2:
                raise
            refresh_after_expiry(rt, source, ctx)
        except Exception as exc:
            _keep_failed_calls(rt, route, source, ctx, exc, f"pull {stream}")
            raise
        finally:
            ctx.close()


def _keep_failed_calls(rt: Runtime, route: Route, source: Connection, ctx: ConnectorContext, exc: Exception,
                       action: str) -> None:
    """A read that failed keeps its API log (with the error and its fix), and a spent quota pauses the source."""
    if isinstance(exc, HubError):
        ctx.log_failure(action, exc.message, exc.fix)
    with rt.store.begin() as s:
        write_calls(s, route.tenant_id, source.id, ctx.calls)
    if isinstance(exc, QuotaExhausted):
        pause_for_quota(rt, source.id, exc)


def _read_targets(rt: Runtime, route: Route, view: RouteView, source: Connection, stream: str,
                  result: StreamResult, progress: Progress | None) -> bool:
    """Read only the records webhooks named (``pull_records``) and forget the ones it answered; False when the
    plugin cannot for this stream (it answered None), so the caller runs the incremental read. The cursor stays:
    the incremental run remains the backstop.

    One run of the route reads a stream's named records at a time (a lock shared by every worker): a run started
    by a later webhook while one reads waits, then reads only what is still waiting, so a burst over a few records
    costs a few reads."""
    with rt.throttle.lock(f"{route.tenant_id}:route:{route.id}:targets:{stream}", TARGETS_LOCK_SECONDS):
        with rt.store.sessions() as s:
            waiting = targets.pending(s, route.id, stream)
        if not waiting:
            return True  # another run read them meanwhile
        if targets.ANY in waiting or len(waiting) > targets.MAX_TARGETED:
            return False
        return _read_named(rt, route, view, source, stream, waiting, result, progress)


TARGETS_LOCK_SECONDS = 300.0
"""How long a targeted read may hold its stream's lock (and how long another run waits for it)."""


def _read_named(rt: Runtime, route: Route, view: RouteView, source: Connection, stream: str,
                waiting: dict[str, datetime], result: StreamResult, progress: Progress | None) -> bool:
    ids = list(waiting)
    read_from = utcnow()
    for attempt in (1, 2):
        ctx = make_context(rt, source, view, stream)
        try:
            pages = rt.registry.call(source.platform, "pull_records", ctx=ctx, stream=stream, ids=ids,
                                     received=dict(waiting))
            if pages is None:
                return False
            for raw_page, calls in read_ahead(pages, ctx):
                page = _checked(rt, source.platform, stream, raw_page)
                with rt.store.begin() as s:
                    s.add(route)
                    counts = write_page(s, rt.registry, route, view, stream, page.records)
                    write_calls(s, route.tenant_id, source.id, calls)
                    s.expunge(route)
                result.pages += 1
                result.counts.add(counts)
                if progress:
                    progress(stream, counts)
            with rt.store.begin() as s:
                write_calls(s, route.tenant_id, source.id, ctx.calls)
                targets.clear(s, route.id, stream, read_from, ids)
            return True
        except AuthExpired as exc:
            if isinstance(exc, AuthRevoked) or attempt == 2:
                raise
            refresh_after_expiry(rt, source, ctx)
        except Exception as exc:
            _keep_failed_calls(rt, route, source, ctx, exc, f"pull {stream} (webhook records)")
            raise
        finally:
            ctx.close()
    return False
