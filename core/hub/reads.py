"""One read per item, a few at a time: the detail of each product a list page named, say.

A list page names a hundred records whose details are one request each. Made one after the other, each request
leaves the hub idle while the platform answers; :func:`read_each` keeps a few in flight instead, so the answers
arrive while the previous ones are parsed and mapped. The platform sees no more requests than before, and no faster
than the connection's budget lets them go: every call still waits for its slot (``ctx.throttle``), so at Bling's 3
requests/s nothing changes but the hub's idle time.

Results come back in the items' order. The first failure, in that order, is raised as the loop would have raised
it, once the reads already in flight have ended; the reads not yet started are not made.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["READS_AT_ONCE", "read_each"]

T = TypeVar("T")
R = TypeVar("R")

READS_AT_ONCE = 2
"""Reads in flight by default: enough to cover the platform's answer time with the hub's own work on a page."""


def read_each(items: Iterable[T], read: Callable[[T], R], *, at_once: int = READS_AT_ONCE) -> list[R]:
    """``[read(item) for item in items]``, with up to ``at_once`` reads in flight: the calling thread and
    ``at_once - 1`` helpers (each in the caller's context variables, so a token renewal is recorded in the caller's
    run) take the next item as each finishes. ``read`` must be safe to call from several threads: a call through
    ``ctx.http`` or an :class:`hub.ApiClient` is; keep mapping, caches and ``ctx.scratch`` in the caller, after the
    reads."""
    todo = list(items)
    if at_once <= 1 or len(todo) <= 1:
        return [read(item) for item in todo]
    results: list[Any] = [None] * len(todo)
    failures: dict[int, BaseException] = {}
    turns = iter(range(len(todo)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if failures:
                    return  # the reads not yet started are not made
                index = next(turns, None)
            if index is None:
                return
            try:
                results[index] = read(todo[index])
            except BaseException as exc:  # raised in the caller, in the items' order
                with lock:
                    failures[index] = exc
                return

    helpers = [threading.Thread(target=contextvars.copy_context().run, args=(work,), name="hub-read", daemon=True)
               for _ in range(min(at_once, len(todo)) - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    if failures:
        raise failures[min(failures)]
    return results

