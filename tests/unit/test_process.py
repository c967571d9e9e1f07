"""Tests for patchd.process, the one subprocess gateway, against real commands.

Every process a test starts is recorded by pid (scripts print ``$$`` and ``$!`` first)
and killed at teardown whatever happened. Nothing asserts how long a command took:
timeouts are small (0.5 s) against commands that would take 100 s, and a call that must
not hang runs in a thread with a generous bound.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from patchd import process
from patchd.errors import CommandError, CommandTimeout, ExitCode, ToolNotFoundError
from patchd.process import CommandResult

T = TypeVar("T")

SHORT_TIMEOUT_S = 0.5  # against commands that would run for 100 s
HANG_BOUND_S = 30.0  # a call still running after this is a hang, not slowness
GONE_WITHIN_S = 10.0  # how long a killed process may take to disappear
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --- helpers ---------------------------------------------------------------------------


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has finished running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def survivors(pids: list[int]) -> list[int]:
    """The pids still running once they have had time to die."""
    deadline = time.monotonic() + GONE_WITHIN_S
    while any(is_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [pid for pid in pids if is_running(pid)]


def bounded(call: Callable[[], T]) -> T:
    """Run ``call``, failing the test (instead of hanging the suite) if it does not return."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_BOUND_S)
    if thread.is_alive():
        pytest.fail(f"still running after {HANG_BOUND_S:g} s")
    if failure:
        raise failure[0]
    return outcome[0]


class Pids:
    """Pids that scripts report on their output; every one is killed at teardown."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._reported = threading.Event()

    def on_line(self, line: str) -> None:
        if line.startswith("pids "):
            self.seen.extend(int(p) for p in line.split()[1:])
            self._reported.set()

    def wait_reported(self) -> None:
        assert self._reported.wait(HANG_BOUND_S), "the script never printed its pids"

    def kill_all(self) -> None:
        for pid in self.seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def pids() -> Iterator[Pids]:
    reported = Pids()
    try:
        yield reported
    finally:
        reported.kill_all()


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def require_pidfd() -> None:
    """Skip (fail in CI) where the kernel gives no process descriptor."""
    fd = process._open_pidfd(os.getpid())
    if fd is not None:
        os.close(fd)
        return
    if os.environ.get("CI"):
        pytest.fail("os.pidfd_open does not work here")
    pytest.skip("os.pidfd_open does not work here")


def _enosys(pid: int) -> int:
    raise OSError(errno.ENOSYS, "Function not implemented")


@pytest.fixture(params=["pidfd", "pidfd-refused", "no-pidfd"])
def each_wait(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with each way of waiting for a command's exit.

    ``pidfd``: the kernel's process descriptor (Linux 5.3+). ``pidfd-refused``: the call
    exists but fails (an old kernel, a seccomp sandbox). ``no-pidfd``: the call does not
    exist (macOS, Windows, Python built without it). The last two use ``Popen.wait``.
    """
    if request.param == "pidfd":
        require_pidfd()
    elif request.param == "pidfd-refused":
        monkeypatch.setattr(os, "pidfd_open", _enosys)
    else:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    return str(request.param)


# --- exit status and errors -------------------------------------------------------------


@pytest.mark.usefixtures("each_wait")
def test_run_returns_both_streams_and_the_status() -> None:
    result = process.run(sh("printf 'out\\n'; printf 'err\\n' >&2"), timeout_s=30)

    assert result.argv == ("sh", "-c", "printf 'out\\n'; printf 'err\\n' >&2")
    assert result.returncode == 0
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.output == "out\nerr\n"


@pytest.mark.usefixtures("each_wait")
@pytest.mark.parametrize(
    ("status", "ok_codes", "accepted"),
    [
        (0, (0,), True),
        (3, (0, 3), True),
        (100, (0, 100), True),
        (1, (0,), False),
        (0, (1,), False),
        (2, (0, 1), False),
    ],
    ids=[
        "0-default-ok",
        "3-listed",
        "100-listed",
        "1-not-listed",
        "0-not-listed",
        "2-not-listed",
    ],
)
def test_exit_status_is_judged_by_ok_codes(
    status: int, ok_codes: tuple[int, ...], accepted: bool
) -> None:
    argv = sh(f"exit {status}")
    if accepted:
        assert process.run(argv, timeout_s=30, ok_codes=ok_codes).returncode == status
    else:
        with pytest.raises(CommandError) as caught:
            process.run(argv, timeout_s=30, ok_codes=ok_codes)
        assert caught.value.returncode == status


def test_command_error_carries_argv_status_and_output() -> None:
    argv = sh("echo first; echo second; echo 'the last words' >&2; exit 7")

    with pytest.raises(CommandError) as caught:
        process.run(argv, timeout_s=30)

    error = caught.value
    assert type(error) is CommandError
    assert error.argv == tuple(argv)
    assert error.returncode == 7
    assert error.exit_code == ExitCode.FAILURE
    assert "first\nsecond" in error.output
    assert "the last words" in error.output
    assert str(error).endswith(": the last words")
    assert "exit status 7" in str(error)


def test_redact_hides_secrets_in_str_but_keeps_the_raw_output() -> None:
    secret = "hunter2-token"
    argv = sh(f"echo 'auth failed for {secret}'; exit 1")

    with pytest.raises(CommandError) as caught:
        process.run([*argv, secret], timeout_s=30, redact=[secret])

    shown = str(caught.value)
    assert secret not in shown
    assert "auth failed for ****" in shown
    assert secret in caught.value.output  # the transcript keeps what really happened


@pytest.mark.parametrize(
    "tool",
    ["patchd-no-such-tool", "/nonexistent/bin/apt-get"],
    ids=["on-path", "absolute"],
)
def test_missing_tool_raises_tool_not_found(tool: str) -> None:
    with pytest.raises(ToolNotFoundError) as caught:
        process.run([tool, "--version"], timeout_s=30)

    assert caught.value.tool == tool
    assert str(caught.value).startswith(f"{tool} is not installed")


def test_missing_tool_is_reported_by_start_and_stream_too() -> None:
    with pytest.raises(ToolNotFoundError):
        process.start(["patchd-no-such-tool"], timeout_s=30)
    with (
        pytest.raises(ToolNotFoundError),
        process.stream_stdout(["patchd-no-such-tool"], timeout_s=30),
    ):
        pass


def test_empty_argv_is_refused() -> None:
    with pytest.raises(ValueError, match="empty argv"):
        process.run([], timeout_s=30)


def test_cwd_is_where_the_command_runs(tmp_path: Path) -> None:
    result = process.run(["pwd"], timeout_s=30, cwd=str(tmp_path))

    assert result.stdout == f"{tmp_path}\n"


# --- timeouts stop the whole process group ---------------------------------------------


@pytest.mark.usefixtures("each_wait")
def test_timeout_stops_the_command_and_everything_it_started(pids: Pids) -> None:
    script = "sleep 100 & echo pids $$ $!; sleep 100; echo never"

    with pytest.raises(CommandTimeout) as caught:
        bounded(lambda: process.run(sh(script), timeout_s=SHORT_TIMEOUT_S, on_line=pids.on_line))

    error = caught.value
    assert error.exit_code is ExitCode.TEMPORARY
    assert int(error.exit_code) == 75
    assert error.returncode is None
    assert error.timeout_s == SHORT_TIMEOUT_S
    assert error.argv == tuple(sh(script))
    assert "timed out" in str(error)
    assert "pids" in error.output
    assert "never" not in error.output
    assert len(pids.seen) == 2
    assert survivors(pids.seen) == []


@pytest.mark.usefixtures("each_wait")
def test_timeout_kills_a_child_that_ignores_sigterm(pids: Pids) -> None:
    # The leader dies of SIGTERM; its child ignores it and holds the output pipes.
    script = "(trap '' TERM; exec sleep 100) & echo pids $$ $!; wait"

    with pytest.raises(CommandTimeout):
        bounded(lambda: process.run(sh(script), timeout_s=SHORT_TIMEOUT_S, on_line=pids.on_line))

    assert survivors(pids.seen) == []


@pytest.mark.usefixtures("each_wait")
def test_leader_that_exits_but_leaves_a_child_holding_its_output_times_out(
    pids: Pids,
) -> None:
    script = "sleep 100 & echo pids $!; exit 0"

    with pytest.raises(CommandTimeout) as caught:
        bounded(lambda: process.run(sh(script), timeout_s=SHORT_TIMEOUT_S, on_line=pids.on_line))

    assert "pids" in caught.value.output
    assert survivors(pids.seen) == []


@pytest.mark.usefixtures("each_wait")
def test_leftovers_holding_the_output_are_stopped_after_a_grace(
    monkeypatch: pytest.MonkeyPatch, pids: Pids
) -> None:
    monkeypatch.setattr(process, "KILL_GRACE_S", 0.2)
    script = "sleep 100 & echo pids $!; echo done; exit 3"

    result = bounded(
        lambda: process.run(sh(script), timeout_s=60, ok_codes=(3,), on_line=pids.on_line)
    )

    assert result.returncode == 3  # judged by the command itself, which finished in time
    assert result.stdout.endswith("done\n")
    assert survivors(pids.seen) == []


@pytest.mark.usefixtures("each_wait")
def test_a_finished_command_leaves_a_detached_child_alone(pids: Pids) -> None:
    # A child that closed the pipes is not waited for (a service started on purpose).
    script = "sleep 100 >/dev/null 2>&1 & echo pids $!"

    result = bounded(lambda: process.run(sh(script), timeout_s=30, on_line=pids.on_line))

    assert result.returncode == 0
    assert is_running(pids.seen[0])


def test_timeout_redacts_secrets() -> None:
    secret = "s3cret-password"

    with pytest.raises(CommandTimeout) as caught:
        process.run(sh(f"echo {secret}; sleep 100"), timeout_s=SHORT_TIMEOUT_S, redact=[secret])

    assert secret not in str(caught.value)
    assert "****" in str(caught.value)


@pytest.mark.usefixtures("each_wait")
def test_a_command_ignoring_sigterm_is_killed_after_the_grace(
    monkeypatch: pytest.MonkeyPatch, pids: Pids
) -> None:
    monkeypatch.setattr(process, "KILL_GRACE_S", 0.2)
    # Ignores SIGTERM itself: only SIGKILL after the grace ends it.
    script = "trap '' TERM; echo pids $$; while :; do sleep 0.05; done"

    with pytest.raises(CommandTimeout):
        bounded(lambda: process.run(sh(script), timeout_s=SHORT_TIMEOUT_S, on_line=pids.on_line))

    assert survivors(pids.seen) == []


# --- output capture ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "limit", "elided"),
    [(4096, 4096, 0), (4097, 4096, 1), (10_000, 4096, 10_000 - 4096), (10, 4096, 0)],
    ids=["exactly-the-limit", "one-over", "far-over", "small"],
)
def test_output_over_the_limit_loses_its_middle(size: int, limit: int, elided: int) -> None:
    script = f"printf H; head -c {size - 2} /dev/zero | tr '\\0' x; printf T"

    result = process.run(sh(script), timeout_s=30, max_output_bytes=limit)

    assert result.stdout.startswith("Hx")
    assert result.stdout.endswith("xT")
    if elided:
        marker = f"\n[... {elided} bytes elided ...]\n"
        assert marker in result.stdout
        assert len(result.stdout) == limit + len(marker)
    else:
        assert "elided" not in result.stdout
        assert len(result.stdout) == size


@pytest.mark.parametrize("with_on_line", [False, True], ids=["captured", "captured-and-streamed"])
def test_huge_output_is_captured_in_bounded_memory(with_on_line: bool) -> None:
    total = 8 * 1024 * 1024  # one line without a newline
    streamed = [0]

    def count(line: str) -> None:
        streamed[0] += len(line)

    tracemalloc.start()
    try:
        result = process.run(
            sh(f"head -c {total} /dev/zero | tr '\\0' x"),
            timeout_s=60,
            max_output_bytes=4096,
            on_line=count if with_on_line else None,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < total // 4, f"capture peaked at {peak} bytes for {total} bytes of output"
    assert f"[... {total - 4096} bytes elided ...]" in result.stdout
    if with_on_line:
        assert streamed[0] == total  # every byte reached the callback, in pieces


def test_on_line_sees_lines_of_both_streams() -> None:
    lines: list[str] = []
    lock = threading.Lock()

    def collect(line: str) -> None:
        with lock:
            lines.append(line)

    process.run(
        sh("echo one; echo two >&2; echo three; printf 'no newline' >&2"),
        timeout_s=30,
        on_line=collect,
    )

    assert sorted(lines) == ["no newline", "one", "three", "two"]
    assert lines.index("one") < lines.index("three")


@pytest.mark.parametrize(
    ("stdout", "stderr", "output"),
    [
        ("out\n", "", "out\n"),
        ("", "err\n", "err\n"),
        ("out\n\n", "err\n", "out\nerr\n"),
        ("", "", ""),
    ],
    ids=["stdout-only", "stderr-only", "both", "neither"],
)
def test_result_output_is_stdout_then_stderr(stdout: str, stderr: str, output: str) -> None:
    assert CommandResult(("x",), 0, stdout, stderr, 0.0).output == output


# --- environment -------------------------------------------------------------------------


def env_of(result: CommandResult) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_environment_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHD_TEST_SECRET", "do-not-pass")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("HOME", "/home/patchd-test")
    monkeypatch.setenv("PATH", f"/opt/custom/bin:relative/bin::{os.environ['PATH']}")

    env = env_of(process.run(["env"], timeout_s=30))

    assert "PATCHD_TEST_SECRET" not in env
    assert env["LC_ALL"] == env["LANG"] == env["LANGUAGE"] == "C"
    assert env["TERM"] == "dumb"
    assert env["HOME"] == "/home/patchd-test"
    assert env["PATH"].startswith(SYSTEM_PATH + ":")
    entries = env["PATH"].split(":")
    assert "/opt/custom/bin" in entries
    assert "relative/bin" not in entries
    assert "" not in entries
    assert len(entries) == len(set(entries))


def test_env_adds_to_the_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHD_TEST_SECRET", "do-not-pass")

    env = env_of(
        process.run(
            ["env"], timeout_s=30, env={"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
        )
    )

    assert env["DEBIAN_FRONTEND"] == "noninteractive"
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["TERM"] == "dumb"
    assert "PATCHD_TEST_SECRET" not in env


def test_base_environment_keeps_only_what_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("PYTHONPATH", "/evil")
    monkeypatch.setenv("LD_PRELOAD", "/evil.so")
    monkeypatch.setenv("APT_CONFIG", "/evil.conf")

    env = process.base_environment({"EXTRA": "1"})

    assert env["https_proxy"] == "http://proxy.example:3128"
    assert env["EXTRA"] == "1"
    for dropped in ("PYTHONPATH", "LD_PRELOAD", "APT_CONFIG"):
        assert dropped not in env


# --- input ---------------------------------------------------------------------------------


def test_input_text_reaches_standard_input() -> None:
    result = process.run(["cat"], timeout_s=30, input_text="hello\nwörld\n")

    assert result.stdout == "hello\nwörld\n"


def test_without_input_standard_input_is_empty() -> None:
    result = bounded(lambda: process.run(["cat"], timeout_s=30))

    assert result.stdout == ""


def test_large_input_to_a_command_that_does_not_read_it_still_times_out(pids: Pids) -> None:
    with pytest.raises(CommandTimeout):
        bounded(
            lambda: process.run(
                sh("echo pids $$; exec sleep 100"),
                timeout_s=SHORT_TIMEOUT_S,
                input_text="x" * 1_000_000,
                on_line=pids.on_line,
            )
        )

    assert survivors(pids.seen) == []


def test_input_a_command_ignores_is_dropped_cleanly() -> None:
    result = process.run(["true"], timeout_s=30, input_text="x" * 1_000_000)
    del result
    gc.collect()  # an unclosed stdin pipe would warn here, and warnings are errors

    assert process.run(sh("head -c 3"), timeout_s=30, input_text="x" * 1_000_000).stdout == "xxx"


# --- start: other work while a command runs -------------------------------------------


@pytest.mark.usefixtures("each_wait")
def test_start_returns_while_the_command_runs(tmp_path: Path) -> None:
    go = tmp_path / "go"
    # Cannot finish before the test creates the file, so start() must return first.
    waiting = process.start(
        sh(f"while [ ! -e '{go}' ]; do sleep 0.01; done; echo finished"), timeout_s=30
    )
    try:
        other = process.run(["touch", str(go)], timeout_s=30)
        result = bounded(waiting.wait)
    finally:
        waiting.stop()

    assert other.returncode == 0
    assert result.stdout == "finished\n"


@pytest.mark.usefixtures("each_wait")
def test_start_wait_raises_like_run() -> None:
    command = process.start(sh("echo nope >&2; exit 4"), timeout_s=30)

    with pytest.raises(CommandError) as caught:
        command.wait()

    assert caught.value.returncode == 4
    assert str(caught.value).endswith(": nope")


@pytest.mark.usefixtures("each_wait")
def test_stop_ends_a_started_command_and_its_children(pids: Pids) -> None:
    command = process.start(
        sh("sleep 100 & echo pids $$ $!; wait"), timeout_s=60, on_line=pids.on_line
    )
    pids.wait_reported()

    bounded(command.stop)

    assert survivors(pids.seen) == []


@pytest.mark.usefixtures("each_wait")
def test_stop_after_the_command_finished_is_harmless() -> None:
    command = process.start(["true"], timeout_s=30)
    assert command.wait().returncode == 0

    command.stop()

    assert command.wait().returncode == 0


# --- stream_stdout --------------------------------------------------------------------------


@pytest.mark.usefixtures("each_wait")
def test_stream_reads_everything_then_reports_status_and_stderr() -> None:
    with process.stream_stdout(
        sh("printf 'a\\nb\\n'; echo oops >&2; exit 3"), timeout_s=30
    ) as command:
        data = command.stdout.read()

    assert data == b"a\nb\n"
    assert command.returncode == 3
    assert command.stderr == "oops\n"


@pytest.mark.usefixtures("each_wait")
def test_stream_lets_the_caller_stop_early_and_ends_the_command(pids: Pids) -> None:
    script = "echo warming up >&2; sleep 100 & echo pids $$ $!; exec yes"

    def read_a_little() -> tuple[bytes, process.StreamedCommand]:
        with process.stream_stdout(sh(script), timeout_s=60) as command:
            pids.on_line(command.stdout.readline().decode().strip())
            first = command.stdout.read(100)
        return first, command

    first, command = bounded(read_a_little)

    assert first == b"y\n" * 50
    assert command.returncode == -signal.SIGPIPE
    assert command.stderr == "warming up\n"
    assert len(pids.seen) == 2
    assert survivors(pids.seen) == []


@pytest.mark.usefixtures("each_wait")
def test_stream_watchdog_stops_a_command_that_runs_too_long(pids: Pids) -> None:
    def read_all() -> tuple[bytes, process.StreamedCommand]:
        with process.stream_stdout(
            sh("echo pids $$ >&2; exec sleep 100"), timeout_s=SHORT_TIMEOUT_S
        ) as command:
            data = command.stdout.read()
        return data, command

    data, command = bounded(read_all)
    pids.on_line(command.stderr.strip())

    assert data == b""
    assert command.returncode == -signal.SIGTERM
    assert survivors(pids.seen) == []


# --- how an exit is waited for ---------------------------------------------------------------


def test_the_exit_is_awaited_on_a_process_descriptor_where_the_kernel_gives_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_pidfd()
    opened: list[int | None] = []
    real_open = process._open_pidfd

    def spy_open(pid: int) -> int | None:
        opened.append(real_open(pid))
        return opened[-1]

    monkeypatch.setattr(process, "_open_pidfd", spy_open)
    waits: list[tuple[int, float | None]] = []
    real_wait = subprocess.Popen.wait

    def spy_wait(self: subprocess.Popen[bytes], timeout: float | None = None) -> int:
        waits.append((self.pid, timeout))
        return real_wait(self, timeout)

    monkeypatch.setattr(subprocess.Popen, "wait", spy_wait)

    command = process.start(sh("sleep 0.2; echo done"), timeout_s=30)
    result = command.wait()

    # Other tests' leftovers may be reaped meanwhile: only this command's waits count.
    timed_waits = [timeout for pid, timeout in waits if pid == command._proc.pid]
    assert result.stdout == "done\n"
    assert len(opened) == 1
    assert opened[0] is not None
    assert timed_waits == [None]  # only the reaping, after the descriptor said it ended
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(opened[0])  # closed again


@pytest.mark.parametrize("refused", [True, False], ids=["pidfd-refused", "no-pidfd"])
def test_without_a_process_descriptor_popen_wait_waits_with_the_timeout(
    monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    if refused:
        monkeypatch.setattr(os, "pidfd_open", _enosys)
    else:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    waits: list[tuple[int, float | None]] = []
    real_wait = subprocess.Popen.wait

    def spy_wait(self: subprocess.Popen[bytes], timeout: float | None = None) -> int:
        waits.append((self.pid, timeout))
        return real_wait(self, timeout)

    monkeypatch.setattr(subprocess.Popen, "wait", spy_wait)

    command = process.start(sh("echo done"), timeout_s=30)
    result = command.wait()

    timed_waits = [timeout for pid, timeout in waits if pid == command._proc.pid]
    assert result.stdout == "done\n"
    assert len(timed_waits) == 1
    assert timed_waits[0] is not None
    assert 0 < timed_waits[0] <= 30


@pytest.mark.usefixtures("each_wait")
def test_a_timeout_longer_than_poll_can_wait_is_allowed() -> None:
    """The Windows service host gives the agent 40 days: more milliseconds than poll(2)
    takes in one call (a C int, ~24.8 days). The command still runs and is waited for."""
    running = process.start([sys.executable, "-c", "print('done')"], timeout_s=40 * 86_400.0)
    result = running.wait()
    assert (result.returncode, result.stdout) == (0, "done\n")


SLEEPER = (sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)")


@pytest.fixture
def made() -> Iterator[list[process.RunningCommand]]:
    """Commands a test starts: all stopped after it, whatever happened."""
    commands: list[process.RunningCommand] = []
    yield commands
    process.stop_all(*commands)


def _ahead(
    made: list[process.RunningCommand], *starts: dict[str, Any]
) -> list[process.RunningCommand]:
    with process.recording_starts() as ahead:
        for kwargs in starts:
            made.append(process.start(**{"argv": SLEEPER, "timeout_s": 600, **kwargs}))
    assert ahead == made[-len(starts) :]
    return ahead


def test_a_command_started_ahead_is_taken_by_exactly_the_same_start(
    made: list[process.RunningCommand],
) -> None:
    (ahead,) = _ahead(made, {"env": {"PATCHD_TEST": "1"}})
    with process.started_ahead([ahead]):
        taken = process.start(SLEEPER, timeout_s=600, env={"PATCHD_TEST": "1"})
    assert taken is ahead
    assert taken.running()
    made.append(process.start(SLEEPER, timeout_s=600, env={"PATCHD_TEST": "1"}))
    assert made[-1] is not ahead  # outside the block nothing is offered
    taken.stop()
    assert not taken.running()


@pytest.mark.parametrize(
    "change",
    [
        {"argv": (*SLEEPER, "other")},
        {"env": {"PATCHD_TEST": "2"}},
        {"cwd": "/"},
        {"input_text": "yes\n"},
        {"timeout_s": 601},
        {"ok_codes": (0, 1)},
        {"max_output_bytes": 1024},
        {"redact": ("secret",)},
        {"on_line": print},  # a caller's own callback: never shared
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_start_that_differs_in_anything_starts_its_own_and_stops_the_stale_one_first(
    made: list[process.RunningCommand], change: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (ahead,) = _ahead(made, {"env": {"PATCHD_TEST": "1"}})
    seen_running: list[bool] = []
    popen = process._popen

    def spawn(*args: Any) -> Any:
        seen_running.append(ahead.running())  # the stale one, when the new one starts
        return popen(*args)

    monkeypatch.setattr(process, "_popen", spawn)
    with process.started_ahead([ahead]):
        made.append(
            process.start(
                **{"argv": SLEEPER, "timeout_s": 600, "env": {"PATCHD_TEST": "1"}, **change}
            )
        )
    assert made[-1] is not ahead
    assert made[-1].running()
    assert not ahead.running()
    if "on_line" not in change:  # no key, no look at what is offered: stopped at the end
        assert seen_running == [False]  # stopped before its replacement started


def test_a_start_of_another_program_leaves_the_offered_ones_running(
    made: list[process.RunningCommand],
) -> None:
    (ahead,) = _ahead(made, {})
    with process.started_ahead([ahead]):
        made.append(process.start(["sleep", "300"], timeout_s=600))  # a helper, not the listing
        assert ahead.running()
        taken = process.start(SLEEPER, timeout_s=600)
    assert taken is ahead
    assert taken.running()


def test_a_command_patchd_stopped_is_never_offered(made: list[process.RunningCommand]) -> None:
    (ahead,) = _ahead(made, {})
    ahead.stop()  # its starter gave up on it (a second command could not start, say)
    with process.started_ahead([ahead]):
        made.append(process.start(SLEEPER, timeout_s=600))
    assert made[-1] is not ahead
    assert made[-1].running()


def test_commands_started_ahead_are_stopped_when_the_block_fails(
    made: list[process.RunningCommand],
) -> None:
    ahead = _ahead(made, {}, {"argv": ["sleep", "300"]})
    with pytest.raises(RuntimeError, match="no backend"), process.started_ahead(ahead):
        raise RuntimeError("no backend")
    assert not any(command.running() for command in ahead)


def test_stopping_several_stops_each_even_when_one_cannot_be_stopped(
    made: list[process.RunningCommand], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _ahead(made, {}, {"argv": ["sleep", "300"]})
    stop = process.RunningCommand.stop

    def failing(self: process.RunningCommand) -> None:
        if self is first:
            raise OSError("cannot signal it")
        stop(self)

    monkeypatch.setattr(process.RunningCommand, "stop", failing)
    with pytest.raises(OSError, match="cannot signal it"):
        process.stop_all(first, second)
    assert not second.running()
