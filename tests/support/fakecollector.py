"""A small collector on 127.0.0.1 that keeps the reporting contract (docs/reporting.md).

Written apart from patchd's own code on purpose — its DSSE check, its JSON handling —
so a mistake in the agent cannot hide behind the same mistake here. It enrols endpoints
with tokens and pins their keys; for each report it checks the signature with the pinned
key over DSSE's PAE *before* parsing the payload, then enforces ``seq``: a new, higher
seq is stored (202), the same seq with the same bytes is a duplicate (200), anything else
is refused (409) and flagged. Tests script faults for the next report requests (a status
with headers such as 429 + Retry-After, a dropped connection, a hang) and can stop the
collector and start it again on the same port, as an outage would.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

REPORT_TYPE = "application/vnd.patchd.report+json"
MAX_BODY_BYTES = 1024 * 1024
HANG_LIMIT_S = 60.0  # a hanging answer ends by itself after this, or when the collector stops
SHUTDOWN_POLL_S = 0.05


@dataclass(frozen=True)
class Fault:
    """What to do with the next report request instead of judging it.

    ``kind``: ``status`` (answer ``status`` with ``headers``), ``drop`` (read the request,
    close the connection without an answer) or ``hang`` (answer nothing until the client
    gives up or the collector stops).
    """

    kind: str
    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Endpoint:
    endpoint_id: str
    public_key: bytes
    hostname: str
    reports: dict[int, bytes] = field(default_factory=dict)  # seq → payload bytes

    @property
    def seqs(self) -> list[int]:
        return sorted(self.reports)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding, written out from the specification."""
    t = payload_type.encode()
    return (
        b"DSSEv1 "
        + str(len(t)).encode()
        + b" "
        + t
        + b" "
        + str(len(payload)).encode()
        + b" "
        + payload
    )


class FakeCollector:
    """The collector, serving in a thread until :meth:`stop` (or the ``with`` block ends)."""

    def __init__(
        self,
        *,
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.tls = tls
        self.connections = 0  # TCP connections accepted: the agent should reuse one
        self.tokens: dict[str, int] = {}  # token → uses left
        self.endpoints: dict[str, Endpoint] = {}
        self.faults: list[Fault] = []
        self.answers: list[tuple[int | None, int]] = []  # (seq if parsed, status) per report POST
        self.flagged: list[tuple[str, int, str]] = []  # (endpoint, seq, why) of refused reports
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on the same port."""
        self.stopping.clear()
        server = _Server(("127.0.0.1", self._port), _handler_for(self))
        server.collector = self
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(SHUTDOWN_POLL_S,), name="fake-collector", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the port (connections in progress end)."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeCollector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    # -- scripting -----------------------------------------------------------------------

    def add_token(self, uses: int = 1) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = uses
        return token

    def script(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def only_endpoint(self) -> Endpoint:
        (endpoint,) = self.endpoints.values()
        return endpoint

    # -- the contract ----------------------------------------------------------------------

    def enroll(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = json.loads(body)
            token, public_b64, hostname = (
                request["token"],
                request["public_key"],
                request["hostname"],
            )
            public_key = base64.b64decode(public_b64, validate=True)
        except (ValueError, KeyError, TypeError):
            return 422, {"error": "malformed enrolment"}
        if len(public_key) != 32 or not isinstance(hostname, str):
            return 422, {"error": "malformed enrolment"}
        with self.lock:
            if self.tokens.get(token, 0) <= 0:
                return 401, {"error": "unknown, expired or used token"}
            for endpoint in self.endpoints.values():
                if endpoint.public_key == public_key:
                    return 409, {"error": "this key is already enrolled"}
            self.tokens[token] -= 1
            endpoint_id = "ep-" + secrets.token_hex(8)
            self.endpoints[endpoint_id] = Endpoint(endpoint_id, public_key, hostname)
        return 201, {"endpoint_id": endpoint_id}

    def report(self, body: bytes) -> tuple[int, int | None]:  # noqa: PLR0911 - one per answer
        """(status, seq) for a report envelope: verify, then parse, then judge the seq."""
        try:
            envelope = json.loads(body)
            (signature,) = envelope["signatures"]
            keyid, sig = signature["keyid"], base64.b64decode(signature["sig"], validate=True)
            payload = base64.b64decode(envelope["payload"], validate=True)
            payload_type = envelope["payloadType"]
        except (ValueError, KeyError, TypeError):
            return 400, None
        if payload_type != REPORT_TYPE:
            return 422, None
        with self.lock:
            endpoint = self.endpoints.get(keyid)
        if endpoint is None:
            return 401, None
        try:
            Ed25519PublicKey.from_public_bytes(endpoint.public_key).verify(
                sig, pae(payload_type, payload)
            )
        except InvalidSignature:
            return 401, None
        try:  # only now, with the signature good, is the payload parsed
            document = json.loads(payload)
            seq = document["seq"]
        except (ValueError, KeyError, TypeError):
            return 422, None
        if (
            document.get("endpoint_id") != keyid
            or not isinstance(seq, int)
            or isinstance(seq, bool)
        ):
            return 422, None
        return self._store(endpoint, seq, payload), seq

    def _store(self, endpoint: Endpoint, seq: int, payload: bytes) -> int:
        with self.lock:
            if seq in endpoint.reports:
                if endpoint.reports[seq] == payload:
                    return 200
                self.flagged.append((endpoint.endpoint_id, seq, "same seq, other bytes"))
                return 409
            if endpoint.reports and seq <= max(endpoint.reports):
                self.flagged.append((endpoint.endpoint_id, seq, "seq at or below one stored"))
                return 409
            endpoint.reports[seq] = payload
            return 202

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    collector: FakeCollector

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        with self.collector.lock:
            self.collector.connections += 1
        # Without this, a reused connection waits on Nagle + delayed ACK for each answer.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


def _handler_for(collector: FakeCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the agent reuses its connection

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > collector.max_body_bytes:
                self.close_connection = True  # reading stops at the limit
                self._answer(413, {"error": "too large"})
                return
            body = self.rfile.read(length)
            if self.path == "/v1/enroll":
                self._answer(*collector.enroll(body))
            elif self.path == "/v1/reports":
                self._report(body)
            else:
                self._answer(404, {"error": "no such route"})

        def _report(self, body: bytes) -> None:
            fault = collector.next_fault()
            if fault is not None and fault.kind == "drop":
                self.close_connection = True
                return
            if fault is not None and fault.kind == "hang":
                collector.stopping.wait(HANG_LIMIT_S)
                self.close_connection = True
                return
            if fault is not None:
                with collector.lock:
                    collector.answers.append((None, fault.status))
                self._answer(fault.status, {"error": "scripted"}, fault.headers)
                return
            status, seq = collector.report(body)
            with collector.lock:
                collector.answers.append((seq, status))
            self._answer(status, {"status": status})

        def _answer(
            self, status: int, document: Mapping[str, Any], headers: Mapping[str, str] | None = None
        ) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

    return Handler
