"""The collector benchmark's load generator: pre-built HTTP/1.1 requests over raw sockets.

A generator process only sends bytes it was given and reads the answers: no signing, no
JSON, no HTTP library (``requests`` costs more per call than the collector does). Each
process runs one ``selectors`` loop over many connections, records every request's
latency (from its first byte, or from the connect for a new connection, to the end of
the answer) and status, and reports its own CPU time so the bench can show that the
generator was not the bottleneck. Every wait is bounded by :data:`DEADLINE_S`.
"""

from __future__ import annotations

import os
import re
import resource
import selectors
import socket
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

DEADLINE_S = 120.0  # a phase that has not finished by then is abandoned (counted as errors)
MAX_HEADER_BYTES = 16 * 1024
RECV_BYTES = 65536
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)\r\n", re.IGNORECASE)


@dataclass
class PhaseResult:
    """What one generator process saw."""

    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0  # connections refused, reset or timed out: requests without an answer
    started: float = 0.0  # time.monotonic() of the first byte sent
    finished: float = 0.0  # ... of the last answer read
    cpu_s: float = 0.0  # the generator's own user + system time during the phase


class _Conn:
    """One connection and the requests it still has to send, in order."""

    __slots__ = ("buffer", "pending", "sent_at", "sock", "waiting")

    def __init__(self, sock: socket.socket, pending: deque[bytes]) -> None:
        self.sock = sock
        self.pending = pending
        self.buffer = b""
        self.sent_at = 0.0
        self.waiting = False  # a request is out, its answer not read yet

    @property
    def unanswered(self) -> int:
        return int(self.waiting) + len(self.pending)


def _answer(buffer: bytes) -> tuple[int, int] | None:
    """``(status, length of the whole answer)`` once ``buffer`` holds a complete one."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEADER_BYTES:
            raise ConnectionError("an answer's header is too long")
        return None
    length = _CONTENT_LENGTH.search(buffer, 0, end + 2)
    if length is None:
        raise ConnectionError("an answer without Content-Length")
    total = end + 4 + int(length[1])
    return (int(buffer[9:12]), total) if len(buffer) >= total else None


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _connect(port: int, *, blocking: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if blocking:
        sock.settimeout(DEADLINE_S)
        sock.connect(("127.0.0.1", port))
    else:
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
    return sock


def sustained(port: int, queues: Sequence[Sequence[bytes]], cpus: set[int], go: Event,
              out: Connection) -> None:  # fmt: skip
    """Send each queue's requests in order over one persistent connection per queue."""
    os.sched_setaffinity(0, cpus)
    result = PhaseResult()
    conns = [_Conn(_connect(port, blocking=True), deque(q)) for q in queues if q]
    go.wait(DEADLINE_S)
    selector = selectors.DefaultSelector()
    cpu0 = _cpu()
    result.started = time.monotonic()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        _send_next(conn, result)
    _loop(selector, len(conns), result)
    result.cpu_s = _cpu() - cpu0
    out.send(result)


def burst(port: int, requests: Sequence[bytes], cpus: set[int], go: Event, out: Connection) -> None:
    """Open a new connection for every request, all at once: each endpoint its own."""
    os.sched_setaffinity(0, cpus)
    result = PhaseResult()
    go.wait(DEADLINE_S)
    selector = selectors.DefaultSelector()
    cpu0 = _cpu()
    result.started = time.monotonic()
    for request in requests:
        conn = _Conn(_connect(port, blocking=False), deque([request]))
        conn.sent_at = time.monotonic()
        selector.register(conn.sock, selectors.EVENT_WRITE, conn)
    _loop(selector, len(requests), result)
    result.cpu_s = _cpu() - cpu0
    out.send(result)


def _send_next(conn: _Conn, result: PhaseResult, *, stamp: bool = True) -> None:
    request = conn.pending.popleft()
    if stamp:
        conn.sent_at = time.monotonic()
    conn.waiting = True
    conn.sock.sendall(request)


def _loop(selector: selectors.BaseSelector, open_count: int, result: PhaseResult) -> None:
    """Run until every connection has had all its answers (or :data:`DEADLINE_S` passes)."""
    deadline = time.monotonic() + DEADLINE_S
    while open_count and time.monotonic() < deadline:
        for key, events in selector.select(timeout=1.0):
            conn: _Conn = key.data
            try:
                if events & selectors.EVENT_WRITE:  # a new connection is up: send its request
                    conn.sock.setblocking(True)
                    selector.modify(conn.sock, selectors.EVENT_READ, conn)
                    _send_next(conn, result, stamp=False)
                    continue
                _read(conn, result)
            except (OSError, ConnectionError, ValueError):
                result.errors += conn.unanswered
                conn.pending.clear()
                conn.waiting = False
            if not conn.unanswered:
                selector.unregister(conn.sock)
                conn.sock.close()
                open_count -= 1
    for key in list(selector.get_map().values()):  # abandoned at the deadline
        result.errors += key.data.unanswered
        key.data.sock.close()


def _read(conn: _Conn, result: PhaseResult) -> None:
    """Read what has arrived; record each complete answer and send the next request."""
    chunk = conn.sock.recv(RECV_BYTES)
    if not chunk:
        raise ConnectionError("closed by the collector")
    conn.buffer += chunk
    while (found := _answer(conn.buffer)) is not None:
        status, size = found
        now = time.monotonic()
        result.latencies.append(now - conn.sent_at)
        result.statuses[status] += 1
        result.finished = now
        conn.waiting = False
        conn.buffer = conn.buffer[size:]
        if conn.pending:
            _send_next(conn, result)
