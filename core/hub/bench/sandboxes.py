"""Platform sandboxes in child processes, driven through a pipe: the benches' figures are then the hub's alone.

A child builds its platform's sandbox (through the registry's factory), serves it on loopback and answers commands:
``seed``, ``count``, ``stats``, ``call`` (any public method of the sandbox, e.g. ``set_fault_rate`` or
``records``) and ``stop``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection as Pipe
from typing import Any

from hub.config import routes as config
from hub.errors import ConfigError
from hub.registry import get_registry


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so a bench stopped with ``kill`` stops its `hub run` processes and sandbox
    children in its ``finally`` blocks instead of leaving them running."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


# --- a sandbox in its own process ---------------------------------------------------------------------------


def _serve_sandbox(pipe: Pipe, platform: str, kwargs: dict[str, Any], lift_limits: bool) -> None:
    """Child process: build the platform's sandbox from its settings (``lift_limits``: then without its rate
    limits and quotas), serve it, answer commands until ``stop``."""
    from hub.sandbox import serve

    try:
        factory = get_registry().platform(platform).sandbox
        if factory is None:
            raise ValueError(f"platform {platform} ships no sandbox")
        box = factory(**kwargs)
        applied = dict(kwargs)
        if lift_limits:
            box.lift_limits()
            applied.update(dict.fromkeys(type(box.settings).limit_fields))
        served = serve(box.app)
        pipe.send((served.base_url, box.connection(served.base_url), applied))
    except Exception as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})
        return

    def stats() -> dict[str, Any]:
        return box.stats(clear_log=True)  # the bench only counts; a log of every request would grow without bound

    while True:
        command, *args = pipe.recv()
        try:
            if command == "seed":
                reply: Any = len(box.seed(args[0], args[1]))
            elif command == "count":
                reply = len(box.records(args[0]))
            elif command == "stats":
                reply = stats()
            elif command == "call":
                name, call_args, call_kwargs = args
                if name.startswith("_"):
                    raise ValueError(f"{name!r} is private")
                reply = getattr(box, name)(*call_args, **call_kwargs)
            elif command == "stop":
                reply = stats()
                served.stop()
                pipe.send(reply)
                return
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        pipe.send(reply)


class Child:
    """The parent's handle on one sandbox process."""

    def __init__(self, platform: str, kwargs: dict[str, Any], *, lift_limits: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_sandbox, args=(child, platform, kwargs, lift_limits), daemon=True,
                                   name=f"sandbox-{platform}")
        self.process.start()
        child.close()
        if not self.pipe.poll(120):
            self.process.kill()
            raise RuntimeError(f"the {platform} sandbox did not start")
        reply = self.pipe.recv()
        if isinstance(reply, dict):
            self.process.join(timeout=10)
            raise RuntimeError(f"the {platform} sandbox did not start: {reply['error']}")
        self.base_url, self.connection, self.kwargs = reply
        self.stopped: dict[str, Any] | None = None
        self.lock = threading.Lock()  # one command at a time: threads share the pipe

    def call(self, *command: Any) -> Any:
        with self.lock:
            self.pipe.send(command)
            reply = self.pipe.recv()
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"sandbox {command[0]}: {reply['error']}")
        return reply

    def method(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the sandbox's public method ``name`` in the child and return its (pickled) result."""
        return self.call("call", name, args, kwargs)

    def stop(self) -> dict[str, Any] | None:
        if self.stopped is None and self.process.is_alive():
            try:
                self.stopped = self.call("stop")
            except (EOFError, OSError, RuntimeError):
                pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        return self.stopped


def start_sandboxes(tenant: config.TenantConfig, env_prefix: str, kwargs: dict[str, dict[str, Any]] | None = None,
                    *, lift_limits: bool = False) -> dict[str, Child]:
    """One child per connection of ``tenant`` (sandbox settings per connection name; ``lift_limits``: every
    sandbox without its rate limits), and each connection pointed at its sandbox: options merged, credentials
    given as environment variables ``{env_prefix}_{CONNECTION}_{KEY}`` (so other processes started from this one,
    with its environment, read them too)."""
    registry = get_registry()
    children: dict[str, Child] = {}
    try:
        for cname, conn in tenant.connections.items():
            if registry.platform(conn.platform).sandbox is None:
                raise ConfigError(f"platform {conn.platform} ships no sandbox; the bench needs one for {cname}",
                                  fix="Install a version of the plugin that ships its sandbox.")
            child = children[cname] = Child(conn.platform, (kwargs or {}).get(cname, {}), lift_limits=lift_limits)
            conn.options = {**conn.options, **child.connection["options"]}
            creds: dict[str, config.EnvSecret | str] = {}
            for key, value in child.connection["credentials"].items():
                var = f"{env_prefix}_{cname}_{key}".upper().replace("-", "_")
                os.environ[var] = str(value)
                creds[key] = config.EnvSecret(env=var)
            conn.credentials = creds
    except BaseException:
        for child in children.values():
            child.stop()
        raise
    return children
