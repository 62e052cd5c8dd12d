"""The conformance suite and the harness it (and plugin authors' own tests) drive a sandbox with."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import create_engine, delete, func, select, update
from sqlalchemy.pool import NullPool

from hub.crypto import Vault
from hub.errors import HubError, RateLimited, Retriable
from hub.models import Canonical
from hub.platform import Incoming
from hub.registry import Registry, get_registry
from hub.sandbox import Sandbox, Served, serve
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store, utcnow
from hub.store.schema import Base, Binding, Connection, Cursor, Operation, Quarantine, Route, Tenant
from hub.sync import targets
from hub.sync.ingest import ingest_page
from hub.sync.loading import Runtime, route_view
from hub.sync.operations import execute
from hub.sync.pull import Progress, SyncReport, sync_route

TENANT = "conformance"


def fresh_database_url(tmp: Path) -> str:
    """SQLite in ``tmp`` by default; with ``HUB_TEST_DATABASE_URL`` (PostgreSQL), that database emptied."""
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp / 'hub.db'}"
    return emptied_database(url)


def emptied_database(url: str) -> str:
    """A scratch PostgreSQL database with its ``public`` schema dropped and made again; returns ``url``."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return url


def scratch_runtime(tmp: Path, platform: str, connection: dict[str, Any], pull_stream: str, push_stream: str,
                    *, registry: Registry | None = None, database_url: str | None = None) -> Runtime:
    """A migrated store in ``tmp`` with one tenant, a connection to ``platform`` (``connection`` as a sandbox's
    ``connection()`` gives it), a peer, and two routes: ``pull`` (platform -> peer) and ``push`` (peer -> platform)."""
    registry = registry or get_registry()
    settings = Settings(home=tmp, database_url=database_url or fresh_database_url(tmp))
    store = Store.from_url(settings.resolved_database_url())
    migrate.upgrade(store)
    rt = Runtime(store=store, vault=Vault(settings), registry=registry, lease_seconds=5, max_backoff_seconds=0.1)
    now = utcnow()
    with store.begin() as s:
        s.add(Tenant(id=TENANT, name="Conformance", created_at=now))
        s.flush()
        conns = {}
        for name, plat, opts, creds in (
            ("platform", platform, dict(connection["options"]), rt.vault.encrypt(connection["credentials"])),
            ("elsewhere", "conformance-peer", {}, None),
        ):
            conns[name] = Connection(tenant_id=TENANT, name=name, platform=plat, options=opts, credentials=creds,
                                     credentials_env={}, token_expires_at=None, paused_until=None,
                                     pause_reason=None, updated_at=now)
            s.add(conns[name])
        s.flush()
        for name, source, sink, stream in (("pull", "platform", "elsewhere", pull_stream),
                                           ("push", "elsewhere", "platform", push_stream)):
            s.add(Route(tenant_id=TENANT, name=name, source_id=conns[source].id, sink_id=conns[sink].id,
                        config={"streams": [stream]}, enabled=True, schedule_seconds=None, next_run_at=None,
                        updated_at=now))
    return rt


def pull_once(tmp: Path, platform: str, connection: dict[str, Any], stream: str, *, full: bool = True) -> SyncReport:
    """One pull of ``stream`` from a platform (a sandbox served elsewhere, e.g. in its own process for a benchmark)
    into a scratch store in ``tmp``: what a plugin's bench measures, with no store code of its own."""
    rt = scratch_runtime(tmp, platform, connection, stream, stream)
    try:
        return sync_route(rt, TENANT, "pull", full=full)
    finally:
        rt.store.engine.dispose()


def pull_route(rt: Runtime, *, full: bool = False, targeted: bool = False) -> SyncReport:
    """One run of a :func:`scratch_runtime`'s ``pull`` route: full, incremental, or only the records
    :func:`announce` named (as after a webhook)."""
    return sync_route(rt, TENANT, "pull", full=full, targeted=targeted)


def announce(rt: Runtime, stream: str, ids: list[str]) -> None:
    """Record ``ids`` of ``stream`` as a verified webhook would for a :func:`scratch_runtime`'s ``pull`` route: its
    next targeted run reads only them."""
    with rt.store.begin() as s:
        route = s.scalar(select(Route.id).where(Route.tenant_id == TENANT, Route.name == "pull"))
        assert route is not None, "announce() needs a scratch_runtime's pull route"
        targets.record(s, rt.store.engine.dialect.name, TENANT, route, stream, ids, utcnow())


@dataclass
class Harness:
    """A migrated store, a served sandbox and two routes: ``pull`` (sandbox -> nowhere) and ``push``
    (store -> sandbox)."""

    rt: Runtime
    sandbox: Sandbox
    served: Served
    platform: str
    stream_in: str
    stream_out: str

    @classmethod
    def start(cls, tmp: Path, platform: str, pull_stream: str, push_stream: str,
              registry: Registry | None = None, database_url: str | None = None,
              sandbox_options: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> Harness:
        """``options`` are merged into the connection options the sandbox gives (e.g. a short timeout)."""
        registry = registry or get_registry()
        factory = registry.platform(platform).sandbox
        assert factory is not None, f"{platform} ships no sandbox"
        box = factory(**(sandbox_options or {}))
        served = serve(box.app)
        info = box.connection(served.base_url)
        info = {**info, "options": {**info["options"], **(options or {})}}
        rt = scratch_runtime(tmp, platform, info, pull_stream, push_stream, registry=registry,
                             database_url=database_url)
        return cls(rt, box, served, platform, pull_stream, push_stream)

    def stop(self) -> None:
        self.served.stop()
        self.rt.store.engine.dispose()

    def pull(self, full: bool = False, progress: Progress | None = None) -> SyncReport:
        return sync_route(self.rt, TENANT, "pull", full=full, progress=progress)

    def cursor(self, stream: str | None = None) -> str | None:
        """The stored position of the pull route's stream (None before any page moved it)."""
        with self.rt.store.sessions() as s:
            route = s.scalar(select(Route.id).where(Route.tenant_id == TENANT, Route.name == "pull"))
            return s.scalar(select(Cursor.position).where(Cursor.route_id == route,
                                                          Cursor.stream == (stream or self.stream_in)))

    def credentials(self) -> dict[str, str]:
        """What the platform connection holds now (decrypted)."""
        with self.rt.store.sessions() as s:
            stored = s.scalar(select(Connection.credentials).where(Connection.tenant_id == TENANT,
                                                                     Connection.name == "platform"))
        values: dict[str, str] = self.rt.vault.decrypt(stored) if stored else {}
        return values

    def stored_text(self) -> dict[str, str]:
        """Every row of every table but the connections (which hold the credentials, encrypted), as text, by
        table: what an operator sees through ``hub logs``, ``hub status``, the quarantine and the records."""
        found: dict[str, str] = {}
        with self.rt.store.sessions() as s:
            for table in Base.metadata.sorted_tables:
                if table.name in ("connections", "alembic_version"):
                    continue
                rows = s.execute(select(table)).all()
                found[table.name] = "\n".join(repr(tuple(row)) for row in rows)
        return found

    def bound(self, stream: str | None = None) -> int:
        with self.rt.store.sessions() as s:
            conn = s.scalar(select(Connection.id).where(Connection.tenant_id == TENANT,
                                                        Connection.name == "platform"))
            return s.scalar(select(func.count()).select_from(Binding).where(
                Binding.connection_id == conn, Binding.entity == (stream or self.stream_in))) or 0

    def stage(self, *records: Canonical, external_prefix: str = "rec") -> list[int]:
        """Put canonical records into the store as if pulled from the peer; return their operation ids."""
        with self.rt.store.begin() as s:
            route = s.scalar(select(Route).where(Route.tenant_id == TENANT, Route.name == "push"))
            assert route is not None
            view = route_view(s, route)
            items = [Incoming(external_id=f"{external_prefix}-{i}", data=r) for i, r in enumerate(records)]
            ingest_page(s, self.rt.registry, route, view, self.stream_out, items)
            return list(s.scalars(select(Operation.id).where(Operation.route_id == route.id)
                                  .order_by(Operation.id.desc()).limit(len(records))))[::-1]

    def run(self, op_id: int) -> str:
        return execute(self.rt, op_id)

    def operation(self, op_id: int) -> Operation:
        with self.rt.store.sessions() as s:
            return s.get_one(Operation, op_id)

    def authenticate(self) -> None:
        """Renew the token now, so a fault injected next hits the operation, not what authenticate reads."""
        from hub.sync.loading import ensure_auth

        with self.rt.store.sessions() as s:
            conn = s.scalar(select(Connection.id).where(Connection.tenant_id == TENANT, Connection.name == "platform"))
        assert conn is not None
        ensure_auth(self.rt, conn)

    def make_due(self, op_id: int, **values: Any) -> None:
        with self.rt.store.begin() as s:
            s.execute(update(Operation).where(Operation.id == op_id).values(available_at=utcnow(), **values))

    def quarantined(self) -> list[Quarantine]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Quarantine).where(Quarantine.tenant_id == TENANT)))


PULL_FAULTS = ("500", "timeout", "429")
"""Faults injected in the middle of a paginated pull: each must be waited out, with nothing skipped."""
AGE_SECONDS = 2 * 24 * 3600
"""How far :meth:`ConnectorConformance.test_cursor_advances` moves the read records into the past: more than any
platform's re-read (overlap) window, so a cursor that moved reads none of them again."""
MIN_SECRET = 5
"""Credential values shorter than this (a client id such as ``demo``) are not looked for: they match by chance."""
FAULT_TIMEOUT_SECONDS = 1.0
"""The connection's ``timeout_seconds`` in the pull-fault test: below the sandboxes' ``fault_delay`` (2 s), so the
injected ``timeout`` really times out."""

RecordMaker = Callable[[int], Canonical]


def _side(side: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a kit test as run once per pulled stream (``pull``), per pushed stream (``push``), or per fault."""

    def mark(test: Callable[..., None]) -> Callable[..., None]:
        test.kit_side = side  # type: ignore[attr-defined]
        return test

    return mark


def _counted(report: SyncReport) -> str:
    rows = [f"{r.stream}: {r.pages} pages, new={r.counts.new} changed={r.counts.changed} "
            f"unchanged={r.counts.unchanged} quarantined={r.counts.quarantined}"
            + (f", error {r.error_class.__name__ if r.error_class else ''}: {r.error}" if r.error else "")
            for r in report.streams]
    return "; ".join(rows) or "no stream ran"


class ConnectorConformance:
    """Subclass it in a plugin's tests; every test runs once per declared stream.

    Declare the streams the plugin pulls (``pull_streams``) and pushes (``push_streams``: stream -> a function of
    ``i`` returning a canonical record the platform accepts, or a tuple of streams with ``make_record(stream,
    i)``). The older one-stream form (``pull_stream``, ``push_stream``, ``make_record(i)``) still works.
    """

    platform: ClassVar[str]
    pull_stream: ClassVar[str] = "products"
    push_stream: ClassVar[str] = "products"
    pull_streams: ClassVar[tuple[str, ...]] = ()
    push_streams: ClassVar[Mapping[str, RecordMaker | str] | tuple[str, ...]] = ()
    """Stream -> a function ``f(i)`` (or the name of a method of the class) making its record; or just names, with
    ``make_record(stream, i)``."""
    update_only: ClassVar[frozenset[str]] = frozenset({"stock", "prices"})
    """Pushed streams that change records already on the platform (a balance, a price): a push adds none, and
    redelivering it must write nothing twice."""
    full_refresh: ClassVar[frozenset[str]] = frozenset()
    """Pulled streams the platform only lists whole (no change date to filter on): exempt from the cursor check."""
    reads_retried: ClassVar[bool] = False
    """The plugin retries its own reads: a 500, timeout or 429 in the middle of a pull must not fail the run (without
    it, the failed run is accepted when its error is a Retriable or RateLimited one and the next run completes)."""
    page_size: ClassVar[int] = 100
    sandbox_options: ClassVar[dict[str, Any]] = {}
    """Keyword arguments for the platform's sandbox factory (e.g. a faster rate limit, to keep the suite quick)."""
    registry: ClassVar[Callable[[], Registry] | None] = None
    """Where the platform comes from (default: the installed plugins); tests of broken plugins give their own."""

    # --- what a plugin's test declares ------------------------------------------------------------------------

    def make_record(self, *args: Any) -> Canonical:
        raise NotImplementedError("return a canonical record of the pushed stream that the platform accepts "
                                  "(make_record(stream, i), or push_streams = {stream: f(i)})")

    def make_refused(self, stream: str) -> tuple[Canonical, str] | None:
        """A canonical record of ``stream`` the hub accepts but the platform refuses with a 422 (or its own
        validation error), and the field the refusal names; None to skip the check for that stream."""
        return None

    def prepare(self, sandbox: Any) -> None:
        """Create on the platform what ``make_record``'s records refer to (e.g. the products a sale sells)."""

    def write_fault(self, stream: str) -> dict[str, str]:
        """Where a push test's fault lands: on the create (POST) when the plugin retries its reads, since an
        :class:`hub.ApiClient` retries the lookup before a create and would absorb it; else the next request."""
        return {"method": "POST"} if self.reads_retried and stream not in self.update_only else {}

    # --- the streams ------------------------------------------------------------------------------------------

    def pulled(self) -> list[str]:
        return list(self.pull_streams or (self.pull_stream,))

    def pushed(self) -> list[str]:
        return list(self.push_streams or (self.push_stream,))

    def record(self, stream: str, i: int) -> Canonical:
        """The ``i``-th record to push to ``stream``, from ``push_streams`` or ``make_record``."""
        maker = self.push_streams.get(stream) if isinstance(self.push_streams, Mapping) else None
        if isinstance(maker, str):
            made: Canonical = getattr(self, maker)(i)
            return made
        if maker is not None:
            return maker(i)
        if len(inspect.signature(self.make_record).parameters) >= 2:
            return self.make_record(stream, i)
        return self.make_record(i)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        side = getattr(metafunc.function, "kit_side", None)
        if side is None or "stream" not in metafunc.fixturenames:
            return
        if side == "pull-fault":
            cases = [(stream, fault) for stream in self.pulled() for fault in PULL_FAULTS]
            metafunc.parametrize(("stream", "fault"), cases, ids=[f"{s}-{f}" for s, f in cases])
            return
        streams = self.pulled() if side.startswith("pull") else self.pushed()
        metafunc.parametrize("stream", streams, ids=streams)

    @pytest.fixture
    def stream(self) -> str:
        """The stream of a test that is not run per stream (authentication, the credential scan)."""
        return self.pulled()[0]

    @pytest.fixture
    def harness(self, request: pytest.FixtureRequest, tmp_path: Path, stream: str) -> Iterator[Harness]:
        side = getattr(request.function, "kit_side", "")
        h = self.start(tmp_path, stream, side)
        try:
            yield h
        finally:
            h.stop()

    def start(self, tmp: Path, stream: str, side: str = "pull", options: dict[str, Any] | None = None) -> Harness:
        """A harness whose pull route reads ``stream`` (a pull test) or whose push route writes it (a push test)."""
        tmp.mkdir(parents=True, exist_ok=True)
        pushed = self.pushed()
        pull = stream if side != "push" else self.pulled()[0]
        push = stream if side == "push" else (pushed[0] if pushed else stream)
        factory = type(self).registry
        h = Harness.start(tmp, self.platform, pull, push, registry=factory() if factory else None,
                          sandbox_options=self.sandbox_options, options=options)
        try:
            self.prepare(h.sandbox)
        except BaseException:
            h.stop()
            raise
        return h

    def _expected(self, harness: Harness, stream: str) -> int:
        expected = harness.sandbox.expected_pull
        return len(expected(stream))

    # --- authentication ---------------------------------------------------------------------------------------

    def test_authenticate(self, harness: Harness) -> None:
        from hub.sync.loading import ensure_auth

        if not harness.rt.registry.implements(self.platform, "authenticate"):
            pytest.skip(f"{self.platform} has no authenticate hook (its credentials are used as they are)")
        with harness.rt.store.sessions() as s:
            conn = s.scalar(select(Connection).where(Connection.name == "platform"))
            assert conn is not None, "the harness should have made the platform connection"
        creds = ensure_auth(harness.rt, conn.id, force=True)
        assert creds, f"authenticate on {self.platform} should return credentials, returned {creds!r}"
        with harness.rt.store.sessions() as s:
            stored = s.get_one(Connection, conn.id).credentials
        assert stored is not None, "the renewed credentials should be stored"
        leaked = [k for k, v in creds.items() if isinstance(v, str) and len(v) >= MIN_SECRET and v.encode() in stored]
        assert b"access_token" not in stored and not leaked, \
            f"credentials should be stored encrypted; found {leaked or ['access_token']} in plain text"

    # --- pulls ------------------------------------------------------------------------------------------------

    @_side("pull")
    def test_pull_paginates_to_the_end(self, harness: Harness, stream: str) -> None:
        count = self.page_size * 2 + self.page_size // 2
        harness.sandbox.seed(stream, count)
        report = harness.pull()
        assert report.ok, f"a full pull of {stream} should succeed: {_counted(report)}"
        expected = self._expected(harness, stream)
        assert harness.bound(stream) == expected, \
            f"a full pull of {stream} should bring all {expected} records, brought {harness.bound(stream)}"
        assert report.streams[0].pages >= 3, \
            f"{count} records at {self.page_size} a page should come in 3 or more pages: {_counted(report)}"

    @_side("pull")
    def test_repeated_page_is_detected(self, harness: Harness, stream: str) -> None:
        harness.sandbox.seed(stream, self.page_size * 3)
        harness.sandbox.inject_fault("repeat_page", 1)
        report = harness.pull()
        assert not report.ok, f"a platform answering the same page twice should stop the pull: {_counted(report)}"
        assert "same page" in (report.streams[0].error or ""), \
            f"the error should say the same page came twice, said {report.streams[0].error!r}"

    @_side("pull")
    def test_cursor_advances(self, harness: Harness, stream: str) -> None:
        """A second incremental pull with nothing changed reads nothing: a cursor that never moves re-reads all."""
        if stream in self.full_refresh:
            pytest.skip(f"{stream} is listed whole on every pull (full_refresh)")
        seeded = harness.sandbox.seed(stream, 30)
        first = harness.pull()
        assert first.ok, f"the first pull of {stream} should succeed: {_counted(first)}"
        position = harness.cursor(stream)
        assert position is not None, f"after a full pull of {stream} the cursor should be stored, it is None"
        try:
            harness.sandbox.age(stream, AGE_SECONDS)
        except NotImplementedError as exc:
            pytest.skip(f"the sandbox cannot move its records' change dates into the past: {exc}")
        again = harness.pull()
        assert again.ok, f"the second pull of {stream} should succeed: {_counted(again)}"
        counts = again.streams[0].counts
        read = counts.new + counts.changed + counts.unchanged
        assert read == 0, (
            f"the cursor of {stream} should advance: a second incremental pull with nothing changed since should read "
            f"0 records (all {len(seeded)} were moved {AGE_SECONDS // 3600} h into the past, behind the cursor "
            f"{position!r} and its re-read window), read "
            f"{read} (new={counts.new} changed={counts.changed} unchanged={counts.unchanged}): the cursor never moves")
        harness.sandbox.touch(stream, seeded[7])
        third = harness.pull()
        counts = third.streams[0].counts
        assert third.ok and counts.changed == 1 and counts.new == 0, \
            f"after one {stream} record changed, the next pull should bring it alone as changed: {_counted(third)}"

    @_side("pull-fault")
    def test_pull_waits_out_faults(self, tmp_path: Path, stream: str, fault: str) -> None:
        """A 500, a timeout or a 429 in the middle of a paginated pull: read again (by the plugin, or by the next
        run of the route) and nothing is skipped; a 429 is a wait (RateLimited), never a failure."""
        harness = self.start(tmp_path, stream, "pull", options={"timeout_seconds": FAULT_TIMEOUT_SECONDS})
        try:
            harness.sandbox.seed(stream, self.page_size * 3 + self.page_size // 2)
            injected: list[str] = []

            def after_page(_: str, __: Any) -> None:
                if not injected:
                    injected.append(fault)
                    harness.sandbox.inject_fault(fault, 1)

            report = harness.pull(progress=after_page)
            assert injected, f"the pull of {stream} should have read a first page: {_counted(report)}"
            if not report.ok:
                result = report.streams[0]
                assert not self.reads_retried, (
                    f"a {fault} in the middle of a pull of {stream} should be retried by the plugin's reads "
                    f"(reads_retried), the run failed: {_counted(report)}")
                wanted: type[HubError] = RateLimited if fault == "429" else Retriable
                got = result.error_class
                assert got is not None and issubclass(got, wanted), (
                    f"a {fault} during a pull of {stream} should be a {wanted.__name__} (waited out and retried), "
                    f"it was {got.__name__ if got else 'no error class'}: {result.error}")
                report = harness.pull()  # the route's next run, as the runner retries a failed one
            assert report.ok, f"the pull of {stream} should complete once the {fault} is over: {_counted(report)}"
            expected = self._expected(harness, stream)
            assert harness.bound(stream) == expected, (
                f"after a {fault} during the pull of {stream}, every record should arrive: expected {expected}, "
                f"got {harness.bound(stream)} (records were skipped)")
        finally:
            harness.stop()

    @_side("pull")
    def test_bad_input_is_quarantined_and_the_rest_goes_on(self, harness: Harness, stream: str) -> None:
        harness.sandbox.seed(stream, 10)
        try:
            bad = harness.sandbox.seed_invalid(stream)
        except (NotImplementedError, ValueError) as exc:
            pytest.skip(f"the sandbox cannot make an invalid {stream} record: {exc}")
        report = harness.pull()
        assert report.ok, f"an invalid record should not fail the pull of {stream}: {_counted(report)}"
        assert report.streams[0].counts.quarantined == 1, \
            f"the invalid {stream} record {bad} should be quarantined: {_counted(report)}"
        assert harness.bound(stream) == 10, \
            f"the 10 valid {stream} records should arrive, {harness.bound(stream)} did"
        (q,) = harness.quarantined()
        assert q.reason and q.fix, f"the quarantine should say why and how to fix it: {q.reason!r}, {q.fix!r}"

    @_side("pull")
    def test_future_dated_record_is_quarantined_and_later_ones_still_arrive(self, harness: Harness,
                                                                           stream: str) -> None:
        ids = harness.sandbox.seed(stream, 5)
        try:
            future = harness.sandbox.seed_future(stream)
        except (NotImplementedError, ValueError) as exc:
            pytest.skip(f"the sandbox cannot make a future-dated {stream} record: {exc}")
        first = harness.pull()
        assert first.ok, first
        refused = [q for q in harness.quarantined() if q.record == future]
        assert len(refused) == 1 and refused[0].field == "updated_at", \
            f"the future-dated record {future} should be quarantined on updated_at: {harness.quarantined()}"
        assert refused[0].fix, "the quarantine should say how to fix the date"
        before = harness.bound(stream)
        later = harness.sandbox.seed(stream, 3)
        harness.sandbox.touch(stream, ids[0])
        second = harness.pull()
        assert second.ok, second
        assert harness.bound(stream) == before + len(later), \
            f"the {len(later)} records added after the future-dated one should arrive in the next incremental pull"
        assert second.streams[0].counts.changed >= 1, "the record changed after it should be read again"

    # --- pushes -----------------------------------------------------------------------------------------------

    @_side("push")
    def test_push_is_idempotent(self, harness: Harness, stream: str) -> None:
        before = harness.sandbox.records(stream)
        (op_id,) = harness.stage(self.record(stream, 1))
        assert harness.run(op_id) == "done", f"the push of a {stream} record should succeed: " \
                                             f"{harness.operation(op_id).last_error}"
        remote_id = harness.operation(op_id).remote_id
        written = harness.sandbox.records(stream)
        grew = 0 if stream in self.update_only else 1
        assert len(written) == len(before) + grew, \
            f"one push to {stream} should add {grew} record(s), added {len(written) - len(before)}"
        # The worker died after the remote write, before recording it: the write runs again.
        with harness.rt.store.begin() as s:
            s.execute(delete(Binding).where(Binding.entity == stream, Binding.external_id == remote_id))
        harness.make_due(op_id, state="pending", remote_id=None)
        assert harness.run(op_id) == "done", f"the redelivered push to {stream} should succeed: " \
                                             f"{harness.operation(op_id).last_error}"
        again = harness.sandbox.records(stream)
        assert len(again) == len(written), (
            f"a redelivered push to {stream} should write nothing twice: expected {len(written)} records, found "
            f"{len(again)} (a duplicate on redelivery: search before create, send the idempotency key)")
        assert harness.operation(op_id).remote_id == remote_id, \
            f"the redelivered push should find {stream} {remote_id}, wrote {harness.operation(op_id).remote_id}"
        if stream in self.update_only:
            assert again == written, f"a redelivered update of {stream} should not write again (a duplicate write)"
        # The same message delivered again does nothing.
        assert harness.run(op_id) == "done", "a push already done should stay done"
        assert len(harness.sandbox.records(stream)) == len(written), \
            f"the same {stream} message delivered twice should not write a duplicate"

    @_side("push")
    def test_server_error_is_retried(self, harness: Harness, stream: str) -> None:
        (op_id,) = harness.stage(self.record(stream, 2))
        harness.authenticate()
        harness.sandbox.inject_fault("500", 1, **self.write_fault(stream))
        assert harness.run(op_id) == "pending", \
            f"a 500 on a push to {stream} should leave it pending for a retry: {harness.operation(op_id).last_error}"
        op = harness.operation(op_id)
        assert op.attempts == 1 and op.last_error, \
            f"a 500 should count one attempt and say why: attempts={op.attempts}, error={op.last_error!r}"
        harness.make_due(op_id)
        assert harness.run(op_id) == "done", f"the retry should succeed: {harness.operation(op_id).last_error}"

    @_side("push")
    def test_rate_limit_waits_without_burning_attempts(self, harness: Harness, stream: str) -> None:
        (op_id,) = harness.stage(self.record(stream, 3))
        harness.authenticate()
        harness.sandbox.inject_fault("429", 1, **self.write_fault(stream))
        sent = utcnow()
        state = harness.run(op_id)
        op = harness.operation(op_id)
        assert state == "pending", \
            f"a 429 on a push to {stream} should wait (RateLimited), the operation is {state}: {op.last_error}"
        assert op.attempts == 0 and op.waits == 1 and op.available_at > sent, (
            f"a 429 should wait without counting an attempt: attempts={op.attempts} (expected 0), waits={op.waits} "
            f"(expected 1), due at {op.available_at} (expected after the call at {sent})")
        harness.make_due(op_id)
        assert harness.run(op_id) == "done", f"after the wait the push should succeed: " \
                                             f"{harness.operation(op_id).last_error}"

    @_side("push")
    def test_expired_token_is_refreshed(self, harness: Harness, stream: str) -> None:
        (op_id,) = harness.stage(self.record(stream, 4))
        assert harness.run(op_id) == "done", f"the first push should succeed: {harness.operation(op_id).last_error}"
        (op2,) = harness.stage(self.record(stream, 5))
        harness.sandbox.inject_fault("401", 1)
        assert harness.run(op2) == "done", \
            f"a revoked token should be renewed and the push go through: {harness.operation(op2).last_error}"

    @_side("push")
    def test_refused_record_is_quarantined_with_its_field(self, harness: Harness, stream: str) -> None:
        refused = self.make_refused(stream)
        if refused is None:
            pytest.skip(f"no record of {stream} the platform refuses is declared (make_refused)")
        record, field = refused
        (op_id,) = harness.stage(record)
        state = harness.run(op_id)
        op = harness.operation(op_id)
        assert state == "failed", \
            f"a {stream} record the platform refuses should fail at once (no retry), it is {state}: {op.last_error}"
        quarantined = [q for q in harness.quarantined() if q.entity == stream]
        assert len(quarantined) == 1, f"the refused {stream} record should be quarantined once, found {quarantined}"
        q = quarantined[0]
        assert q.field is not None and field in q.field, \
            f"the quarantine should name the field the platform refused ({field}), named {q.field!r}: {q.reason}"
        assert q.fix, f"the quarantine should say how to fix {field}"

    # --- secrets ----------------------------------------------------------------------------------------------

    def test_credentials_never_leak(self, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                    capfd: pytest.CaptureFixture[str]) -> None:
        """No value the connection holds (tokens, secrets, passwords) in the API log, operations, quarantine,
        cursors, records or the output, through a pull, a push, a refused push and a forced token renewal."""
        caplog.set_level(logging.DEBUG)
        pushed = self.pushed()
        harness = self.start(tmp_path, pushed[0] if pushed else self.pulled()[0], "push" if pushed else "pull")
        try:
            secrets = {k: v for k, v in harness.credentials().items()}
            harness.sandbox.seed(harness.stream_in, 5)
            harness.pull()
            secrets.update({f"{k} (1)": v for k, v in harness.credentials().items()})
            if pushed:
                for op_id in harness.stage(self.record(pushed[0], 6), external_prefix="leak"):
                    harness.run(op_id)
                refused = self.make_refused(pushed[0])
                if refused is not None:
                    for op_id in harness.stage(refused[0], external_prefix="refused"):
                        harness.run(op_id)
                harness.sandbox.inject_fault("401", 1)
                for op_id in harness.stage(self.record(pushed[0], 7), external_prefix="renewed"):
                    harness.run(op_id)
            harness.sandbox.inject_fault("401", 1)
            harness.pull()
            secrets.update({f"{k} (2)": v for k, v in harness.credentials().items()})
            places = harness.stored_text()
        finally:
            harness.stop()
        out, err = capfd.readouterr()
        places.update(stdout=out, stderr=err, logs="\n".join(r.getMessage() for r in caplog.records))
        watched = {name: value for name, value in secrets.items()
                   if isinstance(value, str) and len(value) >= MIN_SECRET}
        leaks = [f"{name.split(' (')[0]} in {place}" for name, value in watched.items()
                 for place, content in places.items() if value in content]
        assert not leaks, f"credentials should never be written in clear, found: {', '.join(sorted(set(leaks)))}"
