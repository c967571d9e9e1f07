"""The agent as a Windows service: paths under ProgramData and the ``sc.exe`` calls.

The service is hosted by the bundled ``python.exe`` running :mod:`patchd.service.winhost`
(pywin32's ServiceFramework). Configuration, state and logs live under
``%ProgramData%\\patchd``, readable only by SYSTEM and Administrators (``icacls``), since
POSIX modes do not apply. Recovery actions (``sc failure``) restart the service after a
crash, as systemd's ``Restart=always`` does. Everything here is data and argv lists, so
it is tested on any platform; only the host needs Windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PureWindowsPath

SERVICE_NAME = "patchd-agent"
DISPLAY_NAME = "patchd agent"
DESCRIPTION = "Keeps this endpoint patched under a signed policy (patchd)."
DEFAULT_INSTALL_DIR = PureWindowsPath(r"C:\Program Files\patchd")
DEFAULT_PROGRAM_DATA = PureWindowsPath(r"C:\ProgramData")
FAILURE_RESET_S = 86_400  # the failure count starts again after a day without one
RESTART_DELAYS_MS = (30_000, 60_000, 300_000)  # first, second, later failures
STOP_WAIT_HINT_S = 3 * 3600  # as systemd's TimeoutStopSec: a package transaction finishes


@dataclass(frozen=True)
class WindowsPaths:
    """Where the Windows service keeps its files."""

    install_dir: PureWindowsPath = DEFAULT_INSTALL_DIR
    program_data: PureWindowsPath = DEFAULT_PROGRAM_DATA

    @property
    def python(self) -> PureWindowsPath:
        return self.install_dir / "python" / "python.exe"

    @property
    def data_dir(self) -> PureWindowsPath:
        return self.program_data / "patchd"

    @property
    def config(self) -> PureWindowsPath:
        return self.data_dir / "agent.yaml"

    @property
    def state_dir(self) -> PureWindowsPath:
        return self.data_dir / "state"

    @property
    def log_dir(self) -> PureWindowsPath:
        return self.data_dir / "logs"

    def agent_argv(self) -> list[str]:
        """What the service host runs: the agent with ProgramData paths made explicit."""
        return [
            str(self.python),
            "-m",
            "patchd",
            "--config",
            str(self.config),
            "--state-dir",
            str(self.state_dir),
            "agent",
        ]


def _quote(path: PureWindowsPath) -> str:
    return f'"{path}"'


def install_argvs(paths: WindowsPaths) -> list[list[str]]:
    """Create the service, its description and recovery actions, and lock ProgramData down."""
    bin_path = f"{_quote(paths.python)} -m patchd.service.winhost"
    actions = "/".join(f"restart/{ms}" for ms in RESTART_DELAYS_MS)
    return [
        # sc.exe's syntax: each option name ends in "=" and its value is the next argument.
        [
            "sc.exe",
            "create",
            SERVICE_NAME,
            "binPath=",
            bin_path,
            "start=",
            "delayed-auto",
            "DisplayName=",
            DISPLAY_NAME,
            "obj=",
            "LocalSystem",
        ],
        ["sc.exe", "description", SERVICE_NAME, DESCRIPTION],
        ["sc.exe", "failure", SERVICE_NAME, "reset=", str(FAILURE_RESET_S), "actions=", actions],
        # Recovery also when the service stops itself with an error, not only on a crash.
        ["sc.exe", "failureflag", SERVICE_NAME, "1"],
        [
            "icacls",
            str(paths.data_dir),
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:(OI)(CI)F",
            "*S-1-5-32-544:(OI)(CI)F",
        ],
    ]


def uninstall_argvs() -> list[list[str]]:
    """Stop (the agent finishes its current step) and delete the service."""
    return [["sc.exe", "stop", SERVICE_NAME], ["sc.exe", "delete", SERVICE_NAME]]


def query_argv() -> list[str]:
    return ["sc.exe", "query", SERVICE_NAME]


def parse_query(output: str) -> str | None:
    """The ``STATE`` of ``sc query`` output (``RUNNING``, ``STOPPED`` ...), if present."""
    for line in output.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "STATE":
            words = value.split()
            return words[1] if len(words) > 1 else None
    return None
