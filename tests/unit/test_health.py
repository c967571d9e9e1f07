"""Tests for patchd.health against real things: loopback TCP and HTTP servers, real commands,
real processes. Retries wait on a fake clock (its sleep only records and moves time), so
nothing waits for an interval; the few real waits are small timeouts against servers that
never answer. Nothing asserts how long a real operation took.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil
import pytest

from patchd.health import (
    MAX_INTERVAL_S,
    MAX_OUTPUT_TAIL_BYTES,
    SKIPPED_DETAIL,
    CheckResult,
    HealthReport,
    check_kind,
    run_health_checks,
)
from patchd.policy.model import HealthCheck
from patchd.target import Target

HOST = Target()
ALTERNATE_ROOT = Target.at("/srv/images/web")
SHORT_TIMEOUT_S = 0.3  # against servers that never answer
INTERVAL = "1m"  # 60 s on the fake clock: never really waited


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it; sleeps are recorded."""

    def __init__(self) -> None:
        self.now_s = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds


def make_check(*, timeout_s: float = 10.0, **fields: Any) -> HealthCheck:
    """A check validated like a policy's, then with a timeout a policy cannot write (seconds)."""
    fields.setdefault("name", "check")
    fields.setdefault("retries", 0)
    fields.setdefault("interval", INTERVAL)
    check = HealthCheck.model_validate(fields)
    return check.model_copy(update={"timeout": timedelta(seconds=timeout_s)})


def run_one(check: HealthCheck, target: Target = HOST) -> tuple[CheckResult, FakeClock]:
    clock = FakeClock()
    report = run_health_checks([check], target=target, sleep=clock.sleep, clock=clock)
    assert len(report.results) == 1
    return report.results[0], clock


# --- servers ------------------------------------------------------------------------------


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (the kernel's backlog does)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.fixture
def closed_socket() -> Iterator[socket.socket]:
    """A socket bound to a port but not listening: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


class _Handler(BaseHTTPRequestHandler):
    """``/ok`` → 200, ``/status/N`` → N, ``/redirect/N`` → 302 to ``/redirect/N-1`` (0 is /ok)."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/redirect/"):
            hops = int(path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", f"/redirect/{hops - 1}" if hops > 1 else "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
        else:
            code = 200 if path == "/ok" else 404
        body = b"x" * 100_000  # more than patchd would ever read
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # patchd does not read bodies: it may hang up
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def dripping_url() -> Iterator[str]:
    """A server that answers one byte of a status line every 50 ms, forever: no read times out."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:

        def serve() -> None:
            connection, _ = server.accept()
            with connection:
                for byte in b"HTTP/1.1 200 OK" * 1000:
                    if stop.wait(0.05):
                        return
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        return

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.getsockname()[1]}/"
        finally:
            stop.set()
            thread.join()


# --- the report -----------------------------------------------------------------------------


def test_no_checks_is_healthy() -> None:
    report = run_health_checks([], target=HOST)
    assert report == HealthReport(())
    assert report.passed
    assert report.failures() == []
    assert report.as_dict() == {"passed": True, "results": []}


def test_a_report_lists_every_check_and_its_failures(listening_port: int) -> None:
    checks = [
        make_check(name="db", tcp=f"127.0.0.1:{listening_port}"),
        make_check(name="ghost", process="patchd-no-such-process", retries=1),
        make_check(name="unit", systemd_unit="cron.service"),
    ]
    clock = FakeClock()
    report = run_health_checks(checks, target=ALTERNATE_ROOT, sleep=clock.sleep, clock=clock)
    assert report.passed  # the process and the unit are skipped there
    assert [r.skipped for r in report.results] == [False, True, True]
    report = run_health_checks(checks, target=HOST, sleep=clock.sleep, clock=clock)
    assert [r.name for r in report.results] == ["db", "ghost", "unit"]
    assert "ghost" in [r.name for r in report.failures()]
    assert report.as_dict()["results"][1] == {
        "name": "ghost",
        "kind": "process",
        "passed": False,
        "skipped": False,
        "attempts": 2,
        "detail": "no process named patchd-no-such-process",
        "duration_s": 60.0,
    }


def test_a_report_passes_only_when_every_check_passes() -> None:
    ok = CheckResult("a", "tcp", True, 1, "connected")
    bad = CheckResult("b", "tcp", False, 4, "refused")
    assert HealthReport((ok, ok)).passed
    assert not HealthReport((ok, bad)).passed
    assert HealthReport((ok, bad)).failures() == [bad]


# --- retries --------------------------------------------------------------------------------


def test_a_failing_check_is_tried_retries_more_times_interval_apart(
    closed_socket: socket.socket,
) -> None:
    check = make_check(tcp=f"127.0.0.1:{port_of(closed_socket)}", retries=3, interval="2m")
    result, clock = run_one(check)
    assert not result.passed
    assert result.attempts == 4
    assert clock.sleeps == [120.0, 120.0, 120.0]  # between attempts, none after the last
    assert result.duration_s == 360.0
    assert "Connection refused" in result.detail


def test_a_service_that_comes_up_during_the_interval_passes(closed_socket: socket.socket) -> None:
    clock = FakeClock()

    def start_listening(seconds: float) -> None:
        clock.sleep(seconds)
        closed_socket.listen()

    check = make_check(tcp=f"127.0.0.1:{port_of(closed_socket)}", retries=5)
    report = run_health_checks([check], target=HOST, sleep=start_listening, clock=clock)
    assert report.passed
    assert report.results[0].attempts == 2
    assert clock.sleeps == [60.0]


def test_a_passing_check_is_tried_once(listening_port: int) -> None:
    result, clock = run_one(make_check(tcp=f"127.0.0.1:{listening_port}", retries=5))
    assert (result.passed, result.attempts, clock.sleeps) == (True, 1, [])


def test_intervals_are_bounded() -> None:
    check = make_check(process="patchd-no-such-process", retries=1, interval="365d")
    result, clock = run_one(check)
    assert result.attempts == 2
    assert clock.sleeps == [MAX_INTERVAL_S]


# --- tcp ------------------------------------------------------------------------------------


def test_tcp_up(listening_port: int) -> None:
    result, _ = run_one(make_check(name="db", tcp=f"127.0.0.1:{listening_port}"))
    assert result == CheckResult(
        "db", "tcp", True, 1, f"connected to 127.0.0.1:{listening_port}", duration_s=0.0
    )


def test_tcp_port_out_of_range_is_not_retried() -> None:
    result, clock = run_one(make_check(tcp="127.0.0.1:70000", retries=3))
    assert (result.passed, result.attempts, clock.sleeps) == (False, 1, [])
    assert result.detail == "127.0.0.1:70000: port 70000 is out of range"


# --- http -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "passed", "detail"),
    [
        ("/ok", 200, True, "HTTP 200 OK from {url}/ok"),
        ("/status/503", 200, False, "HTTP 503 Service Unavailable from {url}/status/503, expected 200 OK"),
        ("/status/503", 503, True, "HTTP 503 Service Unavailable from {url}/status/503"),
        ("/status/204", 200, False, "HTTP 204 No Content from {url}/status/204, expected 200 OK"),
        ("/missing", 200, False, "HTTP 404 Not Found from {url}/missing, expected 200 OK"),
        ("/redirect/3", 200, True, "HTTP 200 OK from {url}/redirect/3"),
        ("/redirect/4", 200, False, "{url}/redirect/4: more than 3 redirects"),
        ("/redirect/2", 302, True, "HTTP 302 Found from {url}/redirect/2"),
        ("/ok?token=s3cret", 200, True, "HTTP 200 OK from {url}/ok"),
    ],
    ids=[
        "ok",
        "wrong-status",
        "expected-error-status",
        "other-success-is-not-enough",
        "not-found",
        "three-redirects-followed",
        "fourth-redirect-refused",
        "expected-redirect-not-followed",
        "query-string-never-shown",
    ],
)  # fmt: skip
def test_http(http_url: str, path: str, status: int, passed: bool, detail: str) -> None:
    result, _ = run_one(make_check(http=http_url + path, status=status))
    assert (result.kind, result.passed, result.attempts) == ("http", passed, 1)
    assert result.detail == detail.format(url=http_url)


def test_http_down(closed_socket: socket.socket) -> None:
    url = f"http://127.0.0.1:{port_of(closed_socket)}/healthz"
    result, clock = run_one(make_check(http=url, retries=1))
    assert (result.passed, result.attempts, clock.sleeps) == (False, 2, [60.0])
    assert result.detail == f"{url}: cannot connect: Connection refused"


def test_http_server_that_never_answers(listening_port: int) -> None:
    url = f"http://127.0.0.1:{listening_port}/healthz"
    result, _ = run_one(make_check(http=url, timeout_s=SHORT_TIMEOUT_S))
    assert not result.passed
    assert result.detail == f"{url}: no answer within {SHORT_TIMEOUT_S:g} s"


def test_http_server_that_drips_is_given_up_on(dripping_url: str) -> None:
    """Each byte arrives within the read timeout; the attempt as a whole is still bounded."""
    result, _ = run_one(make_check(http=dripping_url, timeout_s=SHORT_TIMEOUT_S))
    assert not result.passed
    assert result.detail == f"{dripping_url}: no answer within {SHORT_TIMEOUT_S:g} s"


def test_https_to_a_plain_http_server_fails_tls(http_url: str) -> None:
    url = http_url.replace("http://", "https://") + "/ok"
    result, _ = run_one(make_check(http=url))
    assert not result.passed
    assert result.detail.startswith(f"{url}: TLS failed")


# --- command --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "exit_code", "passed", "detail"),
    [
        (["sh", "-c", "exit 3"], 3, True, "exit status 3"),
        (["sh", "-c", "exit 3"], 0, False, "exit status 3, expected 0"),
        (["sh", "-c", "echo ready; exit 0"], 0, True, "exit status 0: ready"),
        (["sh", "-c", "echo broken >&2; exit 1"], 0, False, "exit status 1, expected 0: broken"),
        (["sh", "-c", "kill -9 $$"], 0, False, "killed by signal 9"),
    ],
    ids=["expected-nonzero", "unexpected-nonzero", "output-shown", "stderr-shown", "signal"],
)
def test_command(argv: list[str], exit_code: int, passed: bool, detail: str) -> None:
    result, _ = run_one(make_check(command=argv, exit_code=exit_code))
    assert (result.kind, result.passed, result.detail) == ("command", passed, detail)


def test_command_output_in_the_detail_is_bounded() -> None:
    script = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done; echo last; exit 1"
    result, _ = run_one(make_check(command=["sh", "-c", script]))
    assert result.detail.startswith("exit status 1, expected 0: ")
    assert result.detail.endswith("last")
    assert "line-0\n" not in result.detail
    assert len(result.detail.encode()) <= len("exit status 1, expected 0: ") + MAX_OUTPUT_TAIL_BYTES


def test_command_timeout() -> None:
    result, _ = run_one(make_check(command=["sleep", "100"], timeout_s=SHORT_TIMEOUT_S))
    assert (result.passed, result.detail) == (False, f"timed out after {SHORT_TIMEOUT_S:g} s")


def test_a_zero_timeout_is_raised_to_the_minimum() -> None:
    result, _ = run_one(make_check(command=["sleep", "100"], timeout_s=0))
    assert result.detail == "timed out after 0.1 s"


def test_a_command_that_is_not_installed_is_not_retried() -> None:
    result, clock = run_one(make_check(command=["patchd-no-such-tool"], retries=3))
    assert (result.passed, result.attempts, clock.sleeps) == (False, 1, [])
    assert result.detail == "patchd-no-such-tool is not installed"


# --- process and systemd_unit ---------------------------------------------------------------


def test_process_running() -> None:
    me = psutil.Process()
    result, _ = run_one(make_check(process=me.name()))
    assert result.passed
    assert result.detail.startswith(f"{me.name()} is running (pid ")


def test_process_missing() -> None:
    result, _ = run_one(make_check(process="patchd-no-such-process"))
    assert (result.passed, result.detail) == (False, "no process named patchd-no-such-process")


def test_a_unit_name_is_never_read_as_an_option() -> None:
    # Without "--", `systemctl is-active --quiet --version` would exit 0 and pass.
    result, _ = run_one(make_check(systemd_unit="--version"))
    assert not result.passed
    assert result.detail.startswith(("--version is not active", "systemctl is not installed"))


@pytest.mark.parametrize(
    "fields",
    [{"systemd_unit": "cron.service"}, {"process": "cron"}],
    ids=["systemd-unit", "process"],
)
def test_running_system_checks_are_skipped_in_an_alternate_root(fields: dict[str, Any]) -> None:
    result, clock = run_one(make_check(name="svc", retries=3, **fields), target=ALTERNATE_ROOT)
    kind = next(iter(fields))
    assert result == CheckResult("svc", kind, True, 0, SKIPPED_DETAIL, skipped=True)
    assert clock.sleeps == []
    assert result.as_dict()["skipped"] is True


def test_network_checks_run_in_an_alternate_root(closed_socket: socket.socket) -> None:
    result, _ = run_one(
        make_check(tcp=f"127.0.0.1:{port_of(closed_socket)}"), target=ALTERNATE_ROOT
    )
    assert (result.passed, result.skipped) == (False, False)


# --- programming errors ---------------------------------------------------------------------


def test_a_check_of_no_kind_is_a_programming_error() -> None:
    check = HealthCheck.model_construct(name="nothing")
    with pytest.raises(ValueError, match="gives none of"):
        check_kind(check)
    with pytest.raises(ValueError, match="gives none of"):
        run_health_checks([check], target=HOST, sleep=time.sleep)
