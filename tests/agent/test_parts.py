"""The agent's parts: its event queue, sd_notify, the watchdog, the instance lock, journald logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from patchd.agent.instance import InstanceLock
from patchd.agent.notify import Notifier, Watchdog
from patchd.agent.schedule import EventQueue
from patchd.errors import ExitCode


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_timers_fire_in_due_order_and_posted_events_come_first() -> None:
    clock = FakeClock()
    events = EventQueue(clock)
    events.after("late", 10)
    events.after("early", 5)
    events.after("gone", 1)
    events.cancel("gone")
    events.post("hello")
    assert events.next() == "hello"
    clock.now += 20
    assert [events.next(), events.next()] == ["early", "late"]
    assert events.due_in("late") is None


def test_setting_a_timer_again_replaces_it() -> None:
    clock = FakeClock()
    events = EventQueue(clock)
    events.after("cycle", 100)
    events.after("cycle", 1)
    assert events.due_in("cycle") == 1
    clock.now += 1
    assert events.next() == "cycle"


def test_a_post_from_another_thread_wakes_a_waiting_loop() -> None:
    events = EventQueue()
    events.after("far-away", 3600)
    threading.Timer(0.05, events.post, args=("wake",)).start()
    assert events.next() == "wake"


@pytest.fixture
def listener(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    return sock


def test_notifier_speaks_the_sd_notify_protocol(listener: socket.socket, tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    notifier.ready("scanning")
    message = listener.recv(4096).decode().splitlines()
    assert "READY=1" in message
    assert "STATUS=scanning" in message
    assert f"MAINPID={os.getpid()}" in message
    notifier.reloading()
    reloading = listener.recv(4096).decode()
    assert "RELOADING=1" in reloading
    assert "MONOTONIC_USEC=" in reloading
    listener.close()


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"patchd-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(30)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        sock.close()


def test_outside_systemd_notifications_do_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready("x")  # no socket, no error
    assert notifier.watchdog_interval_s is None


def test_watchdog_pings_only_while_the_loop_is_alive(
    listener: socket.socket, tmp_path: Path
) -> None:
    clock = FakeClock()
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"})
    assert notifier.watchdog_interval_s == 2.0
    watchdog = Watchdog(notifier, clock)
    watchdog.beat()
    assert watchdog.tick()
    assert listener.recv(4096) == b"WATCHDOG=1"
    clock.now += 10  # the loop has not beaten for 5 intervals: no more pings
    assert not watchdog.tick()
    watchdog.busy(3600)  # a long step declared with its own limit keeps it alive
    assert watchdog.tick()
    clock.now += 3601
    assert not watchdog.tick()
    listener.close()


def test_watchdog_for_another_pid_is_ignored() -> None:
    notifier = Notifier(
        {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval_s is None


def test_one_agent_per_state_directory(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        # Another process: flock is per open file description, so a child shows it best.
        child = subprocess.run(
            [sys.executable, "-c",
             "import sys; from pathlib import Path; from patchd.agent.instance import InstanceLock\n"
             "from patchd.errors import TemporaryFailure\n"
             "try:\n    InstanceLock(Path(sys.argv[1])).acquire()\nexcept TemporaryFailure as e:\n"
             "    print(e.message); sys.exit(e.exit_code)\n", str(tmp_path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert child.returncode == ExitCode.TEMPORARY
        assert f"(pid {os.getpid()})" in child.stdout
    finally:
        first.release()
    second = InstanceLock(tmp_path)
    second.acquire()  # released: free again
    second.release()


def test_logs_carry_journald_priorities_when_stderr_is_the_journal(tmp_path: Path) -> None:
    code = (
        "import logging, os, sys\n"
        "st = os.fstat(2)\n"
        "os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'\n"
        "from patchd.cli.logsetup import setup_logging\n"
        "setup_logging(debug=False)\n"
        "logging.getLogger('patchd.x').warning('careful')\n"
        "logging.getLogger('patchd.x').info('fine')\n"
    )
    with (tmp_path / "err").open("w") as err:
        subprocess.run([sys.executable, "-c", code], stderr=err, check=True, timeout=60)
    assert (tmp_path / "err").read_text().splitlines() == ["<4>careful", "<6>fine"]


def test_a_listener_that_stops_reading_never_blocks_the_agent(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})

        def flood() -> None:  # far more than the socket's queue holds: sends past it are dropped
            for i in range(2000):
                notifier.status(f"status {i}")

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        sender.join(timeout=60)  # a bound for a broken build, not a timing assertion
        assert not sender.is_alive(), "sending blocked on a listener that does not read"
        assert listener.recv(4096).startswith(b"STATUS=status 0")
    finally:
        listener.close()


WORKER_PROBE = """
import gc, json, os
from patchd.agent.service import fork_worker

kept = [[n] for n in range(1000)]  # the service's own objects (tracked by the collector)
read_end, write_end = os.pipe()
pid = fork_worker()
if pid == 0:  # the worker
    made = [0]  # made after the fork: the worker's own collections see it
    collected = lambda o: any(x is o for x in gc.get_objects())
    gc.collect()
    os.write(write_end, json.dumps({"kept": collected(kept[0]), "made": collected(made)}).encode())
    os._exit(0)
os.close(write_end)
worker = json.loads(os.read(read_end, 4096))
os.waitpid(pid, 0)
print(json.dumps({"worker": worker, "service": any(x is kept[0] for x in gc.get_objects())}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the service forks its workers where it can")
def test_a_worker_leaves_the_service_objects_out_of_its_collections() -> None:
    import json

    # In a process of its own: the test process has threads, which a fork must not copy.
    found = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    answer = json.loads(found.stdout)
    assert answer["worker"] == {"kept": False, "made": True}  # frozen at the fork; its own not
    assert answer["service"] is True  # the service takes its objects back at once


PRELOAD_PROBE = """
import json, os, sys, types
from patchd.agent.service import _preload, fork_worker
from patchd.discovery import eol

if sys.argv[1] == "broken":
    def broken(text, *, source):
        raise ValueError(f"{source}: malformed")
    eol.parse_table = broken
_preload(types.SimpleNamespace(backends=()))
service = eol.load_table.cache_info()
read_end, write_end = os.pipe()
pid = fork_worker()
if pid == 0:  # the worker, as a cycle's discovery uses the table
    try:
        eol.eol_status("debian", "12", today=__import__("datetime").date(2026, 1, 1))
        found = "read"
    except ValueError as e:
        found = str(e)
    info = eol.load_table.cache_info()
    os.write(write_end, json.dumps({"found": found, "misses": info.misses}).encode())
    os._exit(0)
os.close(write_end)
worker = json.loads(os.read(read_end, 4096))
os.waitpid(pid, 0)
print(json.dumps({"service": {"cached": service.currsize, "misses": service.misses}, "worker": worker}))
"""


def _preload_probe(mode: str) -> dict[str, Any]:
    import json

    found = subprocess.run(
        [sys.executable, "-c", PRELOAD_PROBE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, Any] = json.loads(found.stdout)
    return answer


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the service forks its workers where it can")
def test_the_service_reads_the_end_of_life_table_once_for_every_worker() -> None:
    answer = _preload_probe("shipped")
    assert answer["service"] == {"cached": 1, "misses": 1}  # read and checked in the service
    assert answer["worker"] == {"found": "read", "misses": 1}  # the worker read it no more


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the service forks its workers where it can")
def test_a_broken_table_is_left_to_each_discovery_to_report() -> None:
    answer = _preload_probe("broken")
    assert answer["service"] == {"cached": 0, "misses": 1}  # the service starts all the same
    assert answer["worker"]["found"] == "patchd/data/eol.json: malformed"


@pytest.mark.parametrize("prune_fails", [False, True], ids=["prunes", "prune-fails"])
def test_a_cycle_prunes_the_history_even_when_it_fails(
    prune_fails: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from patchd.agent import service
    from patchd.config import AgentConfig
    from patchd.errors import PatchdError
    from patchd.runs import retention
    from patchd.session import Session
    from patchd.target import Target

    def failing_scan(*args: object, **kwargs: object) -> None:
        raise PatchdError("apt-get failed")

    pruned: list[Path] = []

    def prune_if_due(store: object, state_dir: Path, *args: object) -> None:
        pruned.append(state_dir)
        if prune_fails:
            raise RuntimeError("the disk went away")

    monkeypatch.setattr(service, "scan", failing_scan)
    monkeypatch.setattr(retention, "prune_if_due", prune_if_due)
    config = AgentConfig()
    agent = service.Agent(None, config, Target.at(tmp_path), tmp_path / "state")
    with Session(config, Target.at(tmp_path), tmp_path / "state") as session:
        assert agent._cycle_task(session) is None  # the cycle's failure stands
    assert pruned == [tmp_path / "state"]
    assert ("history not pruned: the disk went away" in caplog.text) is prune_fails
    assert "cycle failed: apt-get failed" in caplog.text
