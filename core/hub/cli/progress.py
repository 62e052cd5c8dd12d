"""What ``hub sync`` shows while it works, on stderr (stdout keeps the summary, or only the JSON with ``--json``).

On an interactive terminal: a live table with one row per stream (pages, records read, new, changed, quarantined
as each page is written) above an operations bar (done/total, rate, time left) while the outbox drains. Anywhere
else (a pipe, a log file, CI, ``TERM=dumb``): plain lines, never cursor movements, so logs stay readable. Rich's
own variables override the detection: ``TTY_INTERACTIVE=0`` forces lines, ``TTY_COMPATIBLE=1 TTY_INTERACTIVE=1`` the
live view (``FORCE_COLOR`` counts as a terminal too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live as RichLive
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from hub.cli.common import Meter

if TYPE_CHECKING:
    from hub.sync.ingest import PageCounts
    from hub.sync.pull import SyncReport

REFRESH_PER_SECOND = 4
"""Redraws of the live view per second, from rich's own thread: a frame of six streams and the bar takes a few ms to
render and about 0.7 kB to draw, so the view costs about 2% of one core and the pull never waits for it."""


class SyncProgress(Protocol):
    """The events of one ``hub sync`` run, in order: ``begin``, (``started``, ``pulled``...) per stream,
    ``pulled_all``, then ``pushing``, ``operation`` per finished operation, and ``close`` (always)."""

    def begin(self, headline: str) -> None: ...
    def started(self, stream: str, detail: str | None = None) -> None: ...
    def pulled(self, stream: str, counts: PageCounts) -> None: ...
    def pulled_all(self, report: SyncReport) -> None: ...
    def pushing(self, total: int) -> None: ...
    def operation(self, state: str) -> None: ...
    def close(self) -> None: ...


class Quiet:
    """``--json``: nothing but the JSON, so stderr stays empty too."""

    def begin(self, headline: str) -> None: pass
    def started(self, stream: str, detail: str | None = None) -> None: pass
    def pulled(self, stream: str, counts: PageCounts) -> None: pass
    def pulled_all(self, report: SyncReport) -> None: pass
    def pushing(self, total: int) -> None: pass
    def operation(self, state: str) -> None: pass
    def close(self) -> None: pass


class Lines:
    """Plain lines on stderr: one as each stream starts and after each page, then the operations meter."""

    def __init__(self) -> None:
        self.meter: Meter | None = None

    def begin(self, headline: str) -> None:
        click.echo(headline, err=True)

    def started(self, stream: str, detail: str | None = None) -> None:
        click.echo(f"  {detail}" if detail else f"  {stream}: reading...", err=True)

    def pulled(self, stream: str, counts: PageCounts) -> None:
        click.echo(f"  {stream}: +{counts.new} new, {counts.changed} changed, {counts.unchanged} unchanged, "
                   f"{counts.quarantined} quarantined", err=True)

    def pulled_all(self, report: SyncReport) -> None:
        pass

    def pushing(self, total: int) -> None:
        self.meter = Meter("pushing", total)
        self.meter.start()

    def operation(self, state: str) -> None:
        if self.meter is not None:
            self.meter.update(state)

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
            self.meter = None


class _Row:
    __slots__ = ("changed", "error", "new", "pages", "quarantined", "read", "state", "unchanged")

    def __init__(self) -> None:
        self.state, self.error = "waiting", ""
        self.pages = self.read = self.new = self.changed = self.unchanged = self.quarantined = 0


class Live:
    """The terminal view: a rich ``Live`` redrawn :data:`REFRESH_PER_SECOND` times a second from counters the
    callbacks bump (they never render, so a fast pull is not slowed down by drawing)."""

    def __init__(self, console: Console, streams: list[str]) -> None:
        self.console = console
        self.headline = ""
        self.note: Text | None = None
        self.rows: dict[str, _Row] = {stream: _Row() for stream in streams}
        self.states: dict[str, int] = {}
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
                            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
                            console=console, auto_refresh=False, expand=False)
        self.task: Any = None
        # A warning written to stderr meanwhile prints above the view instead of through it; stdout is left alone
        # (it is the report's, and may be a file).
        self.live = RichLive(get_renderable=self._render, console=console, refresh_per_second=REFRESH_PER_SECOND,
                             transient=False, redirect_stdout=False, redirect_stderr=True)

    def _render(self) -> RenderableType:
        # Names and errors are Text, never markup: an error quoting "[...]" must print as it is.
        table = Table(title=Text(self.headline), title_justify="left", caption=self.note, caption_justify="left")
        table.add_column("stream")
        table.add_column("state")
        for head in ("pages", "read", "new", "changed", "quarantined"):
            table.add_column(head, justify="right")
        rows = list(self.rows.items())  # the pull may add a row while rich's thread draws
        for stream, row in rows:
            state = Text(row.state, style={"reading": "cyan", "done": "green", "FAILED": "red"}.get(row.state, ""))
            table.add_row(Text(stream), state, str(row.pages), str(row.read), str(row.new), str(row.changed),
                          Text(str(row.quarantined), style="yellow" if row.quarantined else ""))
        failed = [Text(f"{stream}: {row.error}", style="red") for stream, row in rows if row.error]
        parts: list[RenderableType] = [table, *failed]
        if self.task is not None:
            parts.append(self.bar)
        return Group(*parts)

    def begin(self, headline: str) -> None:
        self.headline = headline
        self.live.start()

    def started(self, stream: str, detail: str | None = None) -> None:
        if stream in self.rows:
            self.rows[stream].state = "reading"
            self.note = None
        else:
            self.note = Text(detail or stream)

    def pulled(self, stream: str, counts: PageCounts) -> None:
        row = self.rows.setdefault(stream, _Row())
        row.pages += 1
        row.read += counts.new + counts.changed + counts.unchanged + counts.quarantined + counts.skipped
        row.new += counts.new
        row.changed += counts.changed
        row.unchanged += counts.unchanged
        row.quarantined += counts.quarantined

    def pulled_all(self, report: SyncReport) -> None:
        """The streams' final state from the report (a stream that failed says why; one never reached stays
        ``skipped``), and the counts as the report has them."""
        self.note = None
        seen = set()
        for result in report.streams:
            seen.add(result.stream)
            if result.stream == "preflight" and result.stream not in self.rows:
                if result.error:
                    self.note = Text(f"preflight FAILED: {result.error}", style="red")
                continue
            row = self.rows.setdefault(result.stream, _Row())
            c = result.counts
            row.pages, row.new, row.changed, row.unchanged, row.quarantined = (
                result.pages, c.new, c.changed, c.unchanged, c.quarantined)
            row.read = c.new + c.changed + c.unchanged + c.quarantined + c.skipped
            row.state, row.error = ("FAILED", result.error) if result.error else ("done", "")
        for stream, row in self.rows.items():
            if stream not in seen:
                row.state = "skipped"
        self.live.refresh()

    def pushing(self, total: int) -> None:
        if total:  # no bar for nothing to send; one appears if the push queues work (an NF-e after its sale)
            self.task = self.bar.add_task("pushing", total=total, detail="")

    def operation(self, state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1
        if self.task is None:
            self.task = self.bar.add_task("pushing", total=0, detail="")
        finished = sum(n for s, n in self.states.items() if s not in ("pending", "running"))
        total = max(self.bar.tasks[0].total or 0, finished)
        detail = ", ".join(f"{n} {s}" for s, n in sorted(self.states.items()) if s != "pending")
        self.bar.update(self.task, completed=finished, total=total, detail=detail)

    def close(self) -> None:
        if self.live.is_started:
            self.live.refresh()
            self.live.stop()


class _Rate(ProgressColumn):
    """Operations per second over the bar's recent samples (rich's own speed column speaks of bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- ops/s" if speed is None else f"{speed:.1f} ops/s")


def console() -> Console:
    """The console the live view draws on: stderr, as the plain lines."""
    return Console(stderr=True)


def for_sync(as_json: bool, streams: list[str], out: Console | None = None) -> SyncProgress:
    """Quiet with ``--json``; the live view on an interactive terminal; plain lines otherwise."""
    if as_json:
        return Quiet()
    term = out or console()
    if term.is_interactive:
        return Live(term, streams)
    return Lines()
