"""The webhook receiver is on the internet: a sender cannot make it read, or hold in memory, more than 1 MB."""

from __future__ import annotations

import select
import socket
import time
import tracemalloc

from hub import webhooks
from hub.sandbox import serve

BIG = 200_000_000


def _status(sock: socket.socket) -> int:
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_a_declared_200_mb_body_is_refused_before_reading_it(rt):
    with serve(webhooks.app(rt)) as receiver:
        host, port = receiver.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"POST /webhooks/acme/erp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {BIG}\r\n\r\n".encode() + b"{")
            try:
                status = _status(sock)
            except TimeoutError:
                status = 0
    assert status == 413, f"expected 413 at once for a declared {BIG} byte body (got {status or 'no answer'})"
    assert time.monotonic() - started < 2, "the receiver waited for the body before refusing it"


def test_a_chunked_body_over_the_cap_is_refused_with_bounded_memory(rt):
    chunk = b"x" * 65536
    sent = 0
    with serve(webhooks.app(rt)) as receiver:
        host, port = receiver.base_url.removeprefix("http://").split(":")
        tracemalloc.start()
        try:
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(b"POST /webhooks/acme/erp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                status, reset = 0, False
                try:
                    while sent < 30_000_000 and not select.select([sock], [], [], 0)[0]:
                        sock.sendall(frame)
                        sent += len(chunk)
                    if sent >= 30_000_000:
                        sock.sendall(b"0\r\n\r\n")
                    status = _status(sock)
                except OSError:
                    # The receiver answered 413 and closed while this client was still sending: the kernel then
                    # resets the connection, and the answer may be lost with it (it happens under load).
                    reset = True
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status == 413 or (reset and sent < 30_000_000), \
        f"expected 413 (or the connection cut) for a chunked body past 1 MB, got {status or 'no answer'}"
    assert peak < 8_000_000, f"the receiver held {peak / 1e6:.1f} MB for a refused body (cap 1 MB)"
    assert sent < 30_000_000, "the receiver read the whole 30 MB body before refusing it"
