"""Fetching policies from a real collector on 127.0.0.1 (and a real TLS one), through a real gate.

The collector serves canned responses by path, records each request, and counts the bytes
it manages to send, so a test can show that a fetch stopped reading. Policies and keys are
the simulator's; the gate is a real one on a temporary state directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from patchd.config import PolicySettings
from patchd.errors import ConfigError, ExitCode, TemporaryFailure, TrustError
from patchd.policy.fetch import MAX_REDIRECTS, MAX_RESPONSE_BYTES, fetch_policy
from patchd.policy.reload import PolicyReloader, ReloadOutcome
from patchd.signing.dsse import POLICY_PAYLOAD_TYPE, TRUST_ROOT_PAYLOAD_TYPE, Envelope
from tests.policy.simulator import Endpoint, PolicySimulator, endpoint_with_simulator

WAIT_S = 10.0
TOKEN = "s3cret-t0ken"
STREAM_LIMIT_BYTES = 256 * 1024 * 1024  # what an endless response sends at most
STREAM_CHUNK_BYTES = 64 * 1024
SHUTDOWN_POLL_S = 0.05  # how often the collector's loop checks for shutdown


@dataclass(frozen=True)
class Canned:
    """A response: a status, headers and a body; or, with ``stream``, bytes until the
    client hangs up (no Content-Length unless ``declared``); or, with ``stall``, nothing
    until the collector closes."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: bool = False
    declared: int | None = None
    stall: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True


class Collector:
    """An HTTP server on 127.0.0.1 serving :class:`Canned` responses by path, until closed."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Canned] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sent_bytes = 0
        self.stream_ended = threading.Event()
        self.closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,), name="collector"
        )
        self._thread.start()

    def url(self, path: str, *, scheme: str = "http") -> str:
        host, port = self._server.server_address[:2]
        return f"{scheme}://{host!s}:{port}{path}"

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Collector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                collector.requests.append((self.path, dict(self.headers.items())))
                canned = collector.routes.get(self.path.split("?")[0], Canned(404, b"nothing"))
                if canned.stall:
                    collector.closing.wait(WAIT_S)
                    return
                self.send_response(canned.status)
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                if canned.stream:
                    self._stream(canned)
                    return
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            def _stream(self, canned: Canned) -> None:
                if canned.declared is not None:
                    self.send_header("Content-Length", str(canned.declared))
                self.end_headers()
                chunk = b"x" * STREAM_CHUNK_BYTES
                try:
                    while collector.sent_bytes < STREAM_LIMIT_BYTES:
                        self.wfile.write(chunk)
                        collector.sent_bytes += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up: what a fetch over its cap must do
                finally:
                    collector.stream_ended.set()

        return Handler


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[PolicySimulator, Endpoint]]:
    yield from endpoint_with_simulator(tmp_path / "state")


def envelope_of(sim: PolicySimulator, version: int, signers: tuple[int, ...] = (0, 1)) -> bytes:
    policy = sim.policy(version, signers=signers)
    return Envelope(POLICY_PAYLOAD_TYPE, policy.data, policy.signatures).to_json()


def reloader_for(ep: Endpoint, *urls: str) -> PolicyReloader:
    return PolicyReloader(ep.gate, PolicySettings(urls=urls))


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- the good path --------------------------------------------------------------------


def test_a_served_envelope_is_accepted_through_the_reloader(
    world: tuple[PolicySimulator, Endpoint], collector: Collector
) -> None:
    sim, ep = world
    served = envelope_of(sim, 1)
    collector.routes["/v1/policy"] = Canned(body=served)
    url = collector.url(f"/v1/policy?token={TOKEN}")
    shown = collector.url("/v1/policy")

    outcomes = reloader_for(ep, url).fetch_all()

    assert outcomes == [ReloadOutcome(shown, True, 1, "version 1 accepted")]
    active = ep.gate.active()
    assert active is not None
    assert active.loaded.data == Envelope.from_json(served).payload
    assert [(e["source"], e["version"]) for e in ep.events("accepted")] == [(shown, 1)]
    (path, headers) = collector.requests[0]
    assert path == f"/v1/policy?token={TOKEN}"  # the token travels; it is never shown
    assert headers["Accept"] == "application/json"
    assert headers["Accept-Encoding"] == "identity"


def test_the_same_policy_fetched_again_changes_nothing(
    world: tuple[PolicySimulator, Endpoint], collector: Collector
) -> None:
    sim, ep = world
    collector.routes["/v1/policy"] = Canned(body=envelope_of(sim, 1))
    reloader = reloader_for(ep, collector.url("/v1/policy"))
    reloader.fetch_all()
    before = ep.snapshot()

    (outcome,) = reloader.fetch_all()

    assert outcome.accepted
    assert outcome.reason == "version 1 is already in force"
    assert ep.snapshot() == before
    assert len(ep.events("accepted")) == 1
    assert ep.events("refused") == []


def test_fetch_policy_returns_the_envelope(
    world: tuple[PolicySimulator, Endpoint], collector: Collector
) -> None:
    sim, _ = world
    served = envelope_of(sim, 1)
    collector.routes["/v1/policy"] = Canned(body=served)

    assert fetch_policy(collector.url("/v1/policy")) == Envelope.from_json(served)


def test_a_redirect_on_the_same_host_is_followed(
    world: tuple[PolicySimulator, Endpoint], collector: Collector
) -> None:
    sim, _ = world
    collector.routes["/v1/policy"] = Canned(body=envelope_of(sim, 1))
    collector.routes["/old"] = Canned(302, headers={"Location": "/v1/policy"})

    assert fetch_policy(collector.url("/old")).payload_type == POLICY_PAYLOAD_TYPE
    assert [p for p, _ in collector.requests] == ["/old", "/v1/policy"]


# --- what a collector or network can do wrong -----------------------------------------


def test_an_endless_body_is_cut_off_at_the_cap(collector: Collector) -> None:
    collector.routes["/v1/policy"] = Canned(stream=True)

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(collector.url("/v1/policy"))

    assert caught.value.message.endswith(f"the response is larger than {MAX_RESPONSE_BYTES} bytes")
    assert collector.stream_ended.wait(WAIT_S)
    # Socket buffers hold a few MiB at most; the server would have sent 256 MiB.
    assert collector.sent_bytes < 32 * 1024 * 1024


def test_a_declared_huge_body_is_refused_before_reading_it(collector: Collector) -> None:
    collector.routes["/v1/policy"] = Canned(stream=True, declared=STREAM_LIMIT_BYTES)

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(collector.url("/v1/policy"))

    assert caught.value.message.endswith(
        f"the response declares more than {MAX_RESPONSE_BYTES} bytes"
    )
    assert collector.stream_ended.wait(WAIT_S)
    assert collector.sent_bytes < 32 * 1024 * 1024


def test_a_smaller_cap_is_honoured(collector: Collector) -> None:
    collector.routes["/v1/policy"] = Canned(body=b"{" + b" " * 2000 + b"}")

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(collector.url("/v1/policy"), max_bytes=1000)

    assert caught.value.message.endswith("the response declares more than 1000 bytes")


@pytest.mark.parametrize(
    ("status", "shown"),
    [(404, "HTTP 404 Not Found"), (500, "HTTP 500 Internal Server Error"), (599, "HTTP 599")],
    ids=["404", "500", "unknown-status"],
)
def test_an_http_error_is_a_temporary_failure_naming_host_and_path_only(
    status: int,
    shown: str,
    world: tuple[PolicySimulator, Endpoint],
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, ep = world
    collector.routes["/v1/policy"] = Canned(status, b"server-said-" + TOKEN.encode())
    url = collector.url(f"/v1/policy?token={TOKEN}")

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(url)
    (outcome,) = reloader_for(ep, url).fetch_all()

    error = caught.value
    assert error.exit_code is ExitCode.TEMPORARY
    assert int(error.exit_code) == 75
    assert error.message == (
        f"fetching the policy from {collector.url('/v1/policy')} failed: {shown}"
    )
    assert TOKEN not in str(error)
    assert "server-said" not in str(error)
    assert not outcome.accepted
    assert outcome.reason == error.message
    assert TOKEN not in caplog.text
    assert ep.events("refused") == []  # not the gate's business: nothing was offered


def test_connection_refused_is_a_temporary_failure() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/policy?token={TOKEN}"

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(url)

    assert caught.value.message == (
        f"fetching the policy from {url.split('?', maxsplit=1)[0]} failed: cannot connect: Connection refused"
    )
    assert TOKEN not in str(caught.value)


def test_a_silent_server_times_out(collector: Collector) -> None:
    collector.routes["/v1/policy"] = Canned(stall=True)

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(collector.url("/v1/policy"), timeout_s=0.5)

    assert caught.value.message.endswith("failed: no answer within 0.5 s")
    assert caught.value.hint == "the policy in force stays; the next fetch tries again"


def test_a_redirect_away_from_https_is_refused(collector: Collector) -> None:
    collector.routes["/v1/policy"] = Canned(
        302, headers={"Location": f"http://collector.example/v1/policy?token={TOKEN}"}
    )

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(collector.url("/v1/policy"))

    assert caught.value.message.endswith(
        "failed: redirected to a URL that must use https (plain http only to 127.0.0.1,"
        " localhost or ::1)"
    )
    assert TOKEN not in str(caught.value)
    assert len(collector.requests) == 1


def test_a_redirect_loop_ends(collector: Collector) -> None:
    collector.routes["/loop"] = Canned(302, headers={"Location": "/loop"})

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(collector.url("/loop"))

    assert caught.value.message.endswith(f"failed: more than {MAX_REDIRECTS} redirects")
    assert len(collector.requests) == MAX_REDIRECTS + 1


def test_a_compressed_body_is_refused(collector: Collector) -> None:
    collector.routes["/v1/policy"] = Canned(body=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})

    with pytest.raises(TemporaryFailure, match="compressed"):
        fetch_policy(collector.url("/v1/policy"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>captive portal</html>", "not valid JSON"),
        (b'{"payload": "", "payloadType": "x"}', "fields missing ['signatures']"),
        (
            Envelope(TRUST_ROOT_PAYLOAD_TYPE, b"{}", ()).to_json(),
            f"served a {TRUST_ROOT_PAYLOAD_TYPE!r} envelope, not a policy",
        ),
    ],
    ids=["html", "not-an-envelope", "wrong-payload-type"],
)
def test_a_body_that_is_not_a_policy_envelope_is_a_trust_error(
    body: bytes,
    message: str,
    world: tuple[PolicySimulator, Endpoint],
    collector: Collector,
) -> None:
    _, ep = world
    collector.routes["/v1/policy"] = Canned(body=body)
    url = collector.url("/v1/policy")

    with pytest.raises(TrustError) as caught:
        fetch_policy(url)
    (outcome,) = reloader_for(ep, url).fetch_all()

    assert caught.value.message.startswith(f"{url}: ")
    assert message in caught.value.message
    assert outcome == ReloadOutcome(url, False, None, caught.value.message)
    assert ep.gate.active() is None


def test_a_policy_signed_by_untrusted_keys_is_refused_by_the_gate(
    world: tuple[PolicySimulator, Endpoint], collector: Collector
) -> None:
    sim, ep = world
    collector.routes["/v1/policy"] = Canned(body=envelope_of(sim, 1))
    url = collector.url(f"/v1/policy?token={TOKEN}")
    reloader = reloader_for(ep, url)
    reloader.fetch_all()
    before = ep.snapshot()
    collector.routes["/v1/policy"] = Canned(body=envelope_of(sim, 2, signers=(3,)))  # nobody's key

    (outcome,) = reloader.fetch_all()

    assert not outcome.accepted
    assert outcome.reason.startswith("policy refused: ")
    assert "0 of 2 required signatures" in outcome.reason
    assert ep.snapshot() == before  # version 1 stays in force, its files untouched
    (refusal,) = ep.events("refused")
    assert refusal["code"] == "signatures"
    assert refusal["source"] == collector.url("/v1/policy")


def test_a_url_that_is_not_acceptable_is_refused_without_a_request() -> None:
    with pytest.raises(ConfigError) as caught:
        fetch_policy(f"http://collector.example/v1/policy?token={TOKEN}")

    assert caught.value.message == (
        "policy URL http://collector.example/v1/policy: must use https"
        " (plain http only to 127.0.0.1, localhost or ::1)"
    )


# --- TLS ------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a self-signed certificate for 127.0.0.1, and that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
def tls_collector(tmp_path: Path) -> Iterator[tuple[Collector, Path]]:
    """A collector on https://127.0.0.1 with a self-signed certificate, and that certificate."""
    context, certificate = self_signed(tmp_path)
    with Collector(tls=context) as running:
        yield running, certificate


def test_an_untrusted_tls_certificate_is_refused(
    tls_collector: tuple[Collector, Path], world: tuple[PolicySimulator, Endpoint]
) -> None:
    sim, ep = world
    collector, _ = tls_collector
    collector.routes["/v1/policy"] = Canned(body=envelope_of(sim, 1))
    url = collector.url(f"/v1/policy?token={TOKEN}", scheme="https")

    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(url)

    assert caught.value.message == (
        f"fetching the policy from {collector.url('/v1/policy', scheme='https')} failed:"
        " TLS certificate not trusted (self-signed certificate)"
    )
    assert collector.requests == []  # no request went out over the untrusted connection
    assert ep.gate.active() is None


def test_a_trusted_tls_collector_serves_and_may_not_redirect_to_http(
    tls_collector: tuple[Collector, Path],
    world: tuple[PolicySimulator, Endpoint],
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim, ep = world
    secure, certificate = tls_collector
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))  # how an admin trusts a private CA
    secure.routes["/v1/policy"] = Canned(body=envelope_of(sim, 1))
    collector.routes["/v1/policy"] = Canned(body=envelope_of(sim, 1))
    secure.routes["/downgrade"] = Canned(302, headers={"Location": collector.url("/v1/policy")})

    (outcome,) = reloader_for(ep, secure.url("/v1/policy", scheme="https")).fetch_all()
    with pytest.raises(TemporaryFailure) as caught:
        fetch_policy(secure.url("/downgrade", scheme="https"))

    assert outcome.accepted
    assert caught.value.message.endswith("failed: redirected to a URL that leaves https")
    assert collector.requests == []


def test_nothing_is_logged_with_the_token(
    world: tuple[PolicySimulator, Endpoint],
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, ep = world
    caplog.set_level(logging.DEBUG)
    collector.routes["/v1/policy"] = Canned(body=envelope_of(sim, 1))
    urls = (
        collector.url(f"/v1/policy?token={TOKEN}"),
        collector.url(f"/missing?token={TOKEN}"),
        f"http://127.0.0.1:{free_port()}/v1/policy?token={TOKEN}",
    )

    outcomes = reloader_for(ep, *urls).fetch_all()

    assert [o.accepted for o in outcomes] == [True, False, False]
    # patchd's own records: urllib3 logs full URLs at DEBUG on its own logger, which
    # patchd's logging setup (the "patchd" logger only) does not route anywhere.
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("patchd")]
    assert ours
    assert all(TOKEN not in message for message in ours)
    assert all(TOKEN not in o.source + o.reason for o in outcomes)
    assert TOKEN not in repr(ep.gate.status())
