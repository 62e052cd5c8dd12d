"""Serving the console: ``hub serve`` and ``hub demo --serve`` (which adds a login for the demo's tenant)."""

from __future__ import annotations

import secrets
import signal
import threading
from collections.abc import Callable
from typing import Any

from hub.console.app import make_app
from hub.console.session import hub_secret
from hub.settings import Settings
from hub.sync.loading import Runtime

Say = Callable[[str], None]


def start_workers(rt: Runtime, settings: Settings, scheduler_interval: float | None = None) -> Any:
    """The work of ``hub run`` in this process, so "run now" and "retry" are carried out without another one."""
    from hub.runner.service import Service

    service = Service(rt, settings.redis_url, threads=settings.worker_threads,
                      relay_interval=settings.relay_interval_seconds,
                      scheduler_interval=scheduler_interval or settings.scheduler_interval_seconds)
    service.start()
    return service


def run_console(rt: Runtime, settings: Settings, host: str, port: int, *, workers: bool, say: Say,
                proxy_headers: bool = False, stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/Ctrl-C (or ``stop``); the webhook receiver is part of the same app."""
    from hub.sandbox import serve

    app = make_app(rt, hub_secret(settings), settings.redis_url)
    service = start_workers(rt, settings) if workers else None
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if proxy_headers:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        served = serve(ProxyHeadersMiddleware(app, trusted_hosts="*"), host=host, port=port)  # type: ignore[arg-type]
    else:
        served = serve(app, host=host, port=port)
    say(f"console at {served.base_url}/ (webhooks at {served.base_url}/webhooks/TENANT/CONNECTION, "
        f"{served.base_url}/metrics, {served.base_url}/health/ready)"
        + ("; workers, scheduler and relay running here" if service is not None else
           "; run `hub run` beside it to carry out runs and retries (or serve with --workers)"))
    try:
        while not stop.wait(0.5):
            pass
    finally:
        served.stop()
        if service is not None:
            service.stop()


def serve_demo(rt: Runtime, settings: Settings, tenant: str, say: Say, host: str = "127.0.0.1",
               port: int = 8000) -> None:
    """Leave the console up on the demo's store, with a fresh login for the demo's tenant."""
    from hub.console.users import add_user

    password = secrets.token_urlsafe(12)
    email = f"demo@{tenant}.example"
    add_user(rt.store, email, password, [tenant])
    say(f"login: {email} / {password}")
    run_console(rt, settings, host, port, workers=True, say=say)
