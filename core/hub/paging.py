"""Shared paginators for the plugins' list reads: page number, offset, next token and the ``Link`` header.

A plugin supplies ``fetch(position) -> Fetched`` (one request, in its own error taxonomy) and a paginator that knows
where the next page is; :func:`paginate` walks the pages and does what every hand-written loop used to forget:

- shape: a page must be a list of objects, or the read stops with a :class:`~hub.errors.Fatal` that names the
  plugin, the stream, the URL and what came back (never an ``AttributeError`` three calls later);
- the repeated-page guard: a page whose records equal those of an earlier page of the same pass, or a next token
  or ``Link`` that points back to a page already read, raises :class:`~hub.errors.PaginationLoop`. Records are
  compared, not positions: a server whose paging slipped answers page 2 with page 1 and the page number alone
  cannot see it. Each call of :func:`paginate` is one pass with its own guard, so two passes over different
  filters may legitimately start with the same records;
- the end: an empty page, a short page (page number and offset with a known size), no next token or link, or
  ``Fetched.last``.

Each yielded :class:`Paged` carries its position and the next one, so a caller can store where to resume and start
a later run there (``PageNumberPaginator(size, start=page)``). The design follows the Meltano Singer SDK's
paginators (``BaseAPIPaginator.advance`` with its loop check), with records compared as well as positions.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from hub.errors import Fatal, PaginationLoop

__all__ = [
    "Fetched", "LinkHeaderPaginator", "NextTokenPaginator", "OffsetPaginator", "PageNumberPaginator", "Paged",
    "Paginator", "check_page", "paginate",
]

P = TypeVar("P")
Record = dict[str, Any]

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 80, 80, 3, 4, 2


@dataclass(frozen=True)
class Fetched:
    """One page as the plugin's fetch got it.

    ``records`` is whatever the answer holds where the list should be (checked by :func:`paginate`); ``url`` names
    the request in errors. ``last`` is the API's own "no more pages" (e.g. ``meta.last_page``); ``next_token`` is
    for :class:`NextTokenPaginator` and ``response`` for :class:`LinkHeaderPaginator`."""

    records: object
    url: str
    last: bool = False
    next_token: str | None = None
    response: httpx.Response | None = None


@dataclass(frozen=True)
class Paged(Generic[P]):
    """A checked page: its records, where it was read (``position``) and where the next one is (None: the last)."""

    records: list[Record]
    position: P
    next: P | None
    url: str

    @property
    def last(self) -> bool:
        return self.next is None


class Paginator(ABC, Generic[P]):
    """Where the current page is and how to find the next one. One instance reads one pass."""

    def __init__(self, start: P) -> None:
        self.current: P = start
        self.finished = False

    @abstractmethod
    def following(self, page: Fetched, records: list[Record]) -> P | None:
        """The next position after ``page`` (already checked: ``records`` is its list), or None when it is the
        last."""

    def advance(self, page: Fetched, records: list[Record]) -> None:
        following = None if page.last or not records else self.following(page, records)
        if following is None:
            self.finished = True
        else:
            self.current = following


class PageNumberPaginator(Paginator[int]):
    """``?page=N``. ``start`` is the first page (0 for zero-based APIs, or the page a resumed run stopped at).

    With ``size`` (the page size asked for) a shorter page is the last; without it, only an empty page or
    ``Fetched.last`` ends the pass (for APIs that may cap the size below what was asked)."""

    def __init__(self, size: int | None = None, *, start: int = 1) -> None:
        super().__init__(start)
        self.size = size

    def following(self, page: Fetched, records: list[Record]) -> int | None:
        if self.size is not None and len(records) < self.size:
            return None
        return self.current + 1


class OffsetPaginator(Paginator[int]):
    """``?offset=N&limit=L``: the next offset is this one plus the records read; a short page is the last."""

    def __init__(self, limit: int, *, start: int = 0) -> None:
        super().__init__(start)
        self.limit = limit

    def following(self, page: Fetched, records: list[Record]) -> int | None:
        if len(records) < self.limit:
            return None
        return self.current + len(records)


class NextTokenPaginator(Paginator[str | None]):
    """An opaque token from each answer (``Fetched.next_token``); the first request has none (or ``start``)."""

    def __init__(self, start: str | None = None) -> None:
        super().__init__(start)

    def following(self, page: Fetched, records: list[Record]) -> str | None:
        return page.next_token or None


class LinkHeaderPaginator(Paginator[str | None]):
    """RFC 8288 ``Link: <url>; rel="next"`` from ``Fetched.response``; positions are absolute URLs (the first
    request's is None: the plugin's own first URL)."""

    def __init__(self, start: str | None = None) -> None:
        super().__init__(start)

    def following(self, page: Fetched, records: list[Record]) -> str | None:
        if page.response is None:
            raise TypeError("LinkHeaderPaginator needs Fetched.response to read the Link header")
        target = page.response.links.get("next", {}).get("url")
        return str(page.response.url.join(target)) if target else None


def check_page(page: Fetched, *, plugin: str, stream: str, about: str = "") -> list[Record]:
    """The page's records if they are a list of objects; otherwise a :class:`~hub.errors.Fatal` naming plugin,
    stream, URL and what came back. :func:`paginate` calls it on every page; a single-page read can too."""
    where = f" ({about})" if about else ""
    records = page.records
    if isinstance(records, list) and all(isinstance(r, dict) for r in records):
        return records
    if isinstance(records, list):
        bad = next(r for r in records if not isinstance(r, dict))
        got = f"a list holding {type(bad).__name__} {_short.repr(bad)}"
    else:
        got = f"{type(records).__name__} {_short.repr(records)}"
    raise Fatal(f"{plugin} {stream}{where}: GET {page.url} answered {got} where a list of objects was expected",
                fix=f"The {plugin} API changed its list format or answered an error page with status 200; report it "
                    f"with this URL, and update the plugin if the format changed.")


def _fingerprint(records: list[Record]) -> bytes:
    text = json.dumps(records, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def paginate(fetch: Callable[[P], Fetched], paginator: Paginator[P], *, plugin: str, stream: str,
             about: str = "") -> Iterator[Paged[P]]:
    """Every page of one pass, checked (see the module's doc). ``about`` adds context to errors, e.g.
    ``"tenant acme, connection erp"``."""
    where = f" ({about})" if about else ""
    seen_pages: dict[bytes, str] = {}
    seen_positions = {paginator.current}
    while not paginator.finished:
        position = paginator.current
        page = fetch(position)
        records = check_page(page, plugin=plugin, stream=stream, about=about)
        if records:
            mark = _fingerprint(records)
            earlier = seen_pages.get(mark)
            if earlier is not None:
                raise PaginationLoop(f"{plugin} {stream}{where}: the same page came back twice (GET {page.url} "
                                     f"answered the records of GET {earlier}); stopped instead of looping")
            seen_pages[mark] = page.url
        paginator.advance(page, records)
        following = None if paginator.finished else paginator.current
        if following is not None and following in seen_positions:
            raise PaginationLoop(f"{plugin} {stream}{where}: the same page was asked for twice (GET {page.url} "
                                 f"points back to {following!r}); stopped instead of looping")
        seen_positions.add(following)
        yield Paged(records=records, position=position, next=following, url=page.url)
