"""Health checks: after patching (and after a reboot), proof that the endpoint still works.

A policy lists checks (:class:`~patchd.policy.model.HealthCheck`), each of one kind:

``systemd_unit``
    ``systemctl is-active --quiet -- UNIT`` exits 0.
``tcp``
    a TCP connection to ``host:port`` is accepted.
``http``
    a GET of the URL answers with the expected status (TLS verified, at most
    :data:`MAX_REDIRECTS` redirects followed, the body never read).
``command``
    the argv exits with the expected status (run through :mod:`patchd.process`).
``process``
    a process with exactly that name runs.

Each check is tried up to ``retries`` more times, ``interval`` apart; each attempt is
bounded by ``timeout``. A failing check is data, never an exception: the caller decides
(a run rolls back). Only programming errors propagate.

Time bound of :func:`run_health_checks`: per check at most
``(retries + 1) * (timeout + ATTEMPT_GRACE_S) + retries * interval``, with ``timeout``
clamped to [:data:`MIN_ATTEMPT_TIMEOUT_S`, :data:`MAX_ATTEMPT_TIMEOUT_S`] and ``interval``
to at most :data:`MAX_INTERVAL_S`; the whole call at most the sum over its checks.

On an alternate root (``--root``), ``systemd_unit`` and ``process`` checks look at the
running system, which is not the managed one: they are reported as skipped (passed, with
``skipped`` set and a detail saying why). ``tcp``, ``http`` and ``command`` checks run as
written, since their address or argv says what they test.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urljoin

from patchd import process
from patchd.errors import CommandError, CommandTimeout, PatchdError, ToolNotFoundError
from patchd.policy.model import HealthCheck
from patchd.target import Target

log = logging.getLogger(__name__)

KINDS = ("systemd_unit", "tcp", "http", "command", "process")
HOST_ONLY_KINDS = frozenset({"systemd_unit", "process"})  # they observe the running system
SKIPPED_DETAIL = "not checkable in an alternate root"

MAX_RETRIES = 20  # the policy's own bound, enforced again for checks built in code
MIN_ATTEMPT_TIMEOUT_S = 0.1  # a zero timeout would mean "non-blocking", not "immediately"
MAX_ATTEMPT_TIMEOUT_S = 600.0  # a policy may write days; one attempt never waits that long
MAX_INTERVAL_S = 600.0
ATTEMPT_GRACE_S = 1.0  # network attempts: time past the timeout to report their own error
MAX_REDIRECTS = 3
MAX_OUTPUT_TAIL_BYTES = 1024  # of a command's output, in the detail
MAX_CAPTURE_BYTES = 64 * 1024  # per stream of a check's command
_HTTP_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "patchd-health-check"}


@dataclass(frozen=True)
class CheckResult:
    """How one check went: passed or not, after how many attempts, and why (``detail``).

    ``skipped`` checks passed without being tried (``attempts`` 0): see the module docs.
    ``detail`` describes the last attempt. ``duration_s`` is measured with the injected clock.
    """

    name: str
    kind: str
    passed: bool
    attempts: int
    detail: str
    skipped: bool = False
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "passed": self.passed,
            "skipped": self.skipped,
            "attempts": self.attempts,
            "detail": self.detail,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True)
class HealthReport:
    """Every check's result, in the policy's order."""

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """True when every check passed (skipped ones count as passed); no checks pass."""
        return all(result.passed for result in self.results)

    def failures(self) -> list[CheckResult]:
        """The checks that did not pass."""
        return [result for result in self.results if not result.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "results": [r.as_dict() for r in self.results]}


@dataclass(frozen=True)
class _Outcome:
    """One attempt: ``final`` when trying again cannot help (a tool is not installed)."""

    passed: bool
    detail: str
    final: bool = False


def check_kind(check: HealthCheck) -> str:
    """Which of :data:`KINDS` ``check`` is; ValueError if it gives none (the model forbids it)."""
    for kind in KINDS:
        if getattr(check, kind):
            return kind
    raise ValueError(f"health check {check.name!r} gives none of {', '.join(KINDS)}")


def run_health_checks(
    checks: Sequence[HealthCheck],
    *,
    target: Target,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> HealthReport:
    """Run ``checks`` in order, each with its retries, and report every result.

    ``sleep`` waits between attempts and ``clock`` measures durations (both injectable for
    tests). Never raises for a failing check; see the module docs for the time bound.
    """
    return HealthReport(tuple(_run_check(check, target, sleep, clock) for check in checks))


def _run_check(
    check: HealthCheck,
    target: Target,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> CheckResult:
    kind = check_kind(check)
    if not target.is_host and kind in HOST_ONLY_KINDS:
        log.info("health check %s (%s) skipped: %s %s", check.name, kind, SKIPPED_DETAIL, target)
        return CheckResult(check.name, kind, True, 0, SKIPPED_DETAIL, skipped=True)
    timeout_s = min(
        max(check.timeout.total_seconds(), MIN_ATTEMPT_TIMEOUT_S), MAX_ATTEMPT_TIMEOUT_S
    )
    interval_s = min(max(check.interval.total_seconds(), 0.0), MAX_INTERVAL_S)
    max_attempts = 1 + min(max(check.retries, 0), MAX_RETRIES)
    attempt = _ATTEMPTS[kind]
    started = clock()
    attempts = 0
    while True:
        attempts += 1
        outcome = attempt(check, timeout_s)
        if outcome.passed or outcome.final or attempts >= max_attempts:
            break
        log.debug("health check %s attempt %d failed: %s", check.name, attempts, outcome.detail)
        sleep(interval_s)
    result = CheckResult(
        check.name, kind, outcome.passed, attempts, outcome.detail, duration_s=clock() - started
    )
    log.log(
        logging.INFO if result.passed else logging.WARNING,
        "health check %s %s after %d attempt(s): %s",
        check.name,
        "passed" if result.passed else "failed",
        attempts,
        result.detail,
    )
    return result


# --- the kinds ------------------------------------------------------------------------------


def _systemd_unit(check: HealthCheck, timeout_s: float) -> _Outcome:
    unit = check.systemd_unit or ""
    # "--": a unit name starting with "-" must not be read as an option.
    outcome = _run_command(["systemctl", "is-active", "--quiet", "--", unit], timeout_s)
    if outcome.passed:
        return _Outcome(True, f"{unit} is active")
    if outcome.final:
        return outcome
    return _Outcome(False, f"{unit} is not active (systemctl is-active: {outcome.detail})")


def _command(check: HealthCheck, timeout_s: float) -> _Outcome:
    return _run_command(list(check.command or []), timeout_s, expected=check.exit_code)


def _run_command(argv: list[str], timeout_s: float, *, expected: int = 0) -> _Outcome:
    """Run ``argv``; passed when it exits with ``expected``. The detail ends with its output."""
    try:
        result = process.run(
            argv,
            timeout_s=timeout_s,
            ok_codes=range(256),
            cwd="/",
            max_output_bytes=MAX_CAPTURE_BYTES,
        )
    except ToolNotFoundError as e:
        return _Outcome(False, f"{e.tool} is not installed", final=True)
    except CommandTimeout as e:
        return _Outcome(False, _with_output(f"timed out after {timeout_s:g} s", e.output))
    except CommandError as e:  # a status outside 0-255: killed by a signal
        code = e.returncode
        reason = (
            f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        )
        return _Outcome(False, _with_output(reason, e.output))
    except PatchdError as e:  # it cannot be started at all (permission denied)
        return _Outcome(False, e.message, final=True)
    code = result.returncode
    if code == expected:
        return _Outcome(True, _with_output(f"exit status {code}", result.output))
    return _Outcome(False, _with_output(f"exit status {code}, expected {expected}", result.output))


def _with_output(text: str, output: str) -> str:
    tail = output.encode("utf-8", "replace")[-MAX_OUTPUT_TAIL_BYTES:]
    shown = tail.decode("utf-8", "ignore").strip()  # a cut character at the start is dropped
    return f"{text}: {shown}" if shown else text


def _process(check: HealthCheck, timeout_s: float) -> _Outcome:
    import psutil

    name = check.process or ""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == name:  # None when the name cannot be read
            return _Outcome(True, f"{name} is running (pid {proc.pid})")
    return _Outcome(False, f"no process named {name}")


def _tcp(check: HealthCheck, timeout_s: float) -> _Outcome:
    address = check.tcp or ""
    host, _, port_text = address.rpartition(":")
    port = int(port_text)  # the model's pattern makes it 1 to 5 digits
    if not 0 < port < 65536:
        return _Outcome(False, f"{address}: port {port} is out of range", final=True)

    def connect() -> _Outcome:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return _Outcome(True, f"connected to {address}")
        except socket.gaierror as e:
            return _Outcome(False, f"cannot resolve {host}: {e.strerror}")
        except TimeoutError:
            return _Outcome(False, f"no answer from {address} within {timeout_s:g} s")
        except OSError as e:
            return _Outcome(False, f"cannot connect to {address}: {e.strerror or type(e).__name__}")

    return _within(timeout_s, connect, address)


def _http(check: HealthCheck, timeout_s: float) -> _Outcome:
    from patchd.config import redact_url

    url = check.http or ""
    shown = redact_url(url)  # the query string may carry a token
    return _within(timeout_s, lambda: _http_get(url, shown, check.status, timeout_s), shown)


def _http_get(url: str, shown: str, expected: int, timeout_s: float) -> _Outcome:
    import requests
    import urllib3

    current = url
    with requests.Session() as session:
        # Proxies, .netrc and CA bundles from the environment would change what is tested.
        session.trust_env = False
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with session.get(
                    current,
                    headers=_HTTP_HEADERS,
                    timeout=(timeout_s, timeout_s),
                    stream=True,  # the status is the answer: the body is never read
                    allow_redirects=False,  # followed below, without reading their bodies
                    verify=True,
                ) as response:
                    code, redirect = response.status_code, response.is_redirect
                    location = response.headers.get("Location", "")
            except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
                return _Outcome(False, f"{shown}: {_network_problem(e, timeout_s)}")
            if code == expected:
                return _Outcome(True, f"HTTP {_status(code)} from {shown}")
            if not redirect:
                return _Outcome(
                    False, f"HTTP {_status(code)} from {shown}, expected {_status(expected)}"
                )
            try:
                following = urljoin(current, location)
            except ValueError:  # an IPv6 host without its closing bracket
                return _Outcome(False, f"{shown} redirected to an invalid URL")
            if _scheme(current) == "https" and _scheme(following) != "https":
                return _Outcome(False, f"{shown} redirected from https to {_scheme(following)}")
            current = following
    return _Outcome(False, f"{shown}: more than {MAX_REDIRECTS} redirects")


def _scheme(url: str) -> str:
    return url.partition(":")[0].lower()


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"  # our phrase, never the server's text
    except ValueError:
        return str(code)


def _network_problem(error: BaseException, timeout_s: float) -> str:
    """Why a request failed, from its causes (``str(error)`` would show the full URL)."""
    from patchd.neterrors import network_reason

    return network_reason(error, timeout_s) or f"network error ({type(error).__name__})"


def _within(timeout_s: float, attempt: Callable[[], _Outcome], shown: str) -> _Outcome:
    """Run a network ``attempt`` in a thread, giving up on it after ``timeout_s`` plus a grace.

    The attempt's own timeouts bound connecting and each read, not name resolution or a
    server that drips bytes; this bounds the whole attempt. A thread given up on ends by
    its own timeouts.
    """
    outcomes: list[_Outcome] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            outcomes.append(attempt())
        except BaseException as e:  # re-raised below: only programming errors get here
            errors.append(e)

    worker = threading.Thread(target=work, name="patchd-health-check", daemon=True)
    worker.start()
    worker.join(timeout_s + ATTEMPT_GRACE_S)
    if errors:
        raise errors[0]
    if outcomes:
        return outcomes[0]
    return _Outcome(False, f"{shown}: no answer within {timeout_s:g} s")


_ATTEMPTS: dict[str, Callable[[HealthCheck, float], _Outcome]] = {
    "systemd_unit": _systemd_unit,
    "tcp": _tcp,
    "http": _http,
    "command": _command,
    "process": _process,
}
