"""Helpers shared by the commands: the runtime, JSON output, error reporting, progress lines."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from hub.errors import HubError, SchemaOutOfDate

if TYPE_CHECKING:
    from hub.sync.loading import Runtime

F = TypeVar("F", bound=Callable[..., Any])

UPGRADE_FIX = "Run `hub db upgrade` (safe to run on every deploy), then run this command again."


def friendly_errors(fn: F) -> F:
    """Show a HubError, or a database that is missing or unmigrated, as its message and fix, not a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            return fn(*args, **kwargs)
        except HubError as exc:
            fail(exc.message, exc.fix)
        except (OperationalError, ProgrammingError) as exc:
            text = str(exc.orig) if exc.orig is not None else str(exc)
            if "no such table" in text or ("does not exist" in text and "relation" in text):
                fail(f"the database has no hub tables yet ({text.splitlines()[0]})", UPGRADE_FIX)
            fail(f"database error: {text.splitlines()[0] if text else type(exc).__name__}",
                 "Check HUB_DATABASE_URL (or HUB_HOME) and that the database is reachable.")

    return wrapper  # type: ignore[return-value]


JSON_MODE = "hub.json"
"""``click.Context.meta`` key: set (to the stdout the JSON goes to) by a command that answers in JSON without an
``as_json`` parameter of its own (a plugin's ``hub auth`` command run with ``--json``)."""


def json_requested() -> bool:
    """Whether the running command was asked for JSON (its ``--json``), so an error must be JSON too."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and (bool(ctx.params.get("as_json")) or JSON_MODE in ctx.meta)


def fail(message: str, fix: str | None = None) -> None:
    """Report an error and exit 1: its message and fix on stderr, or with ``--json`` a JSON object on stdout
    (``{"ok": false, "error": ..., "fix": ...}``), so a script reads every outcome the same way."""
    if json_requested():
        from hub.privacy import mask_documents

        ctx = click.get_current_context()
        click.echo(json.dumps({"ok": False, "error": mask_documents(message), "fix": mask_documents(fix)},
                              indent=2, ensure_ascii=False), file=ctx.meta.get(JSON_MODE))
        raise SystemExit(1)
    click.secho(f"error: {message}", fg="red", err=True)
    if fix:
        click.echo(f"fix: {fix}", err=True)
    raise SystemExit(1)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def check_home() -> None:
    """With neither HUB_HOME nor HUB_DATABASE_URL set, the store is ``./.hub``: running from another folder would
    silently make an empty one, so say where it was looked for instead."""
    if os.environ.get("HUB_HOME") or os.environ.get("HUB_DATABASE_URL"):
        return
    from hub.settings import default_home

    home = default_home()
    if not home.is_dir():
        raise HubError(f"no hub store here: HUB_HOME is not set, and {home} does not exist",
                       fix="Run the command from the folder that holds .hub/, or set HUB_HOME=/path/to/.hub (or "
                           "HUB_DATABASE_URL); to start a new store in this folder, run `hub db upgrade`.")


def store_runtime() -> Runtime:
    """The runtime of a command that reads or writes the store: the store must exist and be at the current schema."""
    from hub.app import build_runtime
    from hub.store.migrate import current_and_heads

    check_home()
    rt = build_runtime()
    current, heads = current_and_heads(rt.store)
    if not current:
        raise SchemaOutOfDate(f"the database {rt.store.engine.url.render_as_string(hide_password=True)} was never "
                              "migrated (it has no hub schema)", fix=UPGRADE_FIX)
    if current != heads:
        raise SchemaOutOfDate(f"the database schema is at {', '.join(sorted(current))}, this hub expects "
                              f"{', '.join(sorted(heads))}", fix=UPGRADE_FIX)
    return rt


def local_zone() -> str:
    return time.strftime("%Z") or "local"


def show_time(value: Any, utc: bool) -> str:
    """A stored time (naive UTC) as the operator asked for it: UTC, or this machine's zone."""
    from datetime import UTC, datetime

    if value is None:
        return "never"
    if not isinstance(value, datetime):
        return str(value)
    if utc:
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value.replace(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


class Meter:
    """Operations draining, on stderr: one updating line on a terminal, a plain line every few seconds otherwise
    (logs and CI get readable lines, never carriage returns)."""

    def __init__(self, label: str, total: int, *, tty: bool | None = None, every: float = 2.0) -> None:
        self.label, self.total = label, total
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.every = every
        self.states: dict[str, int] = {}
        self.started = time.monotonic()
        self.shown = 0.0

    @property
    def finished(self) -> int:
        return sum(n for state, n in self.states.items() if state != "pending" and state != "running")

    def line(self) -> str:
        finished = self.finished
        total = max(self.total, finished)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = finished / elapsed
        eta = f", about {int((total - finished) / rate)}s left" if rate > 0 and total > finished else ""
        detail = ", ".join(f"{n} {state}" for state, n in sorted(self.states.items()) if state != "pending")
        return f"{self.label}: {finished}/{total} operations ({detail or 'none finished yet'}), {rate:.1f}/s{eta}"

    def update(self, state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1
        now = time.monotonic()
        if self.tty and now - self.shown >= 0.1:
            click.echo("\r" + self.line().ljust(100), nl=False, err=True)
            self.shown = now
        elif not self.tty and now - self.shown >= self.every:
            click.echo(self.line(), err=True)
            self.shown = now

    def start(self) -> None:
        click.echo(f"{self.label}: {self.total} operations to send", err=True)
        self.shown = time.monotonic()

    def close(self) -> None:
        click.echo(("\r" if self.tty else "") + self.line().ljust(100 if self.tty else 0), err=True)
