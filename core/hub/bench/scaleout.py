"""``hub bench scaleout``: the same work shared by 1, 2, 4... ``hub run`` processes on PostgreSQL + Redis.

The distributed path (several machines running ``hub run`` against one store and one broker) is measured on one
machine: for each worker count, a fresh PostgreSQL schema gets ``--tenants`` tenants, each with its own Bling and
Zydon connections and the Bling -> Zydon catalog route (products), each connection on an account of its own. Every
tenant's Bling account holds ``--records`` products. The workers are started with every route held back; once they
are all up, every route is released at once (``next_run_at`` = now) and the workers' schedulers, relays and actors
share the reads and the outbox writes through Redis, until nothing is left. Operations done per second, their
recorded -> done latency, and the CPU each process used say how far adding processes helps, and why it stops.

The sandboxes run with their limits off, in two processes of their own (one per platform, each serving every
tenant's account on a port of its own), so their CPU is not the hub's; it is measured beside the workers', PostgreSQL's
and Redis's, with the machine's busy share (other people's processes included). Every phase is audited: each
tenant's Zydon account holds each of its Bling products exactly once, every operation recorded is done, none failed.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import click
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url

from hub.app import build_runtime
from hub.bench.chaos import flush_broker, run_schema, spawn_worker
from hub.bench.e2e import _percentile
from hub.bench.sandboxes import exit_on_sigterm
from hub.config import apply as applying
from hub.config import routes as config
from hub.errors import ConfigError, HubError
from hub.registry import get_registry
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store, utcnow
from hub.store.schema import ApiCall, Connection, Operation, Route, Run
from hub.sync.loading import Runtime, ensure_auth

SOURCE, SINK, STREAM = "bling", "zydon", "products"
"""The route every tenant runs: Bling's products to Zydon (one read, then one outbox write per product)."""
ROUTE = "catalog"
SINK_CREATE = "POST /api/sales/products"
"""Zydon's product create, counted by its sandboxes: once per product, or something was done twice."""
WORKER_SETTINGS = {"HUB_SCHEDULER_INTERVAL_SECONDS": "0.5"}
"""The defaults otherwise (lease, relay): the routes released start within half a second, not at the next 5 s tick."""
SCALING_GAIN = 0.25
"""Adding processes "still scales" while operations/s grows by at least this share over the previous count."""
IDLE_SECONDS = 2.0
"""The workers' CPU is measured this long before the release too: what they cost doing nothing (relay and
scheduler polling the store, consumers polling Redis)."""
CPU_BOUND = 0.85
"""The machine's busy share above which a phase is called CPU-bound."""
ENV_PREFIX = "HUB_ENV_BENCH_SCALEOUT"


# --- every tenant's sandbox, one process per platform -------------------------------------------------------


def _dispatcher(apps: dict[int, Any]) -> Any:
    """One ASGI app serving ``apps[PORT]`` to requests that came in on PORT: every account of a platform in one
    process and one event loop, each on a host:port of its own as separate accounts would be (the hub paces Bling's
    token calls per host: 200 accounts behind one would renew at 18 a minute)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = apps.get(int((scope.get("server") or ("", 0))[1]))
        if target is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no account on this port"})
            return
        await target(scope, receive, send)

    return app


def _serve_many(apps: list[Any]) -> tuple[list[str], Any, threading.Thread]:
    """Serve each app on a loopback port of its own, all from one uvicorn server; their base URLs."""
    import uvicorn  # the sandboxes' server, imported where they run: `hub bench` loads this module on every command

    sockets = []
    for _ in apps:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, as serve()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [int(sock.getsockname()[1]) for sock in sockets]
    server = uvicorn.Server(uvicorn.Config(_dispatcher(dict(zip(ports, apps, strict=True))), log_level="warning",
                                           access_log=False, lifespan="off", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True, name="sandboxes")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the sandboxes' server did not start")
        time.sleep(0.01)
    return [f"http://127.0.0.1:{port}" for port in ports], server, thread


def _serve_fleet(pipe: Pipe, platform: str, count: int) -> None:
    """Child process: ``count`` sandboxes of ``platform`` without limits, each on a port of its own; answers
    commands (seed every account, what a pull should bring, the sink's records, requests served, stop)."""
    try:
        factory = get_registry().platform(platform).sandbox
        if factory is None:
            raise ValueError(f"platform {platform} ships no sandbox")
        boxes = [factory() for _ in range(count)]
        for box in boxes:
            box.lift_limits()
        urls, server, thread = _serve_many([box.app for box in boxes])
        pipe.send([box.connection(url) for box, url in zip(boxes, urls, strict=True)])
    except Exception as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    while True:
        command, *args = pipe.recv()
        try:
            if command == "seed":
                reply: Any = sum(len(box.seed(args[0], args[1])) for box in boxes)
            elif command == "expected":
                reply = [len(box.expected_pull(args[0])) for box in boxes]
            elif command == "records":
                reply = [box.records(args[0]) for box in boxes]
            elif command == "requests":  # since the last time asked: the count, and the calls by shape
                calls: Counter[str] = Counter()
                for box in boxes:
                    calls.update(box.stats(clear_log=True)["calls"])
                reply = dict(calls)
            elif command == "stop":
                server.should_exit = True
                thread.join(timeout=10)
                pipe.send(None)
                return
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        pipe.send(reply)


class Fleet:
    """The parent's handle on one platform's sandbox process (every tenant's account of that platform)."""

    def __init__(self, platform: str, count: int) -> None:
        if get_registry().platform(platform).sandbox is None:
            raise ConfigError(f"platform {platform} ships no sandbox; hub bench scaleout needs one",
                              fix=f"Install a version of the {platform} plugin that ships its sandbox.")
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_fleet, args=(child, platform, count), daemon=True,
                                   name=f"sandboxes-{platform}")
        self.process.start()
        child.close()
        if not self.pipe.poll(120):
            self.process.kill()
            raise RuntimeError(f"the {platform} sandboxes did not start")
        reply = self.pipe.recv()
        if isinstance(reply, dict):
            self.process.join(timeout=10)
            raise RuntimeError(f"the {platform} sandboxes did not start: {reply['error']}")
        self.connections: list[dict[str, Any]] = reply

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def call(self, *command: Any) -> Any:
        self.pipe.send(command)
        reply = self.pipe.recv()
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"sandbox {command[0]}: {reply['error']}")
        return reply

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.call("stop")
            except (EOFError, OSError, RuntimeError):
                pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)


# --- the store ----------------------------------------------------------------------------------------------


def require_shared_backends(database_url: str | None, redis_url: str | None) -> None:
    """Processes that share work need a shared store and broker: PostgreSQL and Redis, nothing embedded."""
    if not database_url or not make_url(database_url).get_backend_name().startswith("postgresql"):
        raise ConfigError(
            f"hub bench scaleout needs PostgreSQL (got {database_url or 'the embedded SQLite default'}): several "
            "`hub run` processes share the store, as on several machines",
            fix="Set HUB_DATABASE_URL (or --database-url) to a PostgreSQL database, e.g. "
                "postgresql+psycopg://postgres@127.0.0.1/hub_bench.")
    if not redis_url:
        raise ConfigError(
            "hub bench scaleout needs Redis: the in-process broker cannot be shared by several `hub run` processes",
            fix="Set HUB_REDIS_URL (or --redis-url), e.g. redis://127.0.0.1:6379/0; the bench FLUSHDBs that "
                "database before each phase, so give it one nothing else uses.")


def tenant_name(i: int) -> str:
    return f"t{i:04d}"


def routes_file(fleets: dict[str, Fleet], tenants: int) -> config.RoutesFile:
    """``tenants`` tenants, each with its own connection to its own account on each platform, and one route.
    Credentials are environment variables (as route files give them), set here for the workers to inherit and
    removed by :func:`forget_credentials`."""
    parsed: dict[str, config.TenantConfig] = {}
    for i in range(tenants):
        tid = tenant_name(i)
        connections: dict[str, config.ConnectionConfig] = {}
        for platform, fleet in fleets.items():
            given = fleet.connections[i]
            creds: dict[str, config.EnvSecret | str] = {}
            for key, value in given["credentials"].items():
                var = f"{ENV_PREFIX}_{tid}_{platform}_{key}".upper().replace("-", "_")
                os.environ[var] = str(value)
                creds[key] = config.EnvSecret(env=var)
            connections[platform] = config.ConnectionConfig(platform=platform, options=dict(given["options"]),
                                                            credentials=creds)
        parsed[tid] = config.TenantConfig(name=f"Loja {i}", connections=connections, routes={
            ROUTE: config.RouteConfig(source=SOURCE, sink=SINK, streams=[STREAM], schedule="1h")})
    return config.RoutesFile(tenants=parsed)


def forget_credentials() -> None:
    for var in [v for v in os.environ if v.startswith(f"{ENV_PREFIX}_")]:
        del os.environ[var]


def hold_routes(store: Store, until: datetime) -> None:
    with store.begin() as s:
        s.execute(update(Route).values(next_run_at=until))


def authorize(rt: Runtime) -> None:
    """Every connection's token, taken here before the workers start, as on an installation already running: a
    first renewal per tenant is a process of its own for Bling (:mod:`hub.sync.renewal`), which would make the
    phase measure interpreter starts instead of the work (renewed in process here, where nothing kills it)."""
    here = replace(rt, detached_renewal=False)
    with rt.store.sessions() as s:
        ids = list(s.scalars(select(Connection.id).order_by(Connection.id)))
    for conn_id in ids:
        ensure_auth(here, conn_id)


# --- CPU, from /proc ----------------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def pids_named(*names: str) -> list[int]:
    """Processes whose command is one of ``names`` (redis-server), whoever started them."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def machine_ticks() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / TICK, sum(values) / TICK


@dataclass
class CpuMark:
    """CPU seconds at one moment: each worker, the sandboxes, each PostgreSQL and Redis process, the machine."""

    at: float
    workers: list[float]
    sandboxes: float
    services: dict[str, dict[int, float]]
    machine: tuple[float, float]

    @classmethod
    def take(cls, workers: list[int], sandboxes: list[int], store: Store) -> CpuMark:
        """PostgreSQL: the backends connected to the store's database (the server's other databases are other
        people's); Redis: the whole server (the broker's database cannot be told apart)."""
        with store.sessions() as s:
            backends = list(s.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")))
        services = {"postgres": {int(pid): cpu_seconds(int(pid)) for pid in backends},
                    "redis": {pid: cpu_seconds(pid) for pid in pids_named("redis-server")}}
        return cls(time.monotonic(), [cpu_seconds(p) for p in workers], sum(cpu_seconds(p) for p in sandboxes),
                   services, machine_ticks())


def cpu_use(start: CpuMark, end: CpuMark) -> dict[str, Any]:
    """Cores used on average between two marks, per part, and the machine's busy share. A PostgreSQL backend
    started in between (a worker's new connection) counts from zero; one that ended in between is missed, and so
    is a backend seen only at the start (the end mark reads the CPU of those it lists)."""
    seconds = max(end.at - start.at, 1e-6)

    def cores(used: float) -> float:
        return round(used / seconds, 2)

    def service(name: str) -> float:
        before = start.services[name]
        return cores(sum(cpu - before.get(pid, 0.0) for pid, cpu in end.services[name].items()))

    workers = [cores(b - a) for a, b in zip(start.workers, end.workers, strict=True)]
    parts = {"workers_cores_total": round(sum(workers), 2), "sandboxes_cores": cores(end.sandboxes - start.sandboxes),
             "postgres_cores": service("postgres"), "redis_cores": service("redis")}
    busy = end.machine[0] - start.machine[0]
    total = end.machine[1] - start.machine[1]
    return {"workers_cores": workers, **parts,
            "machine_busy_share": round(busy / total, 3) if total else None,
            "machine_busy_cores": cores(busy),
            "other_cores": round(max(0.0, cores(busy) - sum(parts.values())), 2)}


# --- one phase ----------------------------------------------------------------------------------------------


def _wait_ready(logs: list[Path], procs: list[subprocess.Popen[bytes]], timeout: float = 120.0) -> None:
    """Each `hub run` has logged that it started (workers, relay and scheduler up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"`hub run` exited with {proc.returncode}:\n{_tail(log)}")
        if all(log.exists() and "worker threads" in log.read_text(errors="replace") for log in logs):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the `hub run` processes did not start in {timeout:.0f}s:\n{_tail(logs[0])}")


def _tail(log: Path, lines: int = 20) -> str:
    if not log.exists():
        return ""
    kept = [line for line in log.read_text(errors="replace").splitlines() if "Results middleware" not in line]
    return "\n".join(kept[-lines:])


def _progress(store: Store) -> tuple[int, int]:
    """(route runs ended, operations pending or running)."""
    with store.sessions() as s:
        ended = s.scalar(select(func.count()).select_from(Run).where(Run.ended_at.is_not(None))) or 0
        active = s.scalar(select(func.count()).select_from(Operation).where(
            Operation.state.in_(("pending", "running")))) or 0
    return int(ended), int(active)


def _operation_lines(log: Path) -> int:
    """Operation messages a worker ran (one log line each, hub.runner.actors.log_operation): more than the
    operations done when an operation was handed out twice (by two relays, or again after its lease ran out while
    it waited in the broker); the executor's claim runs it once, the other message still costs a run."""
    with log.open(errors="replace") as lines:
        return sum(1 for line in lines if "hub.runner.operations" in line)


def _db_sample(store: Store) -> tuple[int, int]:
    """(backends of the store's database running a statement, those of them waiting for a lock), this one aside."""
    with store.sessions() as s:
        row = s.execute(text(
            "SELECT count(*) FILTER (WHERE state = 'active'), "
            "count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).one()
    return int(row[0]), int(row[1])


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> list[int | None]:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.wait(60))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait(10))
    return codes


def run_phase(workers: int, tenants: int, records: int, database_url: str, redis_url: str, *, threads: int = 8,
              timeout: float = 300.0, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One worker count on a fresh schema, fresh sandboxes and an empty broker: the figures and the audit."""
    say = say or (lambda _line: None)
    flush_broker(redis_url)
    fleets: dict[str, Fleet] = {}
    procs: list[subprocess.Popen[bytes]] = []
    with run_schema(database_url, f"hub_scaleout_{workers}") as url, \
            tempfile.TemporaryDirectory(prefix="hub-bench-scaleout-") as tmp:
        settings = Settings(home=Path(tmp), database_url=url, redis_url=redis_url,
                            secret_key=Fernet.generate_key().decode())
        rt = build_runtime(settings)
        try:
            migrate.upgrade(rt.store)
            for platform in (SOURCE, SINK):
                fleets[platform] = Fleet(platform, tenants)
            fleets[SOURCE].call("seed", STREAM, records)
            expected: list[int] = fleets[SOURCE].call("expected", STREAM)
            parsed = routes_file(fleets, tenants)
            errors, _warnings = applying.check(parsed, get_registry(), "hub bench scaleout")
            if errors:
                raise ConfigError("\n".join(errors))
            applying.apply(parsed, rt.store, rt.vault, rt.registry, tenants="all")
            hold_routes(rt.store, utcnow() + timedelta(days=1))
            authorize(rt)
            env = dict(os.environ, HUB_DATABASE_URL=url, HUB_HOME=tmp, HUB_REDIS_URL=redis_url,
                       HUB_SECRET_KEY=str(settings.secret_key), HUB_WORKER_THREADS=str(threads), **WORKER_SETTINGS)
            logs = [Path(tmp) / f"worker-{n}.log" for n in range(workers)]
            procs = [spawn_worker(env, log) for log in logs]
            _wait_ready(logs, procs)
            sandbox_pids = [fleet.pid for fleet in fleets.values()]
            for fleet in fleets.values():
                fleet.call("requests")  # counted from the release on
            idle = CpuMark.take([p.pid for p in procs], sandbox_pids, rt.store)
            time.sleep(IDLE_SECONDS)
            say(f"{workers} worker(s) up; releasing {tenants} tenants x {records} {STREAM}")
            before = CpuMark.take([p.pid for p in procs], sandbox_pids, rt.store)
            released = utcnow()
            hold_routes(rt.store, released)
            deadline = time.monotonic() + timeout
            finished = False
            samples: list[tuple[int, int]] = []
            while time.monotonic() < deadline:
                ended, active = _progress(rt.store)
                if ended >= tenants and not active:
                    finished = True
                    break
                samples.append(_db_sample(rt.store))
                for proc, log in zip(procs, logs, strict=True):
                    if proc.poll() is not None:
                        raise RuntimeError(f"`hub run` exited with {proc.returncode}:\n{_tail(log)}")
                time.sleep(0.25)
            after = CpuMark.take([p.pid for p in procs], sandbox_pids, rt.store)
            load = os.getloadavg()
            codes = _stop_all(procs)
            requests = {platform: fleet.call("requests") for platform, fleet in fleets.items()}
            remote: list[list[dict[str, Any]]] = fleets[SINK].call("records", STREAM)
            figures = _figures(rt.store, workers, tenants, records, released, finished, expected, remote,
                               requests[SINK].get(SINK_CREATE, 0))
            figures["cpu"] = cpu_use(before, after)
            figures["cpu"]["idle_workers_cores"] = cpu_use(idle, before)["workers_cores"]
            figures["operation_messages_run"] = sum(_operation_lines(log) for log in logs)
            figures.update(cpu_ms_per_operation=cpu_per_operation(figures), load_average_1m=round(load[0], 2),
                           store_backends_active_mean=round(sum(a for a, _ in samples) / len(samples), 1)
                           if samples else None,
                           store_backends_waiting_on_locks_mean=round(sum(w for _, w in samples) / len(samples), 2)
                           if samples else None,
                           requests={platform: {"total": sum(calls.values()), **dict(sorted(calls.items()))}
                                     for platform, calls in requests.items()},
                           worker_exit_codes=codes, worker_log_tail=None if figures["clean"] else _tail(logs[0]))
            say(f"{workers} worker(s): {figures['operations_per_s']} operations/s, clean={figures['clean']}")
            return figures
        finally:
            _stop_all(procs)
            for fleet in fleets.values():
                fleet.stop()
            forget_credentials()
            rt.store.engine.dispose()


def _figures(store: Store, workers: int, tenants: int, records: int, released: datetime, finished: bool,
             expected: list[int], remote: list[list[dict[str, Any]]], creates: int) -> dict[str, Any]:
    with store.sessions() as s:
        states = dict(s.execute(select(Operation.state, func.count()).group_by(Operation.state)).all())
        done = list(s.execute(select(Operation.created_at, Operation.updated_at).where(Operation.state == "done")))
        attempts = s.scalar(select(func.sum(Operation.attempts))) or 0
        twice = s.scalar(select(func.count()).select_from(
            select(Operation.route_id, Operation.kind, Operation.canonical_id).where(Operation.state == "done")
            .group_by(Operation.route_id, Operation.kind, Operation.canonical_id)
            .having(func.count() > 1).subquery())) or 0
        runs = dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        last_run = s.scalar(select(func.max(Run.ended_at)))
        calls = s.scalar(select(func.count()).select_from(ApiCall).where(ApiCall.at >= released)) or 0
    ends = [updated for _created, updated in done]
    last = max([*ends, *([last_run] if last_run else [])], default=released)
    seconds = max((last - released).total_seconds(), 1e-6)
    latencies = [(updated - created).total_seconds() for created, updated in done]
    per_tenant = [len(r) for r in remote]
    keys = [Counter(_key(record) for record in r) for r in remote]
    duplicates = sum(n - 1 for counter in keys for n in counter.values() if n > 1)
    wrong = [tenant_name(i) for i, (have, want) in enumerate(zip(per_tenant, expected, strict=True)) if have != want]
    failed = int(states.get("failed", 0))
    active = int(states.get("pending", 0)) + int(states.get("running", 0))
    return {
        "workers": workers, "tenants": tenants, "records_per_tenant": records,
        "finished": finished,
        "seconds": round(seconds, 2),
        "operations_done": len(done),
        "operations_per_s": round(len(done) / seconds, 1),
        "api_calls_per_s": round(calls / seconds, 1),
        "latency_p50_s": _percentile(latencies, 50), "latency_p95_s": _percentile(latencies, 95),
        "operations": {"done": len(done), "failed": failed, "pending": active,
                       "superseded": int(states.get("superseded", 0)), "done_twice": int(twice)},
        "attempts": int(attempts),
        "runs": {str(k): int(v) for k, v in runs.items()},
        "remote_records": sum(per_tenant), "remote_records_expected": sum(expected),
        "remote_duplicates": duplicates, "remote_creates": creates, "tenants_with_wrong_counts": wrong[:10],
        "clean": finished and not failed and not active and not twice and not duplicates and not wrong
                 and runs.get("ok", 0) == tenants and len(done) == sum(expected) == creates,
    }


def _key(record: dict[str, Any]) -> str:
    """What makes a product one product on the sink (its SKU), whatever else two copies differ in."""
    return str(record.get("sku") or record.get("code") or record.get("id"))


# --- where it stops -----------------------------------------------------------------------------------------


def cpu_per_operation(row: dict[str, Any]) -> dict[str, float | None]:
    """CPU milliseconds per operation done, per part: flat while processes only split the work, rising when they
    cost each other something (polling, lock waits, retries)."""
    cpu, done = row["cpu"], row["operations_done"]
    return {part: round(cpu[key] * row["seconds"] * 1000 / done, 1) if done else None
            for part, key in (("workers", "workers_cores_total"), ("postgres", "postgres_cores"),
                              ("sandboxes", "sandboxes_cores"), ("redis", "redis_cores"))}


def verdict(rows: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """The first worker count whose operations/s grew less than :data:`SCALING_GAIN` over the previous one, and
    why, from what the phases measured: the machine's busy share, who used the CPU, CPU per operation, lock waits."""
    stops: int | None = None
    gains: dict[str, float | None] = {}
    for prev, row in itertools.pairwise(rows):
        gain = row["operations_per_s"] / prev["operations_per_s"] - 1 if prev["operations_per_s"] else None
        gains[f"{prev['workers']}->{row['workers']}"] = round(gain, 3) if gain is not None else None
        if stops is None and (gain is None or gain < SCALING_GAIN):
            stops = row["workers"]
    if stops is None:
        top = rows[-1]["workers"] if rows else 0
        return {"stops_scaling_at": None, "gains": gains,
                "explanation": f"operations/s still grew by {SCALING_GAIN:.0%} or more with each step up to {top} "
                               f"workers. {overheads(rows)}"}
    at = next(i for i, r in enumerate(rows) if r["workers"] == stops)
    row, prev = rows[at], rows[at - 1]
    cpu = row["cpu"]
    parts = {"`hub run` workers": cpu["workers_cores_total"], "PostgreSQL": cpu["postgres_cores"],
             "sandboxes": cpu["sandboxes_cores"], "Redis": cpu["redis_cores"], "other people's processes":
             cpu["other_cores"]}
    spent = ", ".join(f"{name} {value:g}" for name, value in sorted(parts.items(), key=lambda kv: -kv[1]))
    share = cpu["machine_busy_share"] or 0.0
    growth = gains[f"{prev['workers']}->{stops}"]
    head = (f"operations/s grew {growth:+.0%} from {prev['workers']} to {stops} workers "
            f"({prev['operations_per_s']:g} -> {row['operations_per_s']:g})" if growth is not None
            else f"no operations were done at {prev['workers']} workers")
    if share >= CPU_BOUND:
        why = (f"{head}: CPU-bound. The machine's {cores} cores were {share:.0%} busy at {stops} workers (cores used: "
               f"{spent}). Another process only splits the same cores; more throughput needs more cores or machines")
        if cpu["postgres_cores"] >= cpu["workers_cores_total"]:
            why += ", and PostgreSQL, which used the most, would be the next limit"
    elif (row.get("store_backends_waiting_on_locks_mean") or 0) >= 1:
        why = (f"{head}: the store. {row['store_backends_waiting_on_locks_mean']:g} of the store's connections waited "
               f"for a lock on average, while the machine was only {share:.0%} busy (cores used: {spent})")
    else:
        why = (f"{head} with the machine only {share:.0%} busy (cores used: {spent}): the workers wait on something "
               "they share rather than on the CPU (the broker, the relay's window per route, the sandboxes)")
    return {"stops_scaling_at": stops, "gains": gains, "explanation": why + ". " + overheads(rows)}


def overheads(rows: list[dict[str, Any]]) -> str:
    """What each added process cost beside its share of the work: CPU per operation, operation messages run per
    operation done (a message for an operation already claimed runs for nothing), idle polling."""
    counts = " -> ".join(str(r["workers"]) for r in rows)
    per_op = " -> ".join(str(cpu_per_operation(r)["workers"] or "-") for r in rows)
    ratios = [r["operation_messages_run"] / r["operations_done"] if r["operations_done"] else 0.0 for r in rows]
    calls = " -> ".join(f"{sum(p['total'] for p in r['requests'].values()) / r['operations_done']:.2f}"
                        if r["operations_done"] else "-" for r in rows)
    idle = max((c for r in rows for c in r["cpu"].get("idle_workers_cores", [])), default=0.0)
    text = (f"From {counts} workers, the workers' CPU per operation went {per_op} ms, the API calls per operation "
            f"{calls} (a lookup a process caches for itself is made again by each process), and the "
            f"operation messages run per operation done {' -> '.join(f'{x:.2f}' for x in ratios)}")
    single = next((x for r, x in zip(rows, ratios, strict=True) if r["workers"] == 1), None)
    if single is not None and single <= 1.01 and max(ratios) > 1.05:
        text += (": with one worker each operation's message ran once, so the extra messages come from several "
                 "relays handing out the same due operations at once (one claims it, the others run for nothing)")
    elif max(ratios) > 1.05:
        text += (": messages handed out again (by another relay, or after a lease ran out while they waited in the "
                 "broker) run for nothing")
    one = next((r for r in rows if r["workers"] == 1), None)
    if one is not None:
        text += (f". One `hub run` used {one['cpu']['workers_cores_total']:g} cores (its threads share one Python "
                 "interpreter lock)")
    return text + f"; an idle worker used up to {idle:g} cores polling."


def run_scaleout(tenants: int, workers: list[int], records: int, database_url: str | None, redis_url: str | None,
                 *, threads: int = 8, timeout: float = 300.0,
                 say: Callable[[str], None] | None = None) -> dict[str, Any]:
    require_shared_backends(database_url, redis_url)
    assert database_url is not None and redis_url is not None
    rows = [run_phase(n, tenants, records, database_url, redis_url, threads=threads, timeout=timeout, say=say)
            for n in workers]
    cores = os.cpu_count() or 1
    return {"route": f"{SOURCE} -> {SINK} {STREAM}", "tenants": tenants, "records_per_tenant": records,
            "worker_threads": threads, "cores": cores, "rows": rows, **verdict(rows, cores),
            "clean": all(row["clean"] for row in rows)}


def _counts(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give worker counts separated by commas, e.g. 1,2,4") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{value!r}: give worker counts of 1 or more, e.g. 1,2,4")
    return counts


@click.command("scaleout")
@click.option("--tenants", default=200, show_default=True, help="Tenants, each with its own accounts and route.")
@click.option("--workers", "worker_counts", default="1,2,4", show_default=True,
              help="`hub run` process counts, one phase each.")
@click.option("--records", default=10, show_default=True, help="Bling products per tenant (one write each).")
@click.option("--threads", default=8, show_default=True, help="Worker threads per `hub run`.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds a phase may take to drain.")
@click.option("--database-url", envvar="HUB_DATABASE_URL", default=None,
              help="PostgreSQL URL (default HUB_DATABASE_URL); each phase uses a schema of its own there.")
@click.option("--redis-url", envvar="HUB_REDIS_URL", default=None,
              help="Redis URL (default HUB_REDIS_URL); its database is flushed before each phase.")
@click.option("--json", "as_json", is_flag=True)
def bench_scaleout(tenants: int, worker_counts: str, records: int, threads: int, timeout: float,
                   database_url: str | None, redis_url: str | None, as_json: bool) -> None:
    """TENANTS tenants' Bling -> Zydon catalogs drained by 1, 2, 4... `hub run` processes on PostgreSQL + Redis:
    operations/s, latency, CPU per process, and where adding processes stops paying; exits 1 on a violation."""
    exit_on_sigterm()
    counts = _counts(worker_counts)
    try:
        figures = run_scaleout(tenants, counts, records, database_url, redis_url, threads=threads, timeout=timeout,
                               say=None if as_json else click.echo)
    except HubError as exc:  # hub.cli.common.friendly_errors, which hub.bench cannot import
        click.secho(f"error: {exc.message}", fg="red", err=True)
        click.echo(f"fix: {exc.fix}", err=True)
        raise SystemExit(1) from None
    click.echo(json.dumps(figures, indent=None if as_json else 2, default=str))
    if not figures["clean"]:
        raise SystemExit(1)
