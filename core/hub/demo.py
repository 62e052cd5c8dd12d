"""``hub demo``: the main job on the embedded default, with every platform played by its sandbox.

A demo is a scenario file (YAML) that a plugin ships and names in its :class:`hub.platform.Platform` (``demo``):
the route file to apply, the sandbox settings, and steps (seed a sandbox, sync a route, call a sandbox method that
plays a person at a platform, e.g. cancelling a sale at the till). The core only interprets it, so no pair of
platforms is special here. Each sandbox's optional ``summary()`` is printed before and after.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.config import apply as applying
from hub.config import routes as config
from hub.crypto import Vault
from hub.errors import ConfigError
from hub.registry import Registry, get_registry
from hub.sandbox import Sandbox, Served, serve
from hub.settings import Settings
from hub.status import quarantined, tenant_status
from hub.store import migrate
from hub.store.engine import Store
from hub.sync.drain import drain
from hub.sync.loading import Runtime, find_route
from hub.sync.pull import sync_route

Say = Callable[[str], None]


class Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connection: str
    stream: str
    count: int = Field(ge=0)


class Call(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connection: str
    method: str
    args: dict[str, Any] = Field(default_factory=dict)
    say: str | None = None


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sync: str | None = None
    seed: Seed | None = None
    call: Call | None = None
    say: str | None = None


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    routes: str
    tenant: str
    sandboxes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    steps: list[Step]
    notes: list[str] = Field(default_factory=list)


def load_scenario(path: Path) -> Scenario:
    try:
        return Scenario.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a demo scenario: {exc}", fix="See hub/demo.py for the scenario format.") \
            from None


def open_scenario(path: Path) -> tuple[Scenario, Path, config.RoutesFile, config.TenantConfig]:
    """The scenario, its route file's path, the parsed route file and the scenario's tenant in it."""
    scenario = load_scenario(path)
    routes_path = (path.parent / scenario.routes).resolve()
    parsed = config.load(routes_path)
    tenant = parsed.tenants.get(scenario.tenant)
    if tenant is None:
        raise ConfigError(f"{path}: tenant {scenario.tenant!r} is not in {routes_path}")
    return scenario, routes_path, parsed, tenant


def default_scenario(registry: Registry) -> Path:
    """The demo a platform plugin ships (when several do, the lowest ``demo_rank``, then the platform name)."""
    for name in sorted(registry.platforms, key=lambda n: (registry.platforms[n].platform.demo_rank, n)):
        demo = registry.platforms[name].platform.demo
        if demo:
            return Path(demo)
    raise ConfigError("no installed plugin ships a demo scenario",
                      fix="Install the platform plugins (make install), or pass --scenario FILE.")


def hub_command() -> str:
    """How to type ``hub`` here: the bare name when it is on PATH, else the full path (e.g. ``.venv/bin/hub``)."""
    found = shutil.which("hub")
    beside = Path(sys.executable).parent / "hub"
    if found and (not beside.exists() or Path(found).resolve() == beside.resolve()):
        return "hub"
    return str(beside) if beside.exists() else "hub"


def run_demo(scenario_path: str | None, *, echo: Say | None = None, home: Path | None = None,
             keep: bool = False, serve_port: int | None = None) -> dict[str, Any]:
    """Run the scenario in ``home`` (kept), or in a temporary folder removed at the end unless ``keep``.
    With ``serve_port``, the console then stays up on the demo's store (sandboxes too) until Ctrl-C."""
    say = echo or (lambda _line: None)
    registry = get_registry()
    path = Path(scenario_path) if scenario_path else default_scenario(registry)
    scenario, routes_path, parsed, tenant = open_scenario(path)
    workdir = home or Path(tempfile.mkdtemp(prefix="hub-demo-"))
    temporary = home is None and not keep
    settings = Settings(home=workdir)
    store = Store.from_url(settings.resolved_database_url())
    migrate.upgrade(store)
    rt = Runtime(store=store, vault=Vault(settings), registry=registry)
    say(f"== {scenario.title}")
    for note in scenario.notes:
        say(f"   {note}")

    boxes: dict[str, Sandbox] = {}
    served: list[Served] = []
    try:
        for cname, conn in tenant.connections.items():
            factory = registry.platform(conn.platform).sandbox
            if factory is None:
                raise ConfigError(f"{routes_path}: platform {conn.platform} ships no sandbox; the demo needs one")
            box = factory(**scenario.sandboxes.get(cname, {}))
            srv = serve(box.app)
            served.append(srv)
            boxes[cname] = box
            info = box.connection(srv.base_url)
            conn.options = {**conn.options, **info["options"]}
            creds: dict[str, config.EnvSecret | str] = {}
            for key, value in info["credentials"].items():
                var = f"{conn.platform}_HUB_DEMO_{scenario.tenant}_{cname}_{key}".upper().replace("-", "_")
                os.environ[var] = value
                creds[key] = config.EnvSecret(env=var)
            conn.credentials = creds
            say(f"sandbox {conn.platform} for {scenario.tenant}/{cname} at {srv.base_url}")
        errors, _warnings = applying.check(parsed, registry, str(routes_path))
        if errors:
            raise ConfigError("\n".join(errors))
        applying.apply(parsed, store, rt.vault, registry)
        say(f"applied {routes_path.name}: routes {', '.join(tenant.routes)}")
        before: dict[str, dict[str, Any]] = {}
        for step in scenario.steps:
            if step.sync is not None and not before:
                before = _summaries(boxes)  # the platforms as the merchant left them, before the hub moves anything
                _show(say, "before", before)
            _step(rt, scenario.tenant, boxes, step, say)
        after = _summaries(boxes)
        _show(say, "after", after)
        status = tenant_status(rt, scenario.tenant)
        refused = quarantined(rt, scenario.tenant)
        for q in refused:
            say(f"quarantined {q['entity']} {q['record']}: {q['reason']} (fix: {q['fix']})")
        hub = hub_command()
        if temporary:
            say("done; the demo's temporary store is removed now (run it with --keep, or with HUB_HOME=DIR, to look "
                f"around afterwards with `{hub} status {scenario.tenant}`)")
        else:
            say(f"done; the demo's database is {settings.resolved_database_url()}")
            say(f"try: HUB_HOME={workdir} {hub} status {scenario.tenant}   /   "
                f"HUB_HOME={workdir} {hub} logs {scenario.tenant} --errors   /   HUB_HOME={workdir} {hub} runs "
                f"{scenario.tenant}")
        if serve_port is not None:
            from hub.console.serving import serve_demo

            serve_demo(rt, settings, scenario.tenant, say, port=serve_port)
        return {"database": settings.resolved_database_url(), "tenant": scenario.tenant, "status": status,
                "quarantined": refused, "before": before, "after": after}
    finally:
        for srv in served:
            srv.stop()
        store.engine.dispose()
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


def _summaries(boxes: dict[str, Sandbox]) -> dict[str, dict[str, Any]]:
    return {name: box.summary() for name, box in boxes.items()}


def _show(say: Say, when: str, summaries: dict[str, dict[str, Any]]) -> None:
    for name, figures in summaries.items():
        say(f"{name} {when}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))


def _step(rt: Runtime, tenant: str, boxes: dict[str, Sandbox], step: Step, say: Say) -> None:
    if step.say:
        say(step.say)
    if step.seed is not None:
        boxes[step.seed.connection].seed(step.seed.stream, step.seed.count)
        say(f"{step.seed.connection}: {step.seed.count} {step.seed.stream} created on the platform")
    if step.call is not None:
        method = getattr(boxes[step.call.connection], step.call.method)
        result = method(**step.call.args)
        say(step.call.say.format(result=result) if step.call.say else f"{step.call.connection}: {step.call.method}")
    if step.sync is not None:
        _run(rt, tenant, step.sync, say)


def _run(rt: Runtime, tenant: str, route: str, say: Say) -> None:
    result = sync_route(rt, tenant, route, full=False)
    with rt.store.sessions() as s:
        route_id = find_route(s, tenant, route).id
    states = drain(rt, route_id)
    for r in result.streams:
        line = (f"{tenant}/{route} {r.stream}: {r.counts.new} new, {r.counts.changed} changed, "
                f"{r.counts.unchanged} unchanged, {r.counts.quarantined} quarantined")
        say(line if not r.error else f"{tenant}/{route} {r.stream}: FAILED: {r.error} (fix: {r.fix})")
    say(f"{tenant}/{route} operations: " + ", ".join(f"{n} {k}" for k, n in sorted(states.items())))
