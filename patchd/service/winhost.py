"""The Windows service host: ``python.exe -m patchd.service.winhost``, started by the SCM.

pywin32's ServiceFramework runs the service's work in a thread that is not the main
one, where Python cannot install signal handlers; so the host runs the agent as a child
process (through the process gateway) and, when Windows asks the service to stop, sends
it CTRL_BREAK — the agent stops at its next safe step, as with SIGTERM under systemd.
pywin32 is imported only here, inside functions: no other module needs it.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from patchd import process
from patchd.service.windows import (
    DESCRIPTION,
    DISPLAY_NAME,
    SERVICE_NAME,
    STOP_WAIT_HINT_S,
    WindowsPaths,
)

# The gateway bounds every command's run; a Windows wait cannot exceed 49.7 days. The
# host asks the agent to stop cleanly before that, and starts it again.
AGENT_RUN_LIMIT_S = 40 * 86_400.0
AGENT_RECYCLE_AFTER_S = 30 * 86_400.0
MAX_CAPTURED_BYTES = 64 * 1024  # the agent's output goes to its log file, line by line


def windows_paths() -> WindowsPaths:
    """The paths of this installation: next to the running python.exe, under ProgramData."""
    import os
    from pathlib import PureWindowsPath

    install_dir = PureWindowsPath(sys.executable).parent.parent
    program_data = PureWindowsPath(os.environ.get("PROGRAMDATA", r"C:\ProgramData"))
    return WindowsPaths(install_dir=install_dir, program_data=program_data)


def _append(log: TextIO, line: str) -> None:
    log.write(line + "\n")
    log.flush()


class AgentProcess:
    """The agent as the host's child: started, recycled monthly, interrupted on stop."""

    def __init__(self, argv: list[str], log_dir: Path) -> None:
        self.argv = argv
        self.log_dir = log_dir
        self.stopping = threading.Event()
        self._running: process.RunningCommand | None = None

    def serve(self) -> None:
        """Run the agent until :meth:`stop`; restart it after each clean recycle."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "agent.log", "a", encoding="utf-8") as log:
            while not self.stopping.is_set():
                self._running = process.start(
                    self.argv,
                    timeout_s=AGENT_RUN_LIMIT_S,
                    max_output_bytes=MAX_CAPTURED_BYTES,
                    on_line=lambda line: _append(log, line),
                )
                if self.stopping.is_set():  # stop() came while it was starting
                    self._running.interrupt()
                recycle = threading.Timer(AGENT_RECYCLE_AFTER_S, self._running.interrupt)
                recycle.start()
                try:
                    self._running.wait()
                finally:
                    recycle.cancel()

    def stop(self) -> None:
        self.stopping.set()
        if self._running is not None:
            self._running.interrupt()


def _service_class() -> Any:  # pragma: no cover - needs Windows and pywin32
    import servicemanager  # type: ignore[import-untyped, import-not-found, unused-ignore]
    import win32service  # type: ignore[import-untyped, import-not-found, unused-ignore]
    import win32serviceutil  # type: ignore[import-untyped, import-not-found, unused-ignore]

    class PatchdAgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            paths = windows_paths()
            self.agent = AgentProcess(paths.agent_argv(), Path(str(paths.log_dir)))

        def SvcStop(self) -> None:
            # Tell the SCM how long a stop may take: a package transaction finishes first.
            self.ReportServiceStatus(
                win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_S * 1000
            )
            self.agent.stop()

        def SvcDoRun(self) -> None:
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting the agent")
            self.agent.serve()

    return PatchdAgentService, servicemanager


def main() -> None:  # pragma: no cover - needs Windows and pywin32
    """Entry point for the service control manager."""
    service, servicemanager = _service_class()
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(service)
    servicemanager.StartServiceCtrlDispatcher()


if __name__ == "__main__":  # pragma: no cover
    main()
