"""Sandboxes: platform emulators shipped in plugins, served on loopback with real HTTP.

A plugin's :class:`hub.platform.Platform` names a factory for its sandbox; ``hub sandbox NAME``, ``hub demo``,
the benchmarks and the conformance kit all start it through :func:`serve`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import uvicorn

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

FAULTS = ("500", "timeout", "429", "401", "repeat_page", "slow")
"""Faults every sandbox can inject on its next requests (``timeout`` sleeps past the client's timeout)."""


@runtime_checkable
class Sandbox(Protocol):
    """What the core and the conformance kit need from an emulator."""

    app: ASGIApp

    def connection(self, base_url: str) -> dict[str, Any]:
        """``{"options": {...}, "credentials": {...}}`` for a connection to this sandbox at ``base_url``."""

    def seed(self, stream: str, count: int) -> list[str]:
        """Create ``count`` synthetic records in ``stream``; return their remote ids."""

    def touch(self, stream: str, external_id: str) -> None:
        """Change a record, as a user editing it on the platform would (incremental syncs must see it)."""

    def records(self, stream: str) -> list[dict[str, Any]]:
        """Every record the platform holds in ``stream``, as its API would show them."""

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` API requests fail with ``kind`` (one of :data:`FAULTS`): ``401`` revokes the
        live tokens (the token endpoint itself keeps working), ``repeat_page`` answers the next list request with
        the previous page of the same resource."""

    def seed_invalid(self, stream: str) -> str:
        """Create one record the platform accepts but hub must refuse (a bad EAN, CPF...); return its id."""

    # Optional: ``expected_pull(stream)``, the records a full pull must bring when that is not all of
    # ``records(stream)`` (Bling's full sync reads active products; a grid's variations come inside their parent).


@dataclass
class Served:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Served:
    """Serve ``app`` on loopback in a background thread; returns once it accepts connections."""
    # IPPROTO_TCP given explicitly: asyncio only disables Nagle's algorithm (TCP_NODELAY) on sockets that say
    # so, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="sandbox")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.01)
    return Served(f"http://{host}:{bound_port}", server, thread)
