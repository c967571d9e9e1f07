"""Tests for patchd.locks: real fcntl locks held by a child process, and crafted /proc/locks.

The child runs under a name of its own (a symlink to the interpreter called
``lockholder``), so the test knows what ``/proc/<pid>/comm`` must say. Waiting runs on a
fake clock: ``sleep`` advances ``monotonic`` and may release the lock.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from patchd import locks, process
from patchd.errors import ExitCode, LockHeldError
from patchd.locks import LockHolder, lock_holder, wait_for_locks

HOLDER_NAME = "lockholder"
HOLD_SCRIPT = """\
import fcntl, os, sys, time
f = open(sys.argv[1], "r+")
fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", os.getpid(), flush=True)
time.sleep(100)
"""
NO_SUCH_PID = 99_999_999  # above any pid_max
STARTUP_BOUND_S = 30.0  # for the child to start and take its lock


@dataclass
class HeldLock:
    """A file locked by a child process until :meth:`release`."""

    path: Path
    pid: int
    command: process.RunningCommand

    def release(self) -> None:
        self.command.stop()  # SIGTERM to the child's process group; the kernel drops its locks


def hold_lock(path: Path, interpreter: Path) -> HeldLock:
    pids: list[int] = []
    reported = threading.Event()

    def on_line(line: str) -> None:
        if line.startswith("locked "):
            pids.append(int(line.split()[1]))
            reported.set()

    command = process.start(
        [str(interpreter), "-I", "-c", HOLD_SCRIPT, str(path)], timeout_s=120, on_line=on_line
    )
    if not reported.wait(STARTUP_BOUND_S):
        command.stop()
        raise AssertionError("the lock holder never reported")
    return HeldLock(path, pids[0], command)


@pytest.fixture
def interpreter(tmp_path: Path) -> Path:
    link = tmp_path / HOLDER_NAME
    link.symlink_to(os.path.realpath(sys.executable))
    return link


@pytest.fixture
def held(tmp_path: Path, interpreter: Path) -> Iterator[HeldLock]:
    path = tmp_path / "lock"
    path.write_text("")
    lock = hold_lock(path, interpreter)
    try:
        yield lock
    finally:
        lock.release()


def device_id(path: Path) -> str:
    """``MAJOR:MINOR:INODE`` as /proc/locks writes it (hex device numbers)."""
    st = path.stat()
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


class FakeClock:
    """``monotonic`` and ``sleep`` for wait_for_locks; sleeping only moves the clock."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
        if self._on_sleep is not None:
            self._on_sleep(len(self.sleeps))


# --- lock_holder on real locks ---------------------------------------------------------


def test_lock_holder_names_the_holding_process(held: HeldLock) -> None:
    assert lock_holder(held.path) == LockHolder(held.pid, HOLDER_NAME)


def test_the_kernel_lists_the_lock_under_the_device_id_patchd_computes(held: HeldLock) -> None:
    table = Path("/proc/locks").read_text()
    lines = [line.split() for line in table.splitlines()]

    assert any(f[4] == str(held.pid) and f[5] == device_id(held.path) for f in lines if len(f) > 5)


def test_an_unlocked_file_has_no_holder(held: HeldLock, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("")

    assert lock_holder(other) is None
    assert lock_holder(held.path) is not None  # the held lock is visible meanwhile


def test_a_released_lock_has_no_holder(held: HeldLock) -> None:
    held.release()

    assert lock_holder(held.path) is None


@pytest.mark.parametrize("missing", ["file", "proc-locks"], ids=["missing-file", "no-proc-locks"])
def test_nothing_to_read_means_no_holder(held: HeldLock, tmp_path: Path, missing: str) -> None:
    if missing == "file":
        assert lock_holder(tmp_path / "absent") is None
    else:
        assert lock_holder(held.path, proc_locks=tmp_path / "no-locks") is None


# --- wait_for_locks on a fake clock ------------------------------------------------------


def test_wait_returns_at_once_when_nothing_is_held(tmp_path: Path) -> None:
    free = tmp_path / "free"
    free.write_text("")
    clock = FakeClock()

    wait_for_locks([free, tmp_path / "absent"], 60, sleep=clock.sleep, monotonic=clock.monotonic)

    assert clock.sleeps == []


def test_wait_gives_up_after_the_timeout_naming_the_holder(held: HeldLock) -> None:
    clock = FakeClock()

    with pytest.raises(LockHeldError) as caught:
        wait_for_locks([held.path], 60, sleep=clock.sleep, monotonic=clock.monotonic)

    error = caught.value
    assert error.exit_code is ExitCode.TEMPORARY
    assert int(error.exit_code) == 75
    assert (error.holder_pid, error.holder_name) == (held.pid, HOLDER_NAME)
    assert error.lock_path == str(held.path)
    assert error.message == (
        f"{held.path} is held by process {held.pid} ({HOLDER_NAME}); waited 60 s"
    )
    assert sum(clock.sleeps) == pytest.approx(60)
    assert lock_holder(held.path) == LockHolder(held.pid, HOLDER_NAME)  # still held, untouched


def test_wait_backs_off_exponentially_with_jitter_up_to_a_cap(held: HeldLock) -> None:
    clock = FakeClock()

    with pytest.raises(LockHeldError):
        wait_for_locks([held.path], 100, sleep=clock.sleep, monotonic=clock.monotonic)

    nominal = locks.BACKOFF_FIRST_S
    for seconds in clock.sleeps[:-1]:  # the last one is cut to what remains
        assert nominal / 2 <= seconds <= nominal
        nominal = min(nominal * 2, locks.BACKOFF_MAX_S)
    assert max(clock.sleeps) <= locks.BACKOFF_MAX_S
    assert len(clock.sleeps) < 30


def test_wait_returns_once_the_holder_lets_go(held: HeldLock) -> None:
    def release_on_second_sleep(count: int) -> None:
        if count == 2:
            held.release()

    clock = FakeClock(release_on_second_sleep)

    wait_for_locks([held.path], 300, sleep=clock.sleep, monotonic=clock.monotonic)

    assert len(clock.sleeps) == 2
    assert lock_holder(held.path) is None


def test_a_zero_timeout_fails_without_sleeping(held: HeldLock) -> None:
    clock = FakeClock()

    with pytest.raises(LockHeldError):
        wait_for_locks([held.path], 0, sleep=clock.sleep, monotonic=clock.monotonic)

    assert clock.sleeps == []


def test_wait_names_whichever_of_several_locks_is_held(held: HeldLock, tmp_path: Path) -> None:
    free = tmp_path / "free"
    free.write_text("")
    clock = FakeClock()

    with pytest.raises(LockHeldError) as caught:
        wait_for_locks([free, held.path], 5, sleep=clock.sleep, monotonic=clock.monotonic)

    assert caught.value.lock_path == str(held.path)


# --- parsing /proc/locks --------------------------------------------------------------------


# Pids in these tables are above any pid_max (2**22), like NO_SUCH_PID: a live process with
# the same pid would give the holder a name and make the case fail by chance.
@dataclass(frozen=True)
class TableCase:
    table: str  # {dev} is the target's MAJOR:MINOR:INODE
    expected: LockHolder | None


TABLE_CASES = {
    "posix-holder": TableCase(
        f"1: POSIX  ADVISORY  WRITE {NO_SUCH_PID} {{dev}} 0 EOF\n", LockHolder(NO_SUCH_PID, None)
    ),
    "holder-among-others": TableCase(
        "1: POSIX  ADVISORY  WRITE 99999001 00:1f:77 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 99999002 {dev} 0 EOF\n"
        "3: POSIX  ADVISORY  READ 99999003 fe:01:12 128 128\n",
        LockHolder(99999002, None),
    ),
    "waiter-line-is-not-a-holder": TableCase(
        "1: POSIX  ADVISORY  WRITE 99999001 00:1f:77 0 EOF\n"
        "1: -> POSIX  ADVISORY  WRITE 99999002 {dev} 0 EOF\n",
        None,
    ),
    "holder-before-its-waiters": TableCase(
        "1: POSIX  ADVISORY  WRITE 99999001 {dev} 0 EOF\n"
        "1: -> POSIX  ADVISORY  WRITE 99999002 {dev} 0 EOF\n"
        "1: -> POSIX  ADVISORY  WRITE 99999003 {dev} 0 EOF\n",
        LockHolder(99999001, None),
    ),
    "ofd-lock-has-no-pid": TableCase(
        "1: OFDLCK ADVISORY  WRITE -1 {dev} 0 EOF\n", LockHolder(None, None)
    ),
    "pid-zero": TableCase("1: POSIX  ADVISORY  WRITE 0 {dev} 0 EOF\n", LockHolder(None, None)),
    "non-numeric-pid": TableCase(
        "1: POSIX  ADVISORY  WRITE ??? {dev} 0 EOF\n", LockHolder(None, None)
    ),
    "longer-inode-is-another-file": TableCase(
        "1: POSIX  ADVISORY  WRITE 99999001 {dev}7 0 EOF\n", None
    ),
    "inode-on-another-device": TableCase(
        "1: POSIX  ADVISORY  WRITE 99999001 {other_device} 0 EOF\n", None
    ),
    "junk-and-short-lines": TableCase("\n\ngarbage\n1: POSIX ADVISORY\n\x00\xff\n", None),
    "empty": TableCase("", None),
}


@pytest.mark.parametrize("case", TABLE_CASES.values(), ids=TABLE_CASES.keys())
def test_proc_locks_parsing(case: TableCase, tmp_path: Path) -> None:
    target = tmp_path / "lock"
    target.write_text("")
    dev = device_id(target)
    major, minor, inode = dev.split(":")
    other_device = f"{major}:{int(minor, 16) + 1:02x}:{inode}"
    table = tmp_path / "locks"
    table.write_text(case.table.format(dev=dev, other_device=other_device), errors="replace")

    assert lock_holder(target, proc_locks=table) == case.expected


def test_proc_locks_holder_name_comes_from_proc(tmp_path: Path) -> None:
    target = tmp_path / "lock"
    target.write_text("")
    table = tmp_path / "locks"
    table.write_text(f"1: POSIX  ADVISORY  WRITE {os.getpid()} {device_id(target)} 0 EOF\n")
    own_name = Path("/proc/self/comm").read_text().strip()

    assert lock_holder(target, proc_locks=table) == LockHolder(os.getpid(), own_name)
