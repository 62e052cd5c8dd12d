"""The shared paginators (hub.paging) against a small list API served on loopback, and the plugins' reads on them:
every page read once, a repeated page stops the read with a message naming plugin, stream and URL, a page that is
not a list of objects is a clear error, each pass has its own guard, and a read resumes from a given page."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hub.errors import Fatal, PaginationLoop
from hub.paging import (
    Fetched,
    LinkHeaderPaginator,
    NextTokenPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
    paginate,
)
from hub.sandbox import Served, serve
from hub.sync.context import ConnectorContext
from hub.sync.loading import Runtime, make_context
from hub_bling.sandbox import BlingSandbox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.bling.conftest import FAST, World, make_world

SIZE = 5


@dataclass
class Remote:
    """A list API of ``count`` widgets in four paging styles; ``fault`` makes its paging slip or its answer
    malformed."""

    count: int = 23
    fault: str | None = None
    urls: list[str] = field(default_factory=list)

    def items(self, start: int, size: int) -> list[dict[str, Any]]:
        return [{"id": i, "name": f"widget {i}"} for i in range(start, min(start + size, self.count))]

    def app(self) -> Starlette:
        def body(rows: list[dict[str, Any]]) -> Any:
            if self.fault == "object":
                return {"error": "quota exceeded"}
            if self.fault == "scalars":
                return [r["id"] for r in rows]
            return rows

        async def pages(request: Request) -> JSONResponse:
            self.urls.append(str(request.url))
            page, size = int(request.query_params["page"]), int(request.query_params["size"])
            if self.fault == "repeat":
                page = 1
            return JSONResponse(body(self.items((page - 1) * size, size)))

        async def offset(request: Request) -> JSONResponse:
            self.urls.append(str(request.url))
            start, limit = int(request.query_params["offset"]), int(request.query_params["limit"])
            return JSONResponse(body(self.items(0 if self.fault == "repeat" else start, limit)))

        async def token(request: Request) -> JSONResponse:
            self.urls.append(str(request.url))
            start = int(request.query_params.get("token", "t0")[1:])
            following = start + SIZE if start + SIZE < self.count else None
            if self.fault == "repeat" and following:
                following = SIZE
            return JSONResponse({"data": body(self.items(start, SIZE)),
                                 "next": f"t{following}" if following else None})

        async def link(request: Request) -> JSONResponse:
            self.urls.append(str(request.url))
            page = int(request.query_params.get("page", "1"))
            headers = {}
            if page * SIZE < self.count:
                headers["Link"] = f'</link?page={2 if self.fault == "repeat" else page + 1}>; rel="next"'
            return JSONResponse(body(self.items((page - 1) * SIZE, SIZE)), headers=headers)

        return Starlette(routes=[Route("/pages", pages), Route("/offset", offset), Route("/token", token),
                                 Route("/link", link)])


@pytest.fixture
def remote() -> Iterator[tuple[Remote, httpx.Client]]:
    api = Remote()
    served = serve(api.app())
    client = httpx.Client(base_url=served.base_url, timeout=10)
    yield api, client
    client.close()
    served.stop()


def _fetched(response: httpx.Response, records: object, **extra: Any) -> Fetched:
    response.raise_for_status()
    return Fetched(records=records, url=str(response.url), response=response, **extra)


def _reader(kind: str, client: httpx.Client, params: dict[str, Any] | None = None
            ) -> tuple[Callable[[Any], Fetched], Paginator[Any]]:
    """The fetch and paginator a plugin would write for each paging style."""
    extra = params or {}
    if kind == "page":
        def by_page(page: int) -> Fetched:
            response = client.get("/pages", params={**extra, "page": page, "size": SIZE})
            return _fetched(response, response.json())
        return by_page, PageNumberPaginator(SIZE)
    if kind == "offset":
        def by_offset(start: int) -> Fetched:
            response = client.get("/offset", params={**extra, "offset": start, "limit": SIZE})
            return _fetched(response, response.json())
        return by_offset, OffsetPaginator(SIZE)
    if kind == "token":
        def by_token(token: str | None) -> Fetched:
            response = client.get("/token", params={**extra, **({"token": token} if token else {})})
            body = response.json()
            return _fetched(response, body["data"], next_token=body["next"])
        return by_token, NextTokenPaginator()
    def by_link(url: str | None) -> Fetched:
        response = client.get(url or "/link", params=None if url else extra)
        return _fetched(response, response.json())
    return by_link, LinkHeaderPaginator()


KINDS = ["page", "offset", "token", "link"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("count", [23, 20, 0])
def test_each_paginator_reads_every_record_once(remote: tuple[Remote, httpx.Client], kind: str, count: int) -> None:
    api, client = remote
    api.count = count
    fetch, paginator = _reader(kind, client)
    pages = list(paginate(fetch, paginator, plugin="demo", stream="widgets"))
    ids = [r["id"] for p in pages for r in p.records]
    assert ids == list(range(count)), f"{kind}: every widget once, in order (got {ids})"
    assert pages[-1].last and not any(p.last for p in pages[:-1]), f"{kind}: only the final page is the last"
    assert len(api.urls) <= count // SIZE + 1, f"{kind}: no request past the end ({api.urls})"


@pytest.mark.parametrize("kind", KINDS)
def test_a_repeated_page_stops_the_read_naming_plugin_stream_and_url(remote: tuple[Remote, httpx.Client],
                                                                      kind: str) -> None:
    api, client = remote
    api.fault = "repeat"
    fetch, paginator = _reader(kind, client)
    read: list[int] = []
    with pytest.raises(PaginationLoop) as caught:
        for page in paginate(fetch, paginator, plugin="demo", stream="widgets", about="tenant acme"):
            read.extend(r["id"] for r in page.records)
    message = str(caught.value)
    assert "demo widgets (tenant acme)" in message, f"the error names plugin, stream and tenant: {message}"
    assert f"GET {client.base_url}" in message, f"the error names the URL: {message}"
    assert len(api.urls) <= 3, f"{kind}: stopped at the first repeat, not after {len(api.urls)} requests"
    assert read == list(range(len(set(read)))), f"{kind}: no record handed over twice ({read})"


@pytest.mark.parametrize(("fault", "shown"), [("object", "dict {'error': 'quota exceeded'}"),
                                               ("scalars", "a list holding int 0")])
def test_a_page_that_is_not_a_list_of_objects_is_a_clear_error(remote: tuple[Remote, httpx.Client], fault: str,
                                                                 shown: str) -> None:
    api, client = remote
    api.fault = fault
    fetch, paginator = _reader("page", client)
    with pytest.raises(Fatal) as caught:
        list(paginate(fetch, paginator, plugin="demo", stream="widgets"))
    message = str(caught.value)
    assert not isinstance(caught.value, PaginationLoop)
    assert message.startswith("demo widgets: GET ") and api.urls[0] in message, f"plugin, stream, URL: {message}"
    assert shown in message, f"what came back ({shown}) is shown: {message}"
    assert "list of objects" in message and caught.value.fix


@pytest.mark.parametrize("kind", KINDS)
def test_each_pass_has_its_own_guard(remote: tuple[Remote, httpx.Client], kind: str) -> None:
    """Two passes whose filter the server ignores start with the same records: that is not a loop."""
    api, client = remote
    ids: list[int] = []
    for stock_filter in (1, 0):
        fetch, paginator = _reader(kind, client, {"filter": stock_filter})
        ids.extend(r["id"] for page in paginate(fetch, paginator, plugin="demo", stream="widgets")
                   for r in page.records)
    assert ids == list(range(api.count)) * 2, "both passes read in full"


def test_a_read_resumes_from_a_given_page_and_names_each_page(remote: tuple[Remote, httpx.Client]) -> None:
    api, client = remote
    fetch, _ = _reader("page", client)
    pages = list(paginate(fetch, PageNumberPaginator(SIZE, start=3), plugin="demo", stream="widgets"))
    assert [(p.position, p.next) for p in pages] == [(3, 4), (4, 5), (5, None)], "each page says where the next is"
    assert [r["id"] for p in pages for r in p.records] == list(range(10, 23)), "pages 1-2 are not read again"
    assert "page=3" in api.urls[0]


# --- the plugins' reads -------------------------------------------------------------------------------------


def _within(seconds: float, call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread; fail (rather than hang the suite) if it is still paging after ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still paging after {seconds}s: the repeated page was not caught"
    return outcome[0]


def _same_stock_filter(app: Any) -> Any:
    """Bling answering every ``filtroSaldoEstoque`` pass as the first one (an ASGI layer in front of the sandbox)."""

    async def rewritten(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith(("/produtos", "/estoques/saldos")):
            scope = {**scope, "query_string": re.sub(rb"filtroSaldoEstoque=[02]", b"filtroSaldoEstoque=1",
                                                     scope["query_string"])}
        await app(scope, receive, send)

    return rewritten


@pytest.fixture
def bling(rt: Runtime) -> Iterator[Callable[..., tuple[World, ConnectorContext]]]:
    opened: list[tuple[Served, ConnectorContext]] = []

    def open_world(page_size: int = 100, wrap: Callable[[Any], Any] = lambda app: app
                   ) -> tuple[World, ConnectorContext]:
        box = BlingSandbox(nfe_delay_seconds=0.2, rate_per_second=FAST)
        served = serve(wrap(box.app))
        world = make_world(rt, box, served)
        ctx = make_context(world.rt, world.connection(), None, "products")
        ctx.options["page_size"] = page_size
        opened.append((served, ctx))
        return world, ctx

    yield open_world
    for served, ctx in opened:
        ctx.close()
        served.stop()


def test_bling_categories_stop_on_a_repeated_page(bling: Callable[..., tuple[World, ConnectorContext]]) -> None:
    from hub_bling import catalog

    world, ctx = bling(page_size=5)
    world.box.seed("categories", 25)
    world.box.inject_fault("repeat_page", times=10**6)
    error = _within(15, lambda: catalog.all_categories(ctx))
    assert isinstance(error, PaginationLoop), f"a repeated page of categories raises PaginationLoop, got {error!r}"
    assert "bling categories (tenant acme, connection erp)" in str(error), str(error)


def test_bling_account_lookups_stop_on_a_repeated_page(bling: Callable[..., tuple[World, ConnectorContext]]) -> None:
    from hub_bling import sales

    world, ctx = bling()
    world.box.seed("payment_methods", 120)
    world.box.inject_fault("repeat_page", times=10**6)
    error = _within(15, lambda: sales.payment_methods(ctx))
    assert isinstance(error, PaginationLoop), f"a repeated page of payment methods raises PaginationLoop: {error!r}"
    assert "bling payment_methods (tenant acme, connection erp)" in str(error), str(error)


def test_bling_stock_passes_starting_alike_are_not_a_loop(
        bling: Callable[..., tuple[World, ConnectorContext]]) -> None:
    from hub_bling import catalog

    world, ctx = bling(wrap=_same_stock_filter)
    world.box.seed("stock", 6)
    pages = list(catalog.pull_stock(ctx, None))
    assert len(pages) == 3, "one page per filtroSaldoEstoque pass, none refused as a repeat of the previous pass"
    assert all(page.records for page in pages), "each pass read its balances"


def test_cplug_lookups_stop_on_a_repeated_page() -> None:
    from hub_cplug import client
    from hub_cplug.sandbox import CPlugSandbox

    from tests.cplug_pos.test_cplug_connector import connect

    box = CPlugSandbox()
    with serve(box.app) as served:
        ctx = connect(box, served.base_url, page_size=2)
        try:
            box.seed("sellers", 7)
            assert len(list(client.list_all(ctx, "/api/v3/sellers", "sellers"))) == 7, "every seller, once"
            box.inject_fault("repeat_page", 10**6)
            error = _within(15, lambda: list(client.list_all(ctx, "/api/v3/sellers", "sellers")))
        finally:
            ctx.close()
    assert isinstance(error, PaginationLoop), f"a repeated page of sellers raises PaginationLoop, got {error!r}"
    assert "cplug sellers (tenant loja-demo, connection pdv)" in str(error), str(error)
