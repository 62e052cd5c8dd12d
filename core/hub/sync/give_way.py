"""Bulk work in a process gives way to the urgent work running beside it.

The threads of one ``hub run`` share one interpreter lock and, on SQLite, one write lock. A catalog first sync read
as fast as its platform answers keeps both busy page after page, and a sale worked on beside it waits for them at
every step: measured with another tenant's 100,000-product sync at 300 requests/s in the same process
(``hub bench priority --neighbour-products 100000 --neighbour-rate 1000``), a sale took a p95 of 11.7 s from its
read to the ERP, against 2.7 s beside a sync at Bling's own 3 requests/s. Urgent work (:mod:`hub.runner.actors`)
runs inside :func:`urgent_work`; a bulk run calls :func:`give_way` between two pages and pauses while any is
running here, a short while at a time, so the catalog slows down only while sales are being worked on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PAUSE_LIMIT_SECONDS", "PAUSE_SECONDS", "give_way", "urgent_running", "urgent_work"]

PAUSE_SECONDS = 0.025
PAUSE_LIMIT_SECONDS = 0.25
"""A page waits at most this long: urgent work that waits on its own budget must not stop the catalog."""

_lock = threading.Lock()
_running = 0


@contextmanager
def urgent_work() -> Iterator[None]:
    global _running
    with _lock:
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1


def urgent_running() -> int:
    return _running


def give_way(sleep: float = PAUSE_SECONDS, limit: float = PAUSE_LIMIT_SECONDS) -> float:
    """Pause while urgent work runs in this process, at most ``limit`` seconds; return the seconds paused."""
    steps = max(1, round(limit / sleep))
    for step in range(steps):
        if _running == 0:
            return step * sleep
        time.sleep(sleep)
    return steps * sleep
