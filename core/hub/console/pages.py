"""The tenant pages. Reads reuse the queries of ``hub status``, ``hub logs``, ``hub runs``, ``hub mappings`` and
the operator's switches (:mod:`hub.status`, :mod:`hub.runs`, :mod:`hub.mappings`, :mod:`hub.control`); what is
here is only what a page needs beyond them (keyset pages of failed operations, one operation's retry, saving a
DE-PARA table)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from starlette.responses import Response

from hub import control, mappings, runs, status, webhooks
from hub.console import oauth, overview, routefile
from hub.errors import ConfigError, HubError
from hub.privacy import mask_value
from hub.store.engine import utcnow
from hub.store.schema import Connection, Operation, Quarantine, Route, Tenant
from hub.sync.loading import find_route
from hub.sync.operations import retry_failed

if TYPE_CHECKING:
    from hub.console.app import Console, Page

PAGE = 50
WARN_BEFORE = timedelta(days=7)


def tenant_zone(rt: Any, tenant: str, default: str) -> ZoneInfo:
    from hub.console.app import zone_of

    with rt.store.sessions() as s:
        return zone_of(s.scalar(select(Tenant.time_zone).where(Tenant.id == tenant)), default)


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


class Views:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.rt = console.rt

    def _route(self, page: Page, name: str) -> Route:
        from hub.console.app import NotFound

        with self.rt.store.sessions() as s:
            route = s.scalar(select(Route).where(Route.tenant_id == page.tenant, Route.name == name))
            if route is None:
                raise NotFound(name)
            s.expunge(route)
            return route

    # -- connections -----------------------------------------------------------------------------------------

    def connections(self, page: Page) -> Response:
        now = utcnow()
        with self.rt.store.sessions() as s:
            conns = list(s.scalars(select(Connection).where(Connection.tenant_id == page.tenant)
                                   .order_by(Connection.name)))
        rows = []
        callback = oauth.callback_url(page.request)
        for conn in conns:
            paused = bool(conn.paused_until and conn.paused_until > now)
            warn = None
            # The refresh grant's end (e.g. Amazon's yearly re-authorization) is what needs a person; an access
            # token's own expiry only matters once renewing it failed.
            for moment in (conn.renew_by, conn.token_expires_at if conn.pause_kind == "auth" else None):
                if moment is not None and moment < now + WARN_BEFORE:
                    warn = "expired" if moment < now else "expires_soon"
            # The plugin's own warnings ahead of time (Amazon: the seller's yearly authorization), as `hub status`.
            notices = getattr(status, "auth_notices", None)
            said = notices(self.rt, conn, now) if notices is not None and not paused else []
            # The button that opens the platform's consent page, or the `hub auth` to run for a platform that
            # authorizes with the route file's credentials (API keys, a password grant, a refresh token).
            consent = (oauth.consent_of(self.rt, conn.platform) is not None
                       and oauth.consent_url(self.rt, conn, "-", callback) is not None)
            rows.append(mask_value({
                "consent": consent, "auth_cmd": f"hub auth {conn.platform} {page.tenant} --connection {conn.name}",
                "credential_names": ", ".join(_credential_names(self.rt, conn.platform)),
                "name": conn.name, "platform": conn.platform, "paused": paused, "pause_kind": conn.pause_kind,
                "pause_reason": conn.pause_reason, "token_expires_at": conn.token_expires_at,
                "renew_by": conn.renew_by, "warn": warn, "needs_auth": paused and conn.pause_kind == "auth",
                "operator_paused": conn.pause_kind in control.OPERATOR_KINDS, "notices": said}))
        return self.console.page(page, "connections.html", connections=rows, callback=callback)

    def switch_connection(self, page: Page) -> Response:
        from hub.console.app import NotFound, redirect

        name, switch = page.request.path_params["name"], page.request.path_params["switch"]
        with self.rt.store.sessions() as s:
            if s.scalar(select(Connection.id).where(Connection.tenant_id == page.tenant,
                                                    Connection.name == name)) is None:
                raise NotFound(name)
        if switch == "pause":
            control.pause_connection(self.rt, page.tenant, name)
        elif switch == "resume":
            control.resume_connection(self.rt, page.tenant, name)
        else:
            raise NotFound(switch)
        return redirect(page, "/connections")

    # -- routes ----------------------------------------------------------------------------------------------

    def routes(self, page: Page) -> Response:
        exact = page.request.query_params.get("exact") == "1"
        data = mask_value(overview.routes_overview(self.rt, page.tenant, exact=exact))
        return self.console.page(page, "routes.html", data=data)

    def run_now(self, page: Page) -> Response:
        """Mark the route due now: the scheduler of `hub run` (or of `hub serve --workers`) starts it, exactly as
        a webhook would."""
        from hub.console.app import redirect

        route = self._route(page, page.request.path_params["route"])
        self._mark_due(route)
        return redirect(page, "/routes", msg="run_queued", route=route.name)

    def run_stream_now(self, page: Page) -> Response:
        """Run now for one stream: its route is marked due, as a webhook announcing a change on that stream marks
        it (the scheduler runs a route's streams together; the others' incremental reads cost a page each)."""
        from hub.console.app import NotFound, redirect

        route = self._route(page, page.request.path_params["route"])
        stream = page.request.path_params["stream"]
        if stream not in route.config.get("streams", []):
            raise NotFound(stream)
        self._mark_due(route)
        return redirect(page, "/routes", msg="stream_queued", route=f"{route.name} / {stream}")

    def _mark_due(self, route: Route) -> None:
        """``next_run_at = now`` in the store (what webhooks and the scheduler go by), then the same wake-up a
        webhook gives: a scheduler that hears it starts the route at once, any other at its next tick."""
        held = control.held(self.rt, route)
        if held is not None:
            raise HubError(held, fix="Resume it on the Connections page (or `hub resume`) first.")
        with self.rt.store.begin() as s:
            s.execute(update(Route).where(Route.id == route.id).values(next_run_at=utcnow()))
        try:
            from hub.sync import targets
        except ImportError:  # a hub without the cross-process wake-up: this process's schedulers only
            for listener in list(webhooks.DUE_LISTENERS):
                listener()
        else:  # this process's schedulers, and every `hub run` sharing the Redis
            targets.wake(self.console.redis_url)

    def runs(self, page: Page) -> Response:
        route = self._route(page, page.request.path_params["route"])
        before = _int(page.request.query_params.get("before"))
        rows = mask_value(runs.list_runs(self.rt, page.tenant, route.name, limit=PAGE, before=before))
        more = rows[-1]["id"] if len(rows) == PAGE else None
        return self.console.page(page, "runs.html", route=route, runs=rows, more=more)

    # -- DE-PARA ---------------------------------------------------------------------------------------------

    def mappings(self, page: Page, errors: dict[str, str] | None = None, status_code: int = 200) -> Response:
        route = self._route(page, page.request.path_params["route"])
        tables = [_judged(t) for t in mappings.route_tables(self.rt, page.tenant, route.name)]
        found = routefile.read(route.config, page.tenant, route.name)
        differences = (routefile.diff(routefile.store_tables(route.config), found.tables)
                       if found.tables is not None else None)
        response = self.console.page(page, "mappings.html", route=route, tables=mask_value(tables),
                                     errors=errors or {}, posted=page.form, file=found,
                                     differences=mask_value(differences))
        response.status_code = status_code
        return response

    def write_mappings_file(self, page: Page) -> Response:
        """The store's DE-PARA values into the route file the route was applied from (comments kept)."""
        from hub.console.app import redirect

        route = self._route(page, page.request.path_params["route"])
        path, n = routefile.write_back(route.config, page.tenant, route.name)
        return redirect(page, f"/routes/{route.name}/mappings", msg="file_written", n=n, route=path)

    def save_mappings(self, page: Page) -> Response:
        """Validate every entry against the sink's offer (as `hub routes check` does), then save all or none."""
        from hub.console.app import redirect

        route = self._route(page, page.request.path_params["route"])
        reports = {t.table: t for t in mappings.route_tables(self.rt, page.tenant, route.name)}
        errors: dict[str, str] = {}
        tables: dict[str, dict[str, str]] = {}
        for key, value in page.form.items():
            if not key.startswith("map:"):
                continue
            parts = key.split(":", 2)
            if len(parts) != 3:
                continue
            _, table, source = parts
            report = reports.get(table)
            if report is None:
                errors[key] = f"unknown DE-PARA table {table!r}"
                continue
            value = value.strip()
            configured = report.entries is not None
            if not value:
                if configured:
                    errors[key] = f"{table}.{source}: choose the sink's value (an empty entry blocks the sales)"
                continue
            if not _offered(report, value):
                errors[key] = (f"{table}.{source}: {value!r} is not offered by the sink (use one of: "
                               f"{', '.join(sorted(report.sink.values.values()) or sorted(report.sink.values))})")
                continue
            tables.setdefault(table, dict(report.entries or {}))[source] = value
        for table, entries in tables.items():
            if reports[table].entries is None:  # a new table must map every source value, or it blocks the rest
                for needed in reports[table].rows:
                    if needed["source"] not in entries:
                        errors[f"map:{table}:{needed['source']}"] = (
                            f"{table}.{needed['source']}: a new DE-PARA table needs an entry for every source value")
        if errors:
            return self.mappings(page, errors, status_code=400)
        with self.rt.store.begin() as s:
            row = find_route(s, page.tenant, route.name)
            config = dict(row.config)
            config["mappings"] = {**(config.get("mappings") or {}), **tables}
            row.config = config
            row.updated_at = utcnow()
        return redirect(page, f"/routes/{route.name}/mappings", msg="saved")

    # -- API log ---------------------------------------------------------------------------------------------

    def logs(self, page: Page) -> Response:
        from hub.console.app import day_bounds

        q = page.request.query_params
        filters = {k: q.get(k, "") for k in ("connection", "status", "action", "date")}
        since = until = None
        if filters["date"]:
            bounds = day_bounds(filters["date"], page.zone)
            if bounds is None:
                raise ConfigError(f"{filters['date']!r} is not a date", fix="Use YYYY-MM-DD, e.g. 2026-12-01.")
            since, until = bounds
        before = None
        if q.get("before_at") and _int(q.get("before_id")) is not None:
            try:
                before = (datetime.fromisoformat(q["before_at"]), int(q["before_id"]))
            except ValueError:
                before = None
        rows = mask_value(status.api_log(
            self.rt, page.tenant, PAGE, connection=filters["connection"] or None, status=_int(filters["status"]),
            action=filters["action"] or None, since=since, until=until, before=before))
        with self.rt.store.sessions() as s:
            names = sorted(s.scalars(select(Connection.name).where(Connection.tenant_id == page.tenant)))
        more = None
        if len(rows) == PAGE:
            more = {**{k: v for k, v in filters.items() if v}, "before_at": rows[-1]["at"].isoformat(),
                    "before_id": rows[-1]["id"]}
        return self.console.page(page, "logs.html", rows=rows, filters=filters, names=names, more=more)

    # -- quarantine and failed operations ---------------------------------------------------------------------

    def quarantine(self, page: Page) -> Response:
        before = _int(page.request.query_params.get("before"))
        rows = mask_value(status.quarantined(self.rt, page.tenant, PAGE, before=before))
        more = rows[-1]["id"] if len(rows) == PAGE else None
        return self.console.page(page, "quarantine.html", rows=rows, more=more)

    def retry_quarantined(self, page: Page) -> Response:
        """After the fix: its route's failed operations go out again and the route runs now, so a record
        refused at pull time is read again too."""
        from hub.console.app import NotFound, redirect

        with self.rt.store.sessions() as s:
            q = s.scalar(select(Quarantine).where(Quarantine.id == page.request.path_params["id"],
                                                  Quarantine.tenant_id == page.tenant,
                                                  Quarantine.resolved_at.is_(None)))
            if q is None:
                raise NotFound("quarantine")
            route = s.get(Route, q.route_id) if q.route_id is not None else None
            route_name = route.name if route is not None else None
        n = retry_failed(self.rt, page.tenant, route_name)
        with self.rt.store.begin() as s:
            s.execute(update(Quarantine).where(Quarantine.id == q.id).values(resolved_at=utcnow()))
            if route is not None:
                s.execute(update(Route).where(Route.id == route.id).values(next_run_at=utcnow()))
        return redirect(page, "/quarantine", msg="retried", n=n)

    def failed(self, page: Page) -> Response:
        before = _int(page.request.query_params.get("before"))
        with self.rt.store.sessions() as s:
            route_names = dict(s.execute(select(Route.id, Route.name).where(Route.tenant_id == page.tenant)).all())
            # (route_id, state) is indexed: one index range per route, newest first.
            query = (select(Operation).where(Operation.route_id.in_(list(route_names)), Operation.state == "failed")
                     .order_by(Operation.id.desc()).limit(PAGE))
            if before is not None:
                query = query.where(Operation.id < before)
            rows = [{"id": o.id, "route": route_names[o.route_id], "kind": o.kind, "entity": o.entity,
                     "record": o.canonical_id, "attempts": o.attempts, "error": o.last_error, "fix": o.fix,
                     "at": o.updated_at} for o in s.scalars(query)]
        more = rows[-1]["id"] if len(rows) == PAGE else None
        return self.console.page(page, "failed.html", rows=mask_value(rows), more=more)

    def retry_all(self, page: Page) -> Response:
        from hub.console.app import redirect

        route = page.form.get("route") or None
        if route is not None:
            self._route(page, route)
        n = retry_failed(self.rt, page.tenant, route)
        return redirect(page, "/failed", msg="retried", n=n)

    def retry_one(self, page: Page) -> Response:
        from hub.console.app import NotFound, redirect

        now = utcnow()
        with self.rt.store.begin() as s:
            n = s.execute(update(Operation).where(
                Operation.id == page.request.path_params["id"], Operation.tenant_id == page.tenant,
                Operation.state == "failed").values(state="pending", attempts=0, available_at=now, lease_until=None,
                                                    dispatched_at=None, updated_at=now)).rowcount  # type: ignore[attr-defined]
        if not n:
            raise NotFound("operation")
        return redirect(page, "/failed", msg="retried", n=n)


def _credential_names(rt: Any, platform: str) -> list[str]:
    try:
        return list(rt.registry.platform(platform).credentials)
    except HubError:  # an uninstalled plugin: the page still shows the rest
        return []


def _fold(value: str) -> str:
    fold = getattr(mappings, "fold", None)
    return str(fold(value)) if fold is not None else value


def _offered(report: mappings.TableReport, value: str) -> bool:
    """Whether the sink takes ``value`` for this table: by code or name; by name with case and accents ignored
    for the tables that pass by name (as `hub routes check` judges it)."""
    if not report.sink.listed:
        return True
    offered = set(report.sink.values) | set(report.sink.values.values())
    if value in offered:
        return True
    return report.table not in mappings.LISTS and _fold(value) in {_fold(v) for v in offered}


def _judged(report: mappings.TableReport) -> dict[str, Any]:
    """The table as the editor shows it: each entry judged by the rule saving applies (a sink value by code or by
    name), so an entry the editor accepts is never flagged beside it."""
    data = report.as_dict() | {"sink_values": report.sink.values}
    problems = [] if report.entries is not None else list(data["problems"])
    for row in data["rows"]:
        if row["sink"] is None:
            row["sink_has_it"] = None
            if report.entries is not None:
                problems.append(f"{report.table}.{row['source']} ({row['source_name']}): no entry (fix: choose "
                                "the sink's value)")
        elif report.sink.listed:
            row["sink_has_it"] = _offered(report, row["sink"])
            if not row["sink_has_it"]:
                problems.append(f"{report.table}.{row['source']}: {row['sink']!r} is not offered by the sink "
                                f"(fix: use one of: {', '.join(sorted(set(report.sink.values.values())))})")
    data["problems"] = problems
    return data
