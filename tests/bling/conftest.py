"""A tenant with a Bling connection to a served Bling sandbox, and a point-of-sale peer whose records are staged
into the store as if pulled (the peer itself is not a platform: what is tested is Bling's side)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hub.models import Address, Canonical, Customer, Payment, Sale, SaleItem
from hub.platform import Incoming
from hub.sandbox import Served, serve
from hub.store.engine import utcnow
from hub.store.schema import ApiCall, Binding, Connection, Operation, Quarantine, Route, Tenant
from hub.sync.drain import drain
from hub.sync.ingest import ingest_page
from hub.sync.loading import Runtime, route_view
from hub.sync.pull import SyncReport, sync_route
from hub_bling.sandbox import BlingSandbox
from sqlalchemy import func, select

TENANT = "acme"
FAST = 100.0
"""The suite runs Bling's sandbox at 100 requests/s (client and server agree); one test keeps the real 3/s."""


@dataclass
class World:
    rt: Runtime
    box: BlingSandbox
    served: Served
    bling_id: int
    peer_id: int

    def route(self, name: str, streams: list[str], *, pull: bool = False, **config: Any) -> None:
        """A route peer -> Bling (or Bling -> peer with ``pull``)."""
        source, sink = (self.bling_id, self.peer_id) if pull else (self.peer_id, self.bling_id)
        with self.rt.store.begin() as s:
            s.add(Route(tenant_id=TENANT, name=name, source_id=source, sink_id=sink,
                        config={"streams": streams, **config}, enabled=True, schedule_seconds=None,
                        next_run_at=None, updated_at=utcnow()))

    def stage(self, route: str, stream: str, *records: Canonical, prefix: str = "pos") -> None:
        """Records arriving from the peer, as a pull would write them (transitions and operations included)."""
        with self.rt.store.begin() as s:
            row = s.scalar(select(Route).where(Route.tenant_id == TENANT, Route.name == route))
            assert row is not None
            items = [Incoming(external_id=f"{prefix}-{getattr(r, 'number', None) or i}", data=r)
                     for i, r in enumerate(records)]
            ingest_page(s, self.rt.registry, row, route_view(s, row), stream, items)

    def drain(self) -> dict[str, int]:
        return drain(self.rt, max_wait=5)

    def pull(self, route: str, full: bool = False) -> SyncReport:
        return sync_route(self.rt, TENANT, route, full=full)

    def ops(self, **where: Any) -> list[Operation]:
        with self.rt.store.sessions() as s:
            query = select(Operation).where(*(getattr(Operation, k) == v for k, v in where.items()))
            return list(s.scalars(query.order_by(Operation.id)))

    def quarantined(self) -> list[Quarantine]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(Quarantine).where(Quarantine.tenant_id == TENANT)))

    def api_errors(self) -> list[ApiCall]:
        with self.rt.store.sessions() as s:
            return list(s.scalars(select(ApiCall).where(ApiCall.tenant_id == TENANT, ApiCall.error.is_not(None))))

    def connection(self) -> Connection:
        with self.rt.store.sessions() as s:
            return s.get_one(Connection, self.bling_id)

    def bound(self, entity: str, connection_id: int | None = None) -> dict[str, str]:
        with self.rt.store.sessions() as s:
            rows = s.execute(select(Binding.canonical_id, Binding.external_id).where(
                Binding.connection_id == (connection_id or self.bling_id), Binding.entity == entity))
            return {canonical: external for canonical, external in rows}

    def count(self, model: Any, *where: Any) -> int:
        with self.rt.store.sessions() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def make_world(rt: Runtime, box: BlingSandbox, served: Served, rate: float = FAST) -> World:
    info = box.connection(served.base_url)
    info["options"]["rate_per_second"] = rate
    now = utcnow()
    with rt.store.begin() as s:
        s.add(Tenant(id=TENANT, name="Acme Comércio Ltda", created_at=now))
        s.flush()
        bling = Connection(tenant_id=TENANT, name="erp", platform="bling", options=info["options"],
                           credentials=rt.vault.encrypt(info["credentials"]), credentials_env={},
                           token_expires_at=None, paused_until=None, pause_reason=None, updated_at=now)
        peer = Connection(tenant_id=TENANT, name="pos", platform="pos-peer", options={}, credentials=None,
                          credentials_env={}, token_expires_at=None, paused_until=None, pause_reason=None,
                          updated_at=now)
        s.add_all([bling, peer])
        s.flush()
        return World(rt, box, served, bling.id, peer.id)


def final_consumer_id(box: BlingSandbox) -> int:
    st = box.state
    with st.lock:
        return int(st.final_consumer)


def parents(box: BlingSandbox) -> list[dict[str, Any]]:
    """Products as a person counts them: simple ones and grid parents, not each variation."""
    return [p for p in box.records("products") if not p.get("idProdutoPai") and not p.get("variacao")]


@pytest.fixture
def bling_box() -> Iterator[tuple[BlingSandbox, Served]]:
    box = BlingSandbox(nfe_delay_seconds=0.2, rate_per_second=FAST)
    served = serve(box.app)
    yield box, served
    served.stop()


@pytest.fixture
def world(rt: Runtime, bling_box: tuple[BlingSandbox, Served]) -> World:
    box, served = bling_box
    return make_world(rt, box, served)


CPF_OK = "52998224725"


def customer(document: str | None = CPF_OK, complete: bool = True) -> Customer:
    address = Address(street="Rua Augusta", number="1500", district="Consolação", city="São Paulo", state="SP",
                      zip="01304001") if complete else Address(street="Rua Augusta", city="São Paulo")
    return Customer(name="Maria da Silva", document=document, email="maria@example.com", addresses=[address])


def sale(number: str, skus: list[tuple[str, str]], *, status: str = "Atendido", method: str = "dinheiro",
         buyer: Customer | None = None, store: str | None = None, **extra: Any) -> Sale:
    items = [SaleItem(sku=sku, name=f"Item {sku}", quantity=Decimal("1"), unit_price=Decimal(price))
             for sku, price in skus]
    total = sum((Decimal(p) for _, p in skus), Decimal("0"))
    return Sale(number=number, channel="pos", store=store, issued_at=datetime(2026, 11, 20, 15, 30, tzinfo=UTC),
                customer=buyer, items=items, payments=[Payment(method=method, amount=total)], status=status,
                **extra)
