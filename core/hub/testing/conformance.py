"""The conformance suite and the harness it (and plugin authors' own tests) drive a sandbox with."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import create_engine, delete, func, select, update
from sqlalchemy.pool import NullPool

from hub.crypto import Vault
from hub.models import Canonical
from hub.platform import Incoming
from hub.registry import Registry, get_registry
from hub.sandbox import Sandbox, Served, serve
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store, utcnow
from hub.store.schema import Binding, Connection, Operation, Quarantine, Route, Tenant
from hub.sync.ingest import ingest_page
from hub.sync.loading import Runtime, route_view
from hub.sync.operations import execute
from hub.sync.pull import SyncReport, sync_route

TENANT = "conformance"


def fresh_database_url(tmp: Path) -> str:
    """SQLite in ``tmp`` by default; with ``HUB_TEST_DATABASE_URL`` (PostgreSQL), that database emptied."""
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp / 'hub.db'}"
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return url


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
              sandbox_options: dict[str, Any] | None = None) -> Harness:
        registry = registry or get_registry()
        settings = Settings(home=tmp, database_url=database_url or fresh_database_url(tmp))
        store = Store.from_url(settings.resolved_database_url())
        migrate.upgrade(store)
        rt = Runtime(store=store, vault=Vault(settings), registry=registry, lease_seconds=5, max_backoff_seconds=0.1)
        factory = registry.platform(platform).sandbox
        assert factory is not None, f"{platform} ships no sandbox"
        box = factory(**(sandbox_options or {}))
        served = serve(box.app)
        info = box.connection(served.base_url)
        now = utcnow()
        with store.begin() as s:
            s.add(Tenant(id=TENANT, name="Conformance", created_at=now))
            s.flush()
            conns = {}
            for name, plat, opts, creds in (
                ("platform", platform, info["options"], rt.vault.encrypt(info["credentials"])),
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
        return cls(rt, box, served, platform, pull_stream, push_stream)

    def stop(self) -> None:
        self.served.stop()
        self.rt.store.engine.dispose()

    def pull(self, full: bool = False) -> SyncReport:
        return sync_route(self.rt, TENANT, "pull", full=full)

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

    def make_due(self, op_id: int, **values: Any) -> None:
        with self.rt.store.begin() as s:
            s.execute(update(Operation).where(Operation.id == op_id).values(available_at=utcnow(), **values))

    def quarantined(self) -> list[Quarantine]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Quarantine).where(Quarantine.tenant_id == TENANT)))


class ConnectorConformance:
    """Subclass it in a plugin's tests. ``make_record`` builds a record the sink accepts."""

    platform: ClassVar[str]
    pull_stream: ClassVar[str] = "products"
    push_stream: ClassVar[str] = "products"
    page_size: ClassVar[int] = 100
    sandbox_options: ClassVar[dict[str, Any]] = {}
    """Keyword arguments for the platform's sandbox factory (e.g. a faster rate limit, to keep the suite quick)."""

    def make_record(self, i: int) -> Canonical:
        raise NotImplementedError("return a canonical record of push_stream that the platform accepts")

    def prepare(self, sandbox: Any) -> None:
        """Create on the platform what ``make_record``'s records refer to (e.g. the products a sale sells)."""

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[Harness]:
        h = Harness.start(tmp_path, self.platform, self.pull_stream, self.push_stream,
                          sandbox_options=self.sandbox_options)
        self.prepare(h.sandbox)
        try:
            yield h
        finally:
            h.stop()

    def test_authenticate(self, harness: Harness) -> None:
        from hub.sync.loading import ensure_auth

        with harness.rt.store.sessions() as s:
            conn = s.scalar(select(Connection).where(Connection.name == "platform"))
            assert conn is not None
        creds = ensure_auth(harness.rt, conn.id)
        assert creds, "authenticate returned no credentials"
        with harness.rt.store.sessions() as s:
            stored = s.get_one(Connection, conn.id).credentials
        assert stored is not None and b"access_token" not in stored, "credentials must be stored encrypted"

    def test_pull_paginates_to_the_end(self, harness: Harness) -> None:
        count = self.page_size * 2 + self.page_size // 2
        harness.sandbox.seed(self.pull_stream, count)
        report = harness.pull()
        assert report.ok, report
        expected = getattr(harness.sandbox, "expected_pull", harness.sandbox.records)
        assert harness.bound() == len(expected(self.pull_stream))
        assert report.streams[0].pages >= 3

    def test_repeated_page_is_detected(self, harness: Harness) -> None:
        harness.sandbox.seed(self.pull_stream, self.page_size * 3)
        harness.sandbox.inject_fault("repeat_page", 1)
        report = harness.pull()
        assert not report.ok
        assert "same page" in (report.streams[0].error or "")

    def test_incremental_pull_moves_only_changes(self, harness: Harness) -> None:
        ids = harness.sandbox.seed(self.pull_stream, 30)
        assert harness.pull().ok
        again = harness.pull()
        assert again.streams[0].counts.new == 0 and again.streams[0].counts.changed == 0
        harness.sandbox.touch(self.pull_stream, ids[7])
        third = harness.pull()
        assert third.streams[0].counts.changed == 1 and third.streams[0].counts.new == 0

    def test_push_is_idempotent(self, harness: Harness) -> None:
        before = len(harness.sandbox.records(self.push_stream))
        (op_id,) = harness.stage(self.make_record(1))
        assert harness.run(op_id) == "done"
        remote_id = harness.operation(op_id).remote_id
        # The worker died after the remote write, before recording it: the write runs again.
        with harness.rt.store.begin() as s:
            s.execute(delete(Binding).where(Binding.entity == self.push_stream,
                                                       Binding.external_id == remote_id))
        harness.make_due(op_id, state="pending", remote_id=None)
        assert harness.run(op_id) == "done"
        assert harness.operation(op_id).remote_id == remote_id
        assert len(harness.sandbox.records(self.push_stream)) == before + 1
        # The same message delivered again does nothing.
        assert harness.run(op_id) == "done"
        assert len(harness.sandbox.records(self.push_stream)) == before + 1

    def test_server_error_is_retried(self, harness: Harness) -> None:
        (op_id,) = harness.stage(self.make_record(2))
        harness.sandbox.inject_fault("500", 1)
        assert harness.run(op_id) == "pending"
        op = harness.operation(op_id)
        assert op.attempts == 1 and op.last_error
        harness.make_due(op_id)
        assert harness.run(op_id) == "done"

    def test_rate_limit_waits_without_burning_attempts(self, harness: Harness) -> None:
        (op_id,) = harness.stage(self.make_record(3))
        harness.sandbox.inject_fault("429", 1)
        assert harness.run(op_id) == "pending"
        op = harness.operation(op_id)
        assert op.attempts == 0 and op.waits == 1 and op.available_at > utcnow()
        harness.make_due(op_id)
        assert harness.run(op_id) == "done"

    def test_expired_token_is_refreshed(self, harness: Harness) -> None:
        (op_id,) = harness.stage(self.make_record(4))
        assert harness.run(op_id) == "done"
        (op2,) = harness.stage(self.make_record(5))
        harness.sandbox.inject_fault("401", 1)
        assert harness.run(op2) == "done"

    def test_bad_input_is_quarantined_and_the_rest_goes_on(self, harness: Harness) -> None:
        seed_invalid = getattr(harness.sandbox, "seed_invalid", None)
        if seed_invalid is None:
            pytest.skip("the sandbox cannot make an invalid record")
        harness.sandbox.seed(self.pull_stream, 10)
        seed_invalid(self.pull_stream)
        report = harness.pull()
        assert report.ok
        assert report.streams[0].counts.quarantined == 1
        assert harness.bound() == 10
        (q,) = harness.quarantined()
        assert q.reason and q.fix
