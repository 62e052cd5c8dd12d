"""Running and watching: sync, status, logs, run, sandbox, demo."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import click

from hub.cli.common import echo_json, friendly_errors
from hub.privacy import mask_value


@click.command()
@click.argument("tenant")
@click.argument("route")
@click.option("--full", is_flag=True, help="Ignore the cursors and read everything again.")
@click.option("--no-push", is_flag=True, help="Only pull into the store; leave the operations to `hub run`.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def sync(tenant: str, route: str, full: bool, no_push: bool, as_json: bool) -> None:
    """Run ROUTE of TENANT once: pull what changed, then push it to the sink."""
    from hub.app import build_runtime
    from hub.store.migrate import require_head
    from hub.sync.drain import drain
    from hub.sync.loading import find_route
    from hub.sync.pull import sync_route

    rt = build_runtime()
    require_head(rt.store)
    with rt.store.sessions() as s:
        route_id = find_route(s, tenant, route).id

    def pulled(stream: str, counts: Any) -> None:
        if not as_json:
            click.echo(f"  {stream}: +{counts.new} new, {counts.changed} changed, {counts.unchanged} unchanged, "
                       f"{counts.quarantined} quarantined", err=True)

    report = sync_route(rt, tenant, route, full=full, progress=pulled)
    states: dict[str, int] = {}
    if not no_push:
        with click.progressbar(length=0, label="pushing", file=None) as bar:
            states = drain(rt, route_id, threads=4, progress=lambda _state: bar.update(1))
    out: dict[str, Any] = {
        "tenant": tenant, "route": route,
        "streams": [{"stream": r.stream, "pages": r.pages, "new": r.counts.new, "changed": r.counts.changed,
                     "unchanged": r.counts.unchanged, "quarantined": r.counts.quarantined,
                     "operations": r.counts.operations, "error": r.error, "fix": r.fix} for r in report.streams],
        "operations": states,
    }
    out = mask_value(out)
    if as_json:
        echo_json(out)
    else:
        for r in out["streams"]:
            line = f"{r['stream']}: {r['new']} new, {r['changed']} changed, {r['quarantined']} quarantined"
            click.echo(line if not r["error"] else f"{r['stream']}: FAILED: {r['error']} (fix: {r['fix']})")
        click.echo("operations: " + (", ".join(f"{n} {k}" for k, n in sorted(states.items())) or "none"))
    if not report.ok:
        raise SystemExit(1)


@click.command()
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def status(tenant: str, as_json: bool) -> None:
    """Per route and stream: last successful sync, records, pending and failed operations."""
    from hub.app import build_runtime
    from hub.status import tenant_status

    data = mask_value(tenant_status(build_runtime(), tenant))
    if as_json:
        echo_json(data)
        return
    for conn in data["connections"]:
        click.echo(f"connection {conn['name']} ({conn['platform']})")
        if conn["paused"]:
            why = {"auth": "re-authorization needed", "quota": "quota spent"}.get(conn.get("pause_kind") or "", "")
            click.secho(f"  PAUSED{f' ({why})' if why else ''}: {conn['pause_reason']}", fg="red")
        elif conn.get("auth_attempt_at"):
            click.echo(f"  token renewal sent at {str(conn['auth_attempt_at'])[:19]} UTC, answer not stored yet")
    for route in data["routes"]:
        click.echo(f"route {route['name']}: {route['source']} -> {route['sink']}"
                   f"{'' if route['enabled'] else ' (disabled)'}")
        if route.get("sync_failures"):
            retry_at = str(route["next_run_at"] or "-")[:19]
            click.secho(f"  runs failed {route['sync_failures']} times in a row; next try at {retry_at} UTC",
                        fg="red")
        click.echo(f"  {'stream':<16}{'last successful sync':<22}{'records':>8}{'pending':>9}{'failed':>8}")
        for st in route["streams"]:
            last = st["last_success_at"] or "never"
            click.echo(f"  {st['stream']:<16}{str(last)[:19]:<22}{st['records']:>8}{st['pending']:>9}"
                       f"{st['failed']:>8}")
            if st["last_error"]:
                click.secho(f"    last error: {st['last_error']}", fg="red")
    click.echo(f"quarantined records: {data['quarantined']}")


@click.command()
@click.argument("tenant")
@click.option("--limit", default=50, show_default=True)
@click.option("--errors", "only_errors", is_flag=True, help="Only failed calls.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def logs(tenant: str, limit: int, only_errors: bool, as_json: bool) -> None:
    """The API log (action, model, status, error, what to check), then the quarantined records."""
    from hub.app import build_runtime
    from hub.status import api_log, quarantined

    rt = build_runtime()
    calls = mask_value(api_log(rt, tenant, limit, only_errors))
    refused = mask_value(quarantined(rt, tenant, limit))
    if as_json:
        echo_json({"api_log": calls, "quarantine": refused})
        return
    click.echo(f"{'when':<20}{'action':<34}{'model':<14}{'status':>6}  error / check")
    for c in calls:
        click.echo(f"{str(c['at'])[:19]:<20}{c['action'][:33]:<34}{(c['model'] or '')[:13]:<14}"
                   f"{c['status'] or '-':>6}  {c['error'] or ''}")
        if c["fix"]:
            click.echo(f"{'':<74}check: {c['fix']}")
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
    from hub.runner.service import Service
    from hub.sandbox import serve
    from hub.settings import get_settings

    settings = get_settings()
    rt = build_runtime(settings)
    service = Service(rt, settings.redis_url, threads=threads or settings.worker_threads,
                      relay_interval=settings.relay_interval_seconds,
                      scheduler_interval=settings.scheduler_interval_seconds)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    receiver = serve(webhooks.app(rt), host=webhook_host, port=webhook_port) if webhook_port is not None else None
    broker = "redis" if settings.redis_url else "in-process"
    click.echo(f"hub run: {service.threads} worker threads, {broker} broker; Ctrl-C or SIGTERM to stop", err=True)
    if receiver is not None:
        click.echo(f"hub run: webhooks at {receiver.base_url}/webhooks/TENANT/CONNECTION", err=True)
    started = time.monotonic()
    while not stop.wait(0.2):
        if run_for is not None and time.monotonic() - started > run_for:
            break
    click.echo("hub run: stopping (finishing running operations)", err=True)
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

    factory = get_registry().platform(platform).sandbox
    if factory is None:
        raise click.ClickException(f"{platform} ships no sandbox")
    box = factory()
    try:
        rates = parse_rates(faults, box.random_fault_kinds)
        box.set_fault_rates(rates, seed=fault_seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    for seed in seeds:
        stream, _, count = seed.partition("=")
        box.seed(stream, int(count))
    served = serve(box.app, port=port)
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
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def demo(scenario_path: str | None, as_json: bool) -> None:
    """Start the sandboxes in-process, apply the shipped routes, run the scenario and report. No credentials."""
    from hub.demo import run_demo

    report = run_demo(scenario_path, echo=None if as_json else lambda line: click.echo(line))
    if as_json:
        echo_json(report)


@click.command()
@click.argument("tenant")
@click.option("--route", "route_name", default=None, help="Only this route's operations.")
@friendly_errors
def retry(tenant: str, route_name: str | None) -> None:
    """Send failed operations again, after the cause was fixed (e.g. a rejected NF-e whose NCM was filled)."""
    from hub.app import build_runtime
    from hub.sync.operations import retry_failed

    rt = build_runtime()
    n = retry_failed(rt, tenant, route_name)
    click.echo(f"{n} failed operations of {tenant} are due again; `hub run` or `hub sync` sends them")


COMMANDS = [sync, status, logs, run, sandbox, demo, retry]
