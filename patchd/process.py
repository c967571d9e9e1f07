"""The one gateway through which patchd runs other programs.

Every command is an argv list (never a shell string), runs with a timeout, a clean
environment (``LC_ALL=C``, no terminal) and bounded output capture. A command that is
not installed raises :class:`ToolNotFoundError`; one that fails raises
:class:`CommandError` with its argv, exit status and the tail of its output; one that
runs too long is stopped (its whole process group) and raises :class:`CommandTimeout`.
Nothing else in patchd imports :mod:`subprocess`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO

from patchd.errors import CommandError, CommandTimeout, PatchdError, ToolNotFoundError

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024  # per stream; more is elided from the middle
KILL_GRACE_S = 10.0  # between SIGTERM and SIGKILL; for leftovers, between exit and SIGKILL
MAX_LINE_BYTES = 64 * 1024  # a longer line reaches on_line in pieces
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables carried over from patchd's own environment; everything else is dropped.
_INHERITED = (
    "HOME",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SYSTEMROOT",  # Windows cannot start programs without it
    "WINDIR",
    "COMSPEC",
    "PROGRAMDATA",
)


def base_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every command gets: C locale, no terminal, system PATH first."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    if sys.platform == "win32":
        env["PATH"] = os.environ.get("PATH", "")
    else:
        inherited = [p for p in os.environ.get("PATH", "").split(":") if p.startswith("/")]
        parts = _SYSTEM_PATH.split(":")
        env["PATH"] = ":".join(dict.fromkeys(parts + inherited))
    env.update({"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C", "TERM": "dumb"})
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class CommandResult:
    """What a finished command did. Output is decoded as UTF-8 with replacement."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def output(self) -> str:
        """Standard output followed by standard error, as a transcript shows them."""
        if self.stderr and self.stdout:
            return f"{self.stdout.rstrip()}\n{self.stderr}"
        return self.stdout or self.stderr


class _BoundedCapture:
    """Collects a stream up to a size, keeping its head and tail and counting the rest."""

    def __init__(self, limit: int, on_line: Callable[[str], None] | None) -> None:
        self._head_limit = limit // 4
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0
        self._on_line = on_line
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        if self._on_line is not None:
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > MAX_LINE_BYTES:  # output without newlines must not pile up
                lines.append(self._partial)
                self._partial = b""
            for line in lines:
                self._on_line(line.decode("utf-8", "replace"))
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        excess = len(self._tail) - self._tail_limit
        if excess > 0:
            del self._tail[:excess]
            self._dropped += excess

    def text(self) -> str:
        if self._on_line is not None and self._partial:
            self._on_line(self._partial.decode("utf-8", "replace"))
            self._partial = b""
        middle = f"\n[... {self._dropped} bytes elided ...]\n" if self._dropped else ""
        head = self._head.decode("utf-8", "replace")
        return head + middle + self._tail.decode("utf-8", "replace")


def _pump(stream: IO[bytes], capture: _BoundedCapture) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
        capture.feed(chunk)
    stream.close()


def _feed(stream: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):  # the command need not read all its input
        stream.write(data)
    with contextlib.suppress(BrokenPipeError):
        stream.close()


def _popen(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    stdin: int | None,
) -> subprocess.Popen[bytes]:
    if not argv:
        raise ValueError("empty argv")
    windows = sys.platform == "win32"
    try:
        return subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=base_environment(env),
            cwd=cwd,
            # A group of its own lets a timeout stop the command and all it started.
            start_new_session=not windows,
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if windows else 0,
        )
    except FileNotFoundError as e:
        if cwd is not None and not os.path.isdir(cwd):
            raise PatchdError(
                f"cannot run {argv[0]}: working directory {cwd} does not exist"
            ) from None
        raise ToolNotFoundError(argv[0]) from e
    except PermissionError:
        raise PatchdError(
            f"cannot run {argv[0]}: permission denied", hint="is it executable?"
        ) from None


MAX_POLL_MS = 2**31 - 1


def _open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or ``None``."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:  # an older kernel, or a sandbox that forbids the call
        return None


def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the command to exit, and reap it; whether it did.

    ``Popen.wait(timeout)`` polls on POSIX, sleeping up to 50 ms between looks, so a
    command is seen to end up to 50 ms late. Where the kernel gives a descriptor for the
    process, patchd sleeps on it instead and wakes when the command exits; elsewhere
    ``Popen.wait`` it is (Windows waits on the process handle, without polling).
    """
    if proc.returncode is not None:
        return True
    pidfd = _open_pidfd(proc.pid)
    if pidfd is None:
        try:
            proc.wait(timeout=max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + max(0.0, timeout_s)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        # poll(2) takes a C int of milliseconds (at most ~24.8 days); the service host
        # gives the agent 40 days. Longer waits are made of several.
        while not poller.poll(
            min(MAX_POLL_MS, math.ceil(max(0.0, deadline - time.monotonic()) * 1000))
        ):
            if time.monotonic() >= deadline:
                return False
    finally:
        os.close(pidfd)
    proc.wait()  # it has exited: this only reaps it
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a command and everything it started: SIGTERM, then SIGKILL after a grace."""
    if proc.poll() is not None:
        return
    if sys.platform == "win32":
        proc.kill()
        proc.wait()
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    _wait_exit(proc, KILL_GRACE_S)
    _kill_group(proc)  # what it started may ignore SIGTERM, or outlive it


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a command's process group, then reap the command."""
    if sys.platform != "win32":
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class RunningCommand:
    """A command started by :func:`start`; :meth:`wait` for its result."""

    def __init__(
        self,
        argv: Sequence[str],
        proc: subprocess.Popen[bytes],
        captures: tuple[_BoundedCapture, _BoundedCapture],
        *,
        timeout_s: float,
        ok_codes: Sequence[int],
        redact: Sequence[str],
        input_bytes: bytes | None = None,
        key: _StartKey | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self._key = key  # how it was started, for started_ahead(); None: never offered
        self._proc = proc
        self._captures = captures
        self._timeout_s = timeout_s
        self._ok_codes = ok_codes
        self._redact = redact
        self._started = time.monotonic()
        assert proc.stdout is not None and proc.stderr is not None  # noqa: PT018 - PIPE invariant
        self._pumps = [
            threading.Thread(target=_pump, args=(stream, capture), daemon=True)
            for stream, capture in zip((proc.stdout, proc.stderr), captures, strict=True)
        ]
        if input_bytes is not None and proc.stdin is not None:
            # Written from a thread: a command that does not read must not block patchd.
            feeder = threading.Thread(target=_feed, args=(proc.stdin, input_bytes), daemon=True)
            self._pumps.append(feeder)
        for pump in self._pumps:
            pump.start()

    def wait(self) -> CommandResult:
        """Wait for the command to end (up to its timeout, counted from its start).

        Raises :class:`CommandTimeout` or :class:`CommandError` as :func:`run` does.
        """
        timed_out = False
        deadline = self._started + self._timeout_s
        try:
            exited = _wait_exit(self._proc, deadline - time.monotonic())
        except BaseException:
            _stop(self._proc)  # never leave a package manager running behind an interrupted patchd
            raise
        if not exited:
            timed_out = True
            _stop(self._proc)
        else:
            # It has exited; what it started may still hold its pipes open. That gets a short
            # grace, then is stopped: soon, before the group's id could be reused.
            grace_end = min(deadline, time.monotonic() + KILL_GRACE_S)
            for pump in self._pumps:
                pump.join(max(0.0, grace_end - time.monotonic()))
            if any(pump.is_alive() for pump in self._pumps):
                log.warning("%s exited leaving processes behind; stopping them", self.argv[0])
                timed_out = grace_end >= deadline
                _kill_group(self._proc)
        for pump in self._pumps:
            pump.join()
        result = CommandResult(
            argv=self.argv,
            returncode=self._proc.returncode,
            stdout=self._captures[0].text(),
            stderr=self._captures[1].text(),
            duration_s=time.monotonic() - self._started,
        )
        if timed_out:
            raise CommandTimeout(self.argv, self._timeout_s, result.output, redact=self._redact)
        if result.returncode not in self._ok_codes:
            raise CommandError(self.argv, result.returncode, result.output, redact=self._redact)
        log.debug("exit %d after %.2f s: %s", result.returncode, result.duration_s, self.argv[0])
        return result

    def running(self) -> bool:
        """Whether the command has not ended yet."""
        return self._proc.poll() is None

    def interrupt(self) -> None:
        """Ask the command to stop by itself, and return at once; nothing is killed.

        SIGTERM to the command (CTRL_BREAK to its process group on Windows). The Windows
        service host uses it so the agent finishes its current step, as under systemd.
        """
        if self._proc.poll() is not None:
            return
        sig = getattr(signal, "CTRL_BREAK_EVENT", signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(sig)

    def stop(self) -> None:
        """Stop the command if it still runs (its whole process group)."""
        self._key = None  # stopped by patchd: never offered to a start (started_ahead)
        _stop(self._proc)
        for pump in self._pumps:
            pump.join()

    @property
    def started_at(self) -> float:
        """When it was started, on ``time.monotonic``'s clock."""
        return self._started


def stop_all(*commands: RunningCommand | None) -> None:
    """Stop each command that still runs; ``None`` (never started, or collected) is skipped.

    Every one is tried, even after one could not be stopped; the first error is raised.
    """
    failed: BaseException | None = None
    for command in commands:
        if command is not None:
            try:
                command.stop()
            except BaseException as e:  # the others must not keep running for it
                failed = failed or e
    if failed is not None:
        raise failed


def start(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    ok_codes: Sequence[int] = (0,),
    input_text: str | None = None,
    cwd: str | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    on_line: Callable[[str], None] | None = None,
    redact: Sequence[str] = (),
) -> RunningCommand:
    """Start ``argv`` and return at once; see :func:`run` for the arguments and errors.

    Lets patchd do other work while a slow command (``apt list``) runs.
    """
    key = None
    if on_line is None:  # a callback is this caller's own: such a start is never shared
        key = _StartKey(
            tuple(argv),
            tuple(sorted(env.items())) if env is not None else None,
            cwd,
            input_text,
            timeout_s,
            tuple(ok_codes),
            max_output_bytes,
            tuple(redact),
        )
        ahead = _take_started_ahead(key)
        if ahead is not None:
            log.debug("start: %s (running since it was started ahead)", " ".join(argv))
            return ahead
    log.debug("start: %s", " ".join(argv))
    stdin = subprocess.PIPE if input_text is not None else subprocess.DEVNULL
    proc = _popen(argv, env, cwd, stdin)
    captures = (
        _BoundedCapture(max_output_bytes, on_line),
        _BoundedCapture(max_output_bytes, on_line),
    )
    try:
        command = RunningCommand(
            argv,
            proc,
            captures,
            timeout_s=timeout_s,
            ok_codes=ok_codes,
            redact=redact,
            input_bytes=input_text.encode() if input_text is not None else None,
            key=key,
        )
    except BaseException:  # its output could not be read (no thread): nothing may keep it
        _stop(proc)
        raise
    recording = _recording.get()
    if recording is not None:
        recording.append(command)
    return command


# -- commands started ahead ------------------------------------------------------------


@dataclass(frozen=True)
class _StartKey:
    """Everything :func:`start` was given that shapes the command and its result."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] | None
    cwd: str | None
    input_text: str | None
    timeout_s: float
    ok_codes: tuple[int, ...]
    max_output_bytes: int
    redact: tuple[str, ...]


_recording: ContextVar[list[RunningCommand] | None] = ContextVar("recording", default=None)
_offered: ContextVar[list[RunningCommand] | None] = ContextVar("offered", default=None)


@contextmanager
def recording_starts() -> Iterator[list[RunningCommand]]:
    """The block's calls to :func:`start`: the list fills with the commands they start."""
    started: list[RunningCommand] = []
    token = _recording.set(started)
    try:
        yield started
    finally:
        _recording.reset(token)


@contextmanager
def started_ahead(commands: Sequence[RunningCommand]) -> Iterator[None]:
    """Offer commands already running to the block's calls to :func:`start`.

    Meant for one caller's commands started ahead of it (a backend's listing, started
    by an earlier copy of that backend). A start of exactly one of them — the same argv,
    added environment, working directory, input, timeout, accepted exit codes, output
    bound and redactions, and no line callback — takes it, running since it was started,
    instead of starting it again. A start that matches none first stops those still
    offered that run the same program: they were started for a command that has changed
    since, and two runs of one package manager would wait on each other's lock. What no
    start took is stopped when the block ends. The offer is made to the calling thread
    only (a context variable: on Python 3.11 a new thread starts with an empty context).
    """
    offered = list(commands)
    token = _offered.set(offered)
    try:
        yield
    finally:
        _offered.reset(token)
        stop_all(*offered)


def _take_started_ahead(key: _StartKey) -> RunningCommand | None:
    offered = _offered.get()
    if not offered:
        return None
    for index, command in enumerate(offered):
        if command._key == key:
            return offered.pop(index)
    # Started by the same program for a command that changed: stopped before the new one
    # starts, which would otherwise wait for its lock (zypper, dnf) or compete with it.
    stale = [command for command in offered if command.argv[0] == key.argv[0]]
    offered[:] = [command for command in offered if command not in stale]
    stop_all(*stale)
    return None


def run(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    ok_codes: Sequence[int] = (0,),
    input_text: str | None = None,
    cwd: str | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    on_line: Callable[[str], None] | None = None,
    redact: Sequence[str] = (),
) -> CommandResult:
    """Run ``argv`` to completion and return what it did.

    ``env`` adds to :func:`base_environment`. ``on_line`` sees each line of standard
    output and standard error as it arrives (for progress). Raises
    :class:`ToolNotFoundError` if ``argv[0]`` is not installed, :class:`CommandTimeout`
    after ``timeout_s`` seconds (the command and everything it started are stopped), and
    :class:`CommandError` if the exit status is not in ``ok_codes``.
    """
    return start(
        argv,
        timeout_s=timeout_s,
        env=env,
        ok_codes=ok_codes,
        input_text=input_text,
        cwd=cwd,
        max_output_bytes=max_output_bytes,
        on_line=on_line,
        redact=redact,
    ).wait()


class StreamedCommand:
    """A running command whose standard output is read as a stream (see :func:`stream_stdout`)."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: _BoundedCapture) -> None:
        self._proc = proc
        self._stderr = stderr
        assert proc.stdout is not None
        self.stdout: IO[bytes] = proc.stdout

    @property
    def returncode(self) -> int | None:
        """The exit status once the command has ended, else ``None``."""
        return self._proc.returncode

    @property
    def stderr(self) -> str:
        """What the command wrote to standard error (complete once it has ended)."""
        return self._stderr.text()


@contextmanager
def stream_stdout(
    argv: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None = None
) -> Iterator[StreamedCommand]:
    """Run ``argv`` and let the caller read its standard output as a binary stream.

    For output too large to capture (a package's file archive): the caller reads what it
    needs and leaves the block; patchd then closes the pipe, so the command ends (with
    SIGPIPE if it was still writing), and stops it if it does not. A watchdog stops it
    after ``timeout_s`` seconds. The caller judges the result from what it read and from
    ``returncode`` and ``stderr`` after the block.
    """
    log.debug("stream: %s", " ".join(argv))
    proc = _popen(argv, env, None, subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None  # noqa: PT018
    err = _BoundedCapture(64 * 1024, None)
    err_pump = threading.Thread(target=_pump, args=(proc.stderr, err), daemon=True)
    err_pump.start()
    watchdog = threading.Timer(timeout_s, _stop, args=(proc,))
    watchdog.start()
    command = StreamedCommand(proc, err)
    try:
        yield command
    finally:
        watchdog.cancel()
        proc.stdout.close()
        if _wait_exit(proc, KILL_GRACE_S):
            _kill_group(proc)  # what it started may outlive it, holding standard error open
        else:
            _stop(proc)
        err_pump.join()
