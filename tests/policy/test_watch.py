"""The policy file watcher on real directories with real inotify (watchdog).

Calls are awaited with events, never timed: each test waits up to ``WAIT_S`` for what it
expects and then checks what happened. "Exactly one call" is shown by a sentinel: after the
call under test, one more write must give exactly one more call, which sees the sentinel.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent

from patchd.errors import ConfigError
from patchd.policy.watch import PolicyFileWatcher

DEBOUNCE_S = 0.2
WAIT_S = 10.0
SENTINEL = b"sentinel\n"


class Calls:
    """A spy ``on_change``: records what the policy file held at each call.

    ``fail`` calls raise first. ``block`` makes the first call wait for it (set by the test).
    """

    def __init__(self, path: Path, *, fail: int = 0, block: threading.Event | None = None) -> None:
        self.path = path
        self.fail = fail
        self.block = block
        self.seen: list[bytes | None] = []
        self.running = 0
        self.most_at_once = 0
        self.started = threading.Event()
        self._lock = threading.Lock()
        self._reached: dict[int, threading.Event] = {}

    def __call__(self) -> None:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.set()
        try:
            if self.block is not None and not self.seen:
                assert self.block.wait(WAIT_S)
            try:
                data: bytes | None = self.path.read_bytes()
            except FileNotFoundError:
                data = None
            with self._lock:
                self.seen.append(data)
                self._event(len(self.seen)).set()
            if len(self.seen) <= self.fail:
                raise RuntimeError("the reload went wrong")
        finally:
            with self._lock:
                self.running -= 1

    def _event(self, count: int) -> threading.Event:
        return self._reached.setdefault(count, threading.Event())

    def wait(self, count: int) -> None:
        """Wait until ``count`` calls have happened."""
        with self._lock:
            reached = self._event(count)
        assert reached.wait(WAIT_S), f"{count} calls expected, saw {len(self.seen)}: {self.seen}"


def settle(path: Path, calls: Calls) -> None:
    """Write the sentinel and wait for its one call: every call before it is then in ``seen``."""
    expected = len(calls.seen) + 1
    path.write_bytes(SENTINEL)
    calls.wait(expected)
    assert calls.seen[-1] == SENTINEL


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    directory = tmp_path / "etc"
    directory.mkdir()
    path = directory / "policy.yaml"
    path.write_bytes(b"version: 1\n")
    path.with_name("policy.yaml.sig").write_bytes(b"{}\n")
    return path


@pytest.fixture
def calls(policy: Path) -> Calls:
    return Calls(policy)


@pytest.fixture
def watcher(policy: Path, calls: Calls) -> Iterator[PolicyFileWatcher]:
    with PolicyFileWatcher(policy, calls, debounce_s=DEBOUNCE_S) as running:
        yield running


def test_a_write_gives_one_call(policy: Path, calls: Calls, watcher: PolicyFileWatcher) -> None:
    policy.write_bytes(b"version: 2\n")
    calls.wait(1)

    settle(policy, calls)
    assert calls.seen == [b"version: 2\n", SENTINEL]


def test_a_burst_of_writes_gives_one_call_after_the_last(
    policy: Path, calls: Calls, watcher: PolicyFileWatcher
) -> None:
    for i in range(20):
        policy.write_bytes(f"version: {i}\n".encode())
    calls.wait(1)

    settle(policy, calls)
    assert calls.seen == [b"version: 19\n", SENTINEL]


@pytest.mark.parametrize("origin", ["same-directory", "other-directory"])
def test_an_atomic_replace_is_seen(
    origin: str, policy: Path, calls: Calls, watcher: PolicyFileWatcher
) -> None:
    staging = policy.parent if origin == "same-directory" else policy.parent.parent
    temporary = staging / ".policy.yaml.tmp"
    temporary.write_bytes(b"version: 3\n")

    os.replace(temporary, policy)
    calls.wait(1)

    settle(policy, calls)
    assert calls.seen == [b"version: 3\n", SENTINEL]


def test_a_signature_change_is_seen(policy: Path, calls: Calls, watcher: PolicyFileWatcher) -> None:
    policy.with_name("policy.yaml.sig").write_bytes(b'{"signatures": []}\n')
    calls.wait(1)

    settle(policy, calls)
    assert calls.seen == [b"version: 1\n", SENTINEL]


def test_a_deleted_policy_is_seen(policy: Path, calls: Calls, watcher: PolicyFileWatcher) -> None:
    policy.unlink()
    calls.wait(1)

    settle(policy, calls)
    assert calls.seen == [None, SENTINEL]


def test_other_files_in_the_directory_are_ignored(
    policy: Path, calls: Calls, watcher: PolicyFileWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    judged: list[tuple[str, bool]] = []  # a spy: what the watcher made of each event
    relevant = watcher._relevant

    def spy(event: FileSystemEvent) -> bool:
        result = relevant(event)
        judged.append((Path(os.fsdecode(event.src_path)).name, result))
        return result

    monkeypatch.setattr(watcher, "_relevant", spy)
    noise = ("other.yaml", "policy.yaml.bak", "policy.yaml.sig.tmp", "xpolicy.yaml")
    for name in noise:
        (policy.parent / name).write_bytes(b"noise\n")
    (policy.parent / "policy.yaml.d").mkdir()
    (policy.parent / "other.yaml").rename(policy.parent / "renamed.yaml")

    settle(policy, calls)  # events are dispatched in order: all the noise came before

    assert calls.seen == [SENTINEL]
    assert set(noise) <= {name for name, _ in judged}
    assert {name for name, is_relevant in judged if is_relevant} == {"policy.yaml"}


def test_an_exception_in_the_callback_is_logged_and_the_watcher_goes_on(
    policy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls(policy, fail=1)
    with PolicyFileWatcher(policy, calls, debounce_s=DEBOUNCE_S):
        policy.write_bytes(b"version: 2\n")
        calls.wait(1)

        settle(policy, calls)

    assert calls.seen == [b"version: 2\n", SENTINEL]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert failures[0].name == "patchd.policy.watch"
    assert str(policy) in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)


def test_calls_never_overlap_and_a_change_during_one_gives_one_more(
    policy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    calls = Calls(policy, block=release)
    again = _LogEvent("a change arrived during the reload")
    logging.getLogger("patchd.policy.watch").addHandler(again)
    caplog.set_level(logging.DEBUG, logger="patchd.policy.watch")
    try:
        with PolicyFileWatcher(policy, calls, debounce_s=DEBOUNCE_S):
            policy.write_bytes(b"version: 2\n")
            assert calls.started.wait(WAIT_S)  # the first call is running, held
            for i in range(3):
                policy.write_bytes(f"version: {3 + i}\n".encode())
            assert again.wait(WAIT_S)  # their debounce ended while the call ran
            release.set()
            calls.wait(2)

            settle(policy, calls)
    finally:
        logging.getLogger("patchd.policy.watch").removeHandler(again)

    assert calls.seen == [b"version: 5\n", b"version: 5\n", SENTINEL]
    assert calls.most_at_once == 1


class _LogEvent(logging.Handler):
    """Sets an event when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()

    def wait(self, timeout_s: float) -> bool:
        return self.event.wait(timeout_s)


def test_stop_ends_every_thread_it_started(policy: Path, calls: Calls) -> None:
    before = set(threading.enumerate())
    watcher = PolicyFileWatcher(policy, calls, debounce_s=DEBOUNCE_S)
    watcher.start()
    policy.write_bytes(b"version: 2\n")
    calls.wait(1)
    policy.write_bytes(b"version: 3\n")  # leaves a debounce pending, or a call running

    watcher.stop()

    assert set(threading.enumerate()) - before == set()
    watcher.stop()  # a second stop does nothing


def test_a_stopped_watcher_can_be_started_again(policy: Path, calls: Calls) -> None:
    watcher = PolicyFileWatcher(policy, calls, debounce_s=DEBOUNCE_S)
    with watcher:
        pass
    with watcher:
        policy.write_bytes(b"version: 2\n")
        calls.wait(1)
    assert calls.seen == [b"version: 2\n"]


def test_a_relative_path_is_watched_in_its_directory(
    policy: Path, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(policy.parent)
    with PolicyFileWatcher(Path("policy.yaml"), calls, debounce_s=DEBOUNCE_S) as watcher:
        assert watcher.path == policy
        policy.write_bytes(b"version: 2\n")
        calls.wait(1)
    assert calls.seen == [b"version: 2\n"]


def test_a_removed_directory_is_reported(
    policy: Path, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    removed = _LogEvent("no longer seen")
    logging.getLogger("patchd.policy.watch").addHandler(removed)
    before = set(threading.enumerate())
    try:
        with PolicyFileWatcher(policy, calls, debounce_s=DEBOUNCE_S):
            shutil.rmtree(policy.parent)
            assert removed.wait(WAIT_S)
    finally:
        logging.getLogger("patchd.policy.watch").removeHandler(removed)

    assert set(threading.enumerate()) - before == set()
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == (
        f"{policy.parent} was removed: file events for policy.yaml are no longer seen"
        " (the agent still rechecks the file every policy.file_recheck seconds)"
    )


def test_a_missing_directory_is_refused_at_start(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    path = tmp_path / "not-yet" / "policy.yaml"
    watcher = PolicyFileWatcher(path, Calls(path))

    with pytest.raises(ConfigError) as caught:
        watcher.start()

    assert caught.value.message == (
        f"cannot watch the policy file {path}: {path.parent} is not a directory"
    )
    assert set(threading.enumerate()) - before == set()
    watcher.stop()


def test_starting_twice_is_a_mistake(policy: Path, watcher: PolicyFileWatcher) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        watcher.start()


@pytest.mark.parametrize("debounce_s", [0.0, -1.0, 301.0], ids=["zero", "negative", "too-long"])
def test_the_debounce_is_bounded(debounce_s: float, policy: Path) -> None:
    with pytest.raises(ValueError, match="debounce_s"):
        PolicyFileWatcher(policy, Calls(policy), debounce_s=debounce_s)
