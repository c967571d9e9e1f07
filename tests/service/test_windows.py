"""The Windows service, as far as Linux can test it: sc.exe argv, paths, the host's stop path.

pywin32 and sc.exe exist only on Windows; everything they are given is data built here,
so it is asserted exactly. The host's child-process logic is platform-neutral and runs
for real with a stand-in agent (on POSIX, interrupt() sends SIGTERM where Windows sends
CTRL_BREAK).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path, PureWindowsPath

import pytest

from patchd.service import winhost
from patchd.service.windows import (
    WindowsPaths,
    install_argvs,
    parse_query,
    query_argv,
    uninstall_argvs,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "sc-query"
PATHS = WindowsPaths(
    install_dir=PureWindowsPath(r"C:\Program Files\patchd"),
    program_data=PureWindowsPath(r"D:\ProgramData"),
)
JOIN_TIMEOUT_S = 60


def test_service_is_created_with_recovery_actions_and_locked_down_data() -> None:
    assert install_argvs(PATHS) == [
        [
            "sc.exe",
            "create",
            "patchd-agent",
            "binPath=",
            '"C:\\Program Files\\patchd\\python\\python.exe" -m patchd.service.winhost',
            "start=",
            "delayed-auto",
            "DisplayName=",
            "patchd agent",
            "obj=",
            "LocalSystem",
        ],
        [
            "sc.exe",
            "description",
            "patchd-agent",
            "Keeps this endpoint patched under a signed policy (patchd).",
        ],
        [
            "sc.exe",
            "failure",
            "patchd-agent",
            "reset=",
            "86400",
            "actions=",
            "restart/30000/restart/60000/restart/300000",
        ],
        ["sc.exe", "failureflag", "patchd-agent", "1"],
        [
            "icacls",
            "D:\\ProgramData\\patchd",
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:(OI)(CI)F",
            "*S-1-5-32-544:(OI)(CI)F",
        ],
    ]


def test_uninstall_and_query_argv() -> None:
    assert uninstall_argvs() == [
        ["sc.exe", "stop", "patchd-agent"],
        ["sc.exe", "delete", "patchd-agent"],
    ]
    assert query_argv() == ["sc.exe", "query", "patchd-agent"]


def test_agent_runs_with_programdata_paths() -> None:
    assert PATHS.agent_argv() == [
        "C:\\Program Files\\patchd\\python\\python.exe",
        "-m",
        "patchd",
        "--config",
        "D:\\ProgramData\\patchd\\agent.yaml",
        "--state-dir",
        "D:\\ProgramData\\patchd\\state",
        "agent",
    ]
    assert str(PATHS.log_dir) == "D:\\ProgramData\\patchd\\logs"


def test_parse_query_reads_the_state_of_captured_output() -> None:
    assert parse_query((DATA / "stopped.txt").read_text()) == "STOPPED"


@pytest.mark.parametrize("text", ["", "[SC] OpenService FAILED 1060:\n", "STATE :\n"])
def test_parse_query_without_a_state(text: str) -> None:
    assert parse_query(text) is None


def test_pywin32_is_not_imported_by_the_host_module() -> None:
    assert "win32serviceutil" not in sys.modules
    assert "servicemanager" not in sys.modules


STAND_IN_AGENT = """
import signal, sys, time
stopping = False
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
print("agent started", flush=True)
while not stopping:
    time.sleep(0.05)
print("agent stopped at a safe step", flush=True)
"""


def wait_for_line(log: Path, line: str) -> None:
    """Until the agent has written ``line`` (bounded; the agent writes it at once)."""
    for _ in range(int(JOIN_TIMEOUT_S / 0.05)):
        if log.exists() and line in log.read_text():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"{log} never got {line!r}")


def test_host_stops_the_agent_by_asking_it(tmp_path: Path) -> None:
    """stop() interrupts the agent, which ends by itself (exit 0); the host does not restart it."""
    host = winhost.AgentProcess([sys.executable, "-c", STAND_IN_AGENT], tmp_path / "logs")
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            host.serve()
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=serve)
    thread.start()
    log = tmp_path / "logs" / "agent.log"
    try:
        wait_for_line(log, "agent started")
    finally:
        host.stop()
        thread.join(JOIN_TIMEOUT_S)
    assert not thread.is_alive()
    assert errors == []
    assert log.read_text() == "agent started\nagent stopped at a safe step\n"
