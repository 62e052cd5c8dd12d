"""Running and watching: sync, status, logs, run, sandbox, demo."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import click

from hub.cli.common import check_home, echo_json, friendly_errors, local_zone, show_time, store_runtime
from hub.errors import HubError
from hub.privacy import mask_value


@click.command()
@click.argument("tenant")
@click.argument("route")
@click.option("--full", is_flag=True, help="Ignore the cursors and read everything again.")
@click.option("--stream", "streams", multiple=True, metavar="S", help="Only this stream (repeatable).")
@click.option("--no-push", is_flag=True, help="Only pull into the store; leave the operations to `hub run`.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON report on stdout.")
@friendly_errors
def sync(tenant: str, route: str, full: bool, streams: tuple[str, ...], no_push: bool, as_json: bool) -> None:
    """Run ROUTE of TENANT once: pull what changed, then push it to the sink.

    Exits 1 when a stream failed, an operation failed or a record was refused at push time."""
    from hub.control import held
    from hub.runs import end_run
    from hub.sync.drain import drain, operation_counts
    from hub.sync.loading import find_route
    from hub.sync.pull import SyncReport, sync_route

    rt = store_runtime()
    with rt.store.sessions() as s:
        found = find_route(s, tenant, route)
        s.expunge(found)
    why = held(rt, found)
    if why is not None:
        raise HubError(f"{why}; nothing was synced", fix=f"`hub resume {tenant} ...` first (see `hub status "
                                                          f"{tenant}`).")
    from hub.cli.progress import for_sync

    names = list(streams) or list(found.config.get("streams", []))
    shown = for_sync(as_json, names)
    shown.begin(f"sync {tenant}/{route}: reading {', '.join(names)}{' (full)' if full else ''}")

    def started(stream: str) -> None:
        if stream == "preflight":
            shown.started(stream, "checking the source's payment methods against the DE-PARA" if
                          (found.config.get("mappings") or {}).get("payment_methods") is not None else "connecting")
        else:
            shown.started(stream)

    report: SyncReport | None = None
    try:
        report = sync_route(rt, tenant, route, full=full, progress=shown.pulled, streams=list(streams) or None,
                            started=started, close_run=False)
        shown.pulled_all(report)
        if not no_push:
            waiting = operation_counts(rt, found.id)
            shown.pushing(waiting.get("pending", 0) + waiting.get("running", 0))
            drain(rt, found.id, threads=4, progress=shown.operation)
    finally:
        shown.close()
        figures = end_run(rt, report.run_id, report) if report is not None and report.run_id is not None else {}
    assert report is not None  # sync_route returned (an error it raised has left already)
    states: dict[str, int] = dict(figures.get("operations", {}))
    left = operation_counts(rt, found.id)
    waiting_now = left.get("pending", 0) + left.get("running", 0)
    failed_now = states.get("failed", 0)
    pulled_refused = sum(r.counts.quarantined for r in report.streams)
    refused = max(figures.get("quarantined", 0), pulled_refused)
    ok = report.ok and not failed_now
    out: dict[str, Any] = {
        "tenant": tenant, "route": route, "run": report.run_id, "ok": ok,
        "streams": [{"stream": r.stream, "pages": r.pages, "new": r.counts.new, "changed": r.counts.changed,
                     "unchanged": r.counts.unchanged, "quarantined": r.counts.quarantined,
                     "operations": r.counts.operations, "error": r.error, "fix": r.fix} for r in report.streams],
        "operations": states, "waiting": waiting_now, "quarantined": refused,
        "api_calls": figures.get("api_calls", 0), "rate_limited": figures.get("rate_limited", 0),
    }
    out = mask_value(out)
    if as_json:
        echo_json(out)
    else:
        for r in out["streams"]:
            line = f"{r['stream']}: {r['new']} new, {r['changed']} changed, {r['quarantined']} quarantined"
            click.echo(line if not r["error"] else f"{r['stream']}: FAILED: {r['error']} (fix: {r['fix']})")
        click.echo("operations: " + (", ".join(f"{n} {k}" for k, n in sorted(states.items())) or "none")
                   + (f"; {waiting_now} waiting (`hub run` sends them)" if waiting_now else ""))
        click.echo(f"quarantined: {refused} records" + (f" (see `hub logs {tenant} --errors`)" if refused else ""))
        click.echo(f"api calls: {out['api_calls']} ({out['rate_limited']} answered 429)")
        if failed_now:
            click.secho(f"{failed_now} operations failed: `hub logs {tenant} --errors` shows why; fix the cause, "
                        f"then `hub retry {tenant}`", fg="red", err=True)
    if not ok:
        raise SystemExit(1)


@click.command()
@click.argument("tenant")
@click.option("--local", "local_time", is_flag=True, help="Show times in this machine's zone instead of UTC.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def status(tenant: str, local_time: bool, as_json: bool) -> None:
    """Per route and stream: last successful sync, records, pending and failed operations."""
    from hub.status import tenant_status

    data = mask_value(tenant_status(store_runtime(), tenant))
    if as_json:
        echo_json(data)
        return
    zone = local_zone() if local_time else "UTC"

    def when(value: Any) -> str:
        return show_time(value, utc=not local_time)

    click.echo(f"times in {zone}{'' if local_time else ' (--local for this machine’s zone)'}")
    for conn in data["connections"]:
        click.echo(f"connection {conn['name']} ({conn['platform']})")
        if conn["paused"]:
            why = {"auth": "re-authorization needed", "quota": "quota spent", "operator": "hub pause",
                   "uninstalled": "hub uninstall"}.get(conn.get("pause_kind") or "", "")
            click.secho(f"  PAUSED{f' ({why})' if why else ''}: {conn['pause_reason']}", fg="red")
        elif conn.get("auth_attempt_at"):
            sent = conn.get("auth_attempt_sent_at")
            click.echo(f"  token renewal sent at {when(sent)} {zone}, answer not stored yet" if sent else
                       f"  token renewal started at {when(conn['auth_attempt_at'])} {zone}, not sent yet")
        for notice in conn.get("notices") or []:
            click.secho(f"  WARNING: {notice}", fg="yellow")
    for route in data["routes"]:
        state = " (disabled)" if not route["enabled"] else " (PAUSED: hub resume)" if route.get("paused_at") else ""
        click.echo(f"route {route['name']}: {route['source']} -> {route['sink']}{state}")
        if route.get("sync_failures"):
            click.secho(f"  runs failed {route['sync_failures']} times in a row; next try at "
                        f"{when(route['next_run_at'])} {zone}", fg="red")
        head = f"last successful sync ({zone})"
        click.echo(f"  {'stream':<16}{head:<28}{'records':>8}{'on sink':>9}{'pending':>9}{'failed':>8}")
        for st in route["streams"]:
            click.echo(f"  {st['stream']:<16}{when(st['last_success_at']):<28}{st['records']:>8}"
                       f"{st.get('on_sink', 0):>9}{st['pending']:>9}{st['failed']:>8}")
            if st["last_error"]:
                click.secho(f"    last error: {st['last_error']}", fg="red")
    click.echo(f"quarantined records: {data['quarantined']}")


def _since(text: str | None) -> Any:
    if text is None:
        return None
    from datetime import datetime, timedelta

    from hub.config.routes import parse_duration
    from hub.store.engine import utcnow

    try:
        return utcnow() - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (30m, 2h, 1d) nor a date (2026-12-01 or "
                                 "2026-12-01T10:00, UTC)", param_hint="--since") from None
    return moment.replace(tzinfo=None) - (moment.utcoffset() or timedelta())


@click.command()
@click.argument("tenant")
@click.option("--limit", default=50, show_default=True)
@click.option("--errors", "only_errors", is_flag=True, help="Only failed calls (warnings left out unless --warnings).")
@click.option("--warnings", "with_warnings", is_flag=True, help="With --errors, include the platforms' warnings.")
@click.option("--connection", default=None, help="Only calls to this connection.")
@click.option("--status", "status_code", type=int, default=None, help="Only calls answered with this HTTP status.")
@click.option("--action", default=None, help="Only calls whose action contains this text (e.g. 'push_sale').")
@click.option("--since", default=None, help="Only calls since a duration ago (30m, 2h, 1d) or a UTC date.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def logs(tenant: str, limit: int, only_errors: bool, with_warnings: bool, connection: str | None,
         status_code: int | None, action: str | None, since: str | None, as_json: bool) -> None:
    """The API log (when, connection, action, status, error, what to check), then the quarantined records."""
    from hub.status import api_log, quarantined

    moment = _since(since)
    rt = store_runtime()
    calls = mask_value(api_log(rt, tenant, limit, only_errors, connection=connection, status=status_code,
                               action=action, since=moment, warnings=with_warnings or not only_errors))
    refused = mask_value(quarantined(rt, tenant, limit))
    if as_json:
        echo_json({"api_log": calls, "quarantine": refused})
        return
    click.echo(f"times in UTC; newest first{' (errors only)' if only_errors else ''}")
    for c in calls:
        click.echo(f"{str(c['at'])[:19]}  {c['connection'] or '-'}  {c['status'] or '-'}  {c['action']}"
                   + (f"  [{c['model']}]" if c["model"] else "") + (f"  {c['ms']} ms" if c["ms"] else ""))
        if c["error"]:
            click.secho(f"    error: {c['error']}", fg="yellow" if c["error"].startswith("warning:") else "red")
        if c["fix"]:
            click.echo(f"    check: {c['fix']}")
    if not calls:
        click.echo("no API calls match")
    if refused:
        click.echo("\nquarantined:")
        for q in refused:
            click.echo(f"  {q['entity']} {q['record']}: {q['reason']}\n    fix: {q['fix']}")


@click.command()
@click.option("--threads", type=int, default=None, help="Worker threads (default HUB_WORKER_THREADS).")
@click.option("--for", "run_for", type=float, default=None, help="Stop after this many seconds (for tests).")
@click.option("--webhook-port", type=int, default=None,
              help="Also receive webhooks on this port (POST /webhooks/TENANT/CONNECTION).")
@click.option("--webhook-host", default="127.0.0.1", show_default=True)
@friendly_errors
def run(threads: int | None, run_for: float | None, webhook_port: int | None, webhook_host: str) -> None:
    """Workers + scheduler + outbox relay. Safe to run many at once; stops gracefully on SIGTERM."""
    from hub import webhooks
    from hub.app import build_runtime
    from hub.runner.logs import setup_logging
    from hub.runner.service import Service, urgent_threads
    from hub.sandbox import serve
    from hub.settings import get_settings

    setup_logging()
    check_home()
    settings = get_settings()
    rt = build_runtime(settings)
    service = Service(rt, settings.redis_url, threads=threads or settings.worker_threads,
                      relay_interval=settings.relay_interval_seconds,
                      scheduler_interval=settings.scheduler_interval_seconds,
                      retention_days=settings.log_retention_days)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    try:
        receiver = serve(webhooks.app(rt), host=webhook_host, port=webhook_port) if webhook_port is not None else None
    except OSError as exc:
        service.stop()
        raise HubError(f"cannot receive webhooks on {webhook_host}:{webhook_port}: {exc.strerror or exc}",
                       fix="Choose a free port with --webhook-port, or stop what listens there.") from None
    broker = "redis" if settings.redis_url else "in-process"
    import logging

    def note(line: str) -> None:  # JSON lines stay JSON lines
        logging.getLogger("hub.runner").info(line)

    note(f"hub run: {service.threads} worker threads (+{urgent_threads(service.threads)} for sales and invoices), "
         f"{broker} broker; Ctrl-C or SIGTERM to stop")
    if receiver is not None:
        note(f"hub run: webhooks at {receiver.base_url}/webhooks/TENANT/CONNECTION")
    started = time.monotonic()
    while not stop.wait(0.2):
        if run_for is not None and time.monotonic() - started > run_for:
            break
    note("hub run: stopping (finishing running operations)")
    if receiver is not None:
        receiver.stop()
    service.stop()


@click.command()
@click.argument("platform")
@click.option("--port", default=0, show_default=True)
@click.option("--seed", "seeds", multiple=True, help="STREAM=N synthetic records, e.g. products=100.")
@click.option("--fault", "faults", multiple=True, metavar="KIND=RATE",
              help="Fail this share of API requests with KIND (500, timeout, timeout-after-write, slow, 429, 401, "
                   "repeat_page...), e.g. --fault 500=0.1 --fault timeout=0.05.")
@click.option("--fault-seed", default=0, show_default=True, help="Seed of the random fault draws (repeatable runs).")
@click.option("--for", "run_for", type=float, default=None, help="Stop after this many seconds (for tests).")
@friendly_errors
def sandbox(platform: str, port: int, seeds: tuple[str, ...], faults: tuple[str, ...], fault_seed: int,
            run_for: float | None) -> None:
    """Serve PLATFORM's sandbox on loopback until interrupted."""
    from hub.registry import get_registry
    from hub.sandbox import serve
    from hub.sandbox.faults import parse_rates

    registry = get_registry()
    if platform not in registry.platforms:
        raise HubError(f"no installed plugin provides platform {platform!r}",
                       fix=f"Use one of: {', '.join(sorted(registry.platforms)) or 'none'} (see `hub plugins`).")
    described = registry.platform(platform)
    factory = described.sandbox
    if factory is None:
        raise click.ClickException(f"{platform} ships no sandbox")
    box = factory()
    known = sorted(getattr(box, "streams", None) or set(described.pulls) | set(described.pushes))
    planned: list[tuple[str, int]] = []
    for seed in seeds:
        stream, sep, count = seed.partition("=")
        if not sep or not count.strip().isdigit():
            raise click.BadParameter(f"{seed!r}: write STREAM=N with N a whole number, e.g. products=100",
                                     param_hint="--seed")
        if stream not in known:
            raise click.BadParameter(f"{platform} has no stream {stream!r}; its streams are: {', '.join(known)} "
                                     "(canonical English names)", param_hint="--seed")
        planned.append((stream, int(count)))
    try:
        rates = parse_rates(faults, box.random_fault_kinds)
        box.set_fault_rates(rates, seed=fault_seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    for stream, n in planned:
        try:
            box.seed(stream, n)
        except (KeyError, ValueError, NotImplementedError) as exc:
            raise click.BadParameter(f"the {platform} sandbox cannot seed {stream!r}: {exc}",
                                     param_hint="--seed") from None
    try:
        served = serve(box.app, port=port)
    except OSError as exc:
        raise HubError(f"cannot serve the {platform} sandbox on port {port}: {exc.strerror or exc}",
                       fix="Choose a free port with --port (0 picks one), or stop what listens there.") from None
    click.echo(f"{platform} sandbox at {served.base_url}")
    if rates:
        click.echo("faults: " + ", ".join(f"{kind} {rate:g}" for kind, rate in rates.items()))
    echo_json(box.connection(served.base_url))
    started = time.monotonic()
    try:
        while run_for is None or time.monotonic() - started < run_for:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    served.stop()


@click.command()
@click.option("--scenario", "scenario_path", type=click.Path(exists=True), default=None,
              help="Demo scenario file (default: the one an installed platform plugin ships).")
@click.option("--keep", is_flag=True, help="Keep the demo's temporary store (its path is printed).")
@click.option("--serve", "serve_port", type=int, default=None, is_flag=False, flag_value=8000,
              help="Then leave the console up on the demo's store (port 8000, or --serve=PORT); prints a login.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def demo(scenario_path: str | None, keep: bool, serve_port: int | None, as_json: bool) -> None:
    """Start the sandboxes in-process, apply the shipped routes, run the scenario and report. No credentials.

    The store is HUB_HOME when it is set (kept), else a temporary folder removed at the end (unless --keep)."""
    import os
    from pathlib import Path

    from hub.demo import run_demo

    home = Path(os.environ["HUB_HOME"]) if os.environ.get("HUB_HOME") else None
    report = run_demo(scenario_path, echo=None if as_json else lambda line: click.echo(line), home=home, keep=keep,
                      serve_port=serve_port)
    if as_json:
        echo_json(report)


@click.command()
@click.argument("tenant")
@click.option("--route", "route_name", default=None, help="Only this route's operations.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def retry(tenant: str, route_name: str | None, as_json: bool) -> None:
    """Send failed operations again, after the cause was fixed (e.g. a rejected NF-e whose NCM was filled)."""
    from hub.sync.operations import retry_failed

    rt = store_runtime()
    n = retry_failed(rt, tenant, route_name)
    if as_json:
        echo_json({"tenant": tenant, "route": route_name, "due_again": n})
        return
    click.echo(f"{n} failed operations of {tenant} are due again; `hub run` or `hub sync` sends them")


COMMANDS = [sync, status, logs, run, sandbox, demo, retry]
