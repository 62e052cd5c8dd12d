"""Run history and the operator's switches: runs, state, pause, resume, uninstall."""

from __future__ import annotations

from typing import Any

import click

from hub.cli.common import echo_json, friendly_errors, store_runtime
from hub.errors import HubError
from hub.privacy import mask_value


@click.command()
@click.argument("tenant")
@click.option("--route", "route_name", default=None, help="Only this route's runs.")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def runs(tenant: str, route_name: str | None, limit: int, as_json: bool) -> None:
    """The run history, newest first: when, how long, per stream what was read, operations, API calls, 429s."""
    from hub.runs import list_runs

    rows = mask_value(list_runs(store_runtime(), tenant, route_name, limit))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no runs recorded for {tenant}" + (f" route {route_name}" if route_name else ""))
        return
    click.echo("times in UTC")
    for r in rows:
        took = f"{r['seconds']}s" if r["seconds"] is not None else "still running"
        click.echo(f"#{r['id']} {str(r['started_at'])[:19]} {r['route']} ({r['trigger']}) {r['status'].upper()} "
                   f"{took}: {r['operations_done']} done, {r['operations_failed']} failed, {r['quarantined']} "
                   f"quarantined, {r['api_calls']} API calls ({r['rate_limited']} 429)")
        for stream, c in (r["streams"] or {}).items():
            click.echo(f"    {stream}: {c['read']} read, {c['new']} new, {c['changed']} changed, "
                       f"{c['quarantined']} quarantined" + (f"; FAILED: {c['error']}" if c.get("error") else ""))
        if r["error"] and not any(c.get("error") for c in (r["streams"] or {}).values()):
            click.secho(f"    error: {r['error']}", fg="red")


@click.command()
@click.argument("tenant")
@click.argument("route")
@click.option("--stream", default=None, help="Only this stream.")
@click.option("--reset", is_flag=True, help="Forget the cursor(s): the next sync reads everything again.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def state(tenant: str, route: str, stream: str | None, reset: bool, as_json: bool) -> None:
    """Where each stream's incremental pull resumes (its cursor); --reset makes the next sync a full one."""
    from hub.control import cursors

    rows = mask_value(cursors(store_runtime(), tenant, route, stream, reset=reset))
    if as_json:
        echo_json({"tenant": tenant, "route": route, "reset": reset, "streams": rows})
        return
    for r in rows:
        click.echo(f"{r['stream']}: cursor {r['position'] or '(none: next sync reads everything)'}; last successful "
                   f"pull {str(r['last_success_at'])[:19] + ' UTC' if r['last_success_at'] else 'never'}")
        if r["last_error"]:
            click.secho(f"    last error: {r['last_error']}", fg="red")
    if reset:
        click.echo(f"reset: the next `hub sync {tenant} {route}` reads "
                   f"{stream or 'every stream'} from the start (records already on the sink are matched, not "
                   "duplicated)")


def _target(connection: str | None, route_name: str | None) -> None:
    if (connection is None) == (route_name is None):
        raise HubError("name either a CONNECTION or --route ROUTE", fix="e.g. `hub pause acme bling` or "
                                                                        "`hub pause acme --route sales`.")


def _report(data: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        echo_json(data)
    else:
        click.echo(text)


@click.command()
@click.argument("tenant")
@click.argument("connection", required=False)
@click.option("--route", "route_name", default=None, help="Pause this route instead of a connection.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def pause(tenant: str, connection: str | None, route_name: str | None, as_json: bool) -> None:
    """Stop a connection (every route through it) or one route: no runs, no writes; queued operations wait."""
    from hub.control import pause_connection, pause_route

    _target(connection, route_name)
    rt = store_runtime()
    if route_name is not None:
        data = pause_route(rt, tenant, route_name, paused=True)
        _report(data, as_json, f"paused route {tenant}/{route_name}; {data['queued_operations']} queued operations "
                               f"wait for `hub resume {tenant} --route {route_name}`")
    else:
        assert connection is not None
        data = pause_connection(rt, tenant, connection)
        _report(data, as_json, f"paused connection {tenant}/{connection} (routes: {', '.join(data['routes']) or '-'})"
                               f"; {data['queued_operations']} queued operations wait for "
                               f"`hub resume {tenant} {connection}`")


@click.command()
@click.argument("tenant")
@click.argument("connection", required=False)
@click.option("--route", "route_name", default=None, help="Resume this route instead of a connection.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def resume(tenant: str, connection: str | None, route_name: str | None, as_json: bool) -> None:
    """Undo `hub pause`: runs and writes go on, starting with the operations that waited."""
    from hub.control import pause_route, resume_connection

    _target(connection, route_name)
    rt = store_runtime()
    if route_name is not None:
        data = pause_route(rt, tenant, route_name, paused=False)
        name = f"route {tenant}/{route_name}"
    else:
        assert connection is not None
        data = resume_connection(rt, tenant, connection)
        name = f"connection {tenant}/{connection}"
    _report(data, as_json, f"resumed {name}; {data['queued_operations']} queued operations are due now "
                           "(`hub run` or `hub sync` sends them)")


@click.command()
@click.argument("tenant")
@click.argument("connection")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def uninstall(tenant: str, connection: str, as_json: bool) -> None:
    """Stop CONNECTION and every route through it, keeping its data, cursors and queued operations; applying the
    route file that declares it again (`hub routes apply`) reinstalls it where it stopped."""
    from hub.control import pause_connection

    data = pause_connection(store_runtime(), tenant, connection, kind="uninstalled")
    _report(data, as_json, f"uninstalled {tenant}/{connection}: routes {', '.join(data['routes']) or '-'} stopped; "
                           f"its records and {data['queued_operations']} queued operations are kept; "
                           "`hub routes apply FILE` reinstalls it")


@click.command()
@click.argument("tenant")
@click.argument("route")
@click.option("--starter", is_flag=True, help="Print a starter DE-PARA block (YAML) for each table to paste.")
@click.option("--write", "write_to", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Insert the starter tables into route file FILE instead (comments and layout kept; entries "
                   "already there are never changed).")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def mappings(tenant: str, route: str, starter: bool, write_to: str | None, as_json: bool) -> None:
    """ROUTE's DE-PARA tables with both sides' values side by side: each source value (and its name), the sink value
    it maps to, and whether the sink offers it (read online from both platforms)."""
    import yaml

    from hub.mappings import route_tables, starter_table

    reports = route_tables(store_runtime(), tenant, route)
    if write_to is not None:
        from hub.cli.route_edit import write_starters

        added = write_starters(write_to, tenant, route, {r.table: starter_table(r) for r in reports if r.rows})
        todo = sum(1 for entries in added.values() for sink in entries.values() if sink == "TODO")
        if as_json:
            echo_json(mask_value({"file": write_to, "tenant": tenant, "route": route, "added": added, "todo": todo}))
            return
        for table, entries in added.items():
            click.echo(f"{table}: added " + ", ".join(f"{k} -> {v}" for k, v in entries.items()))
        click.echo(f"{write_to}: {sum(len(e) for e in added.values())} entries added"
                   + (f"; replace the {todo} TODO values, then" if todo else "; now")
                   + f" `hub routes apply {write_to}`" if added else f"{write_to}: every entry is there already")
        return
    if as_json:
        echo_json(mask_value([r.as_dict() for r in reports]))
        return
    for r in reports:
        click.echo(f"{r.table}{'' if r.entries is not None else ' (not set in the route file)'}")
        for side, info in (("source", r.source), ("sink", r.sink)):
            if info.error:
                click.secho(f"  could not read the {side}'s list: {info.error}", fg="yellow")
        if not r.rows:
            click.echo("  (no values known yet: sync the route, or the platforms list none)")
        click.echo(f"  {'source value':<22}{'source name':<24}{'-> sink value':<22}{'on the sink':<12}")
        for row in r.rows:
            has = {True: "yes", False: "NO", None: "?"}[row["sink_has_it"]]
            click.echo(f"  {row['source']:<22}{(row['source_name'] or '')[:23]:<24}{row['sink'] or '(none)':<22}"
                       f"{has:<12}")
        if r.sink.listed:
            offered = ", ".join(f"{k} ({v})" for k, v in sorted(r.sink.values.items()))
            click.echo(f"  the sink offers: {offered or '(nothing)'}")
        for problem in r.problems:
            click.secho(f"  problem: {problem}", fg="red")
        if starter and r.rows:
            block = yaml.safe_dump({r.table: starter_table(r)}, allow_unicode=True, sort_keys=True)
            click.echo("  starter (paste under the route's mappings:, then replace each TODO):")
            click.echo("".join(f"    {line}\n" for line in block.splitlines()))


COMMANDS = [runs, state, pause, resume, uninstall, mappings]
