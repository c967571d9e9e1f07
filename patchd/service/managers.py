"""The service managers' own commands, as argv lists run through the process gateway.

Against a live system (root ``/`` with the manager running) patchd asks the manager to
reload, enable and stop units. Against any other root — a mounted image, a container
root, a test's throwaway root — only offline operations run (``systemctl --root``), so
nothing on the host changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from patchd import process

MANAGER_TIMEOUT_S = 120.0  # systemctl/launchctl calls; none of them waits for a stop
SYSTEMD_RUNTIME = Path("/run/systemd/system")  # exists only when systemd is PID 1 (sd_booted)


@dataclass(frozen=True)
class ServiceStatus:
    """What the service manager says about a unit; ``None`` where it cannot tell."""

    enabled: bool | None
    running: bool | None


def _run(argv: Sequence[str], ok_codes: Sequence[int] = (0,)) -> process.CommandResult:
    return process.run(argv, timeout_s=MANAGER_TIMEOUT_S, ok_codes=ok_codes)


class Systemd:
    """``systemctl``: offline with ``--root`` unless the root is this running system."""

    def __init__(self, root: Path, *, live: bool | None = None) -> None:
        self.root = root
        self.live = (root == Path("/") and SYSTEMD_RUNTIME.is_dir()) if live is None else live

    def _systemctl(self, *args: str) -> list[str]:
        return ["systemctl", *args] if self.live else ["systemctl", f"--root={self.root}", *args]

    def after_install(self, unit: str) -> list[list[str]]:
        """Reload the unit files (live only), then enable the unit for the next boot."""
        reload = [self._systemctl("daemon-reload")] if self.live else []
        return [*reload, self._systemctl("enable", unit)]

    def before_uninstall(self, unit: str) -> list[list[str]]:
        """Disable; stop without waiting (a stop may wait for a package transaction)."""
        stop = [self._systemctl("stop", "--no-block", unit)] if self.live else []
        return [self._systemctl("disable", unit), *stop]

    def after_uninstall(self) -> list[list[str]]:
        return [self._systemctl("daemon-reload")] if self.live else []

    def run(self, argvs: Sequence[Sequence[str]]) -> None:
        for argv in argvs:
            _run(argv)

    def status(self, unit: str) -> ServiceStatus:
        # is-enabled: 0 enabled, 1 disabled or not found; its output says which.
        enabled = _run(self._systemctl("is-enabled", unit), ok_codes=(0, 1)).stdout.strip()
        running = None
        if self.live:
            active = _run(self._systemctl("is-active", unit), ok_codes=range(256)).stdout
            running = active.strip() in ("active", "reloading", "deactivating")
        return ServiceStatus(enabled=enabled in ("enabled", "enabled-runtime"), running=running)


class Launchd:
    """``launchctl`` for a system daemon; nothing to do offline (RunAtLoad starts it at boot)."""

    def __init__(self, root: Path, *, live: bool | None = None) -> None:
        self.root = root
        self.live = root == Path("/") if live is None else live

    def after_install(self, label: str) -> list[list[str]]:
        plist = f"/Library/LaunchDaemons/{label}.plist"
        if not self.live:
            return []
        return [
            # A job loaded from an older plist is unloaded first, so the new one is read.
            ["launchctl", "bootout", f"system/{label}"],
            ["launchctl", "enable", f"system/{label}"],
            ["launchctl", "bootstrap", "system", plist],
        ]

    def before_uninstall(self, label: str) -> list[list[str]]:
        return [["launchctl", "bootout", f"system/{label}"]] if self.live else []

    def after_uninstall(self) -> list[list[str]]:
        return []

    def run(self, argvs: Sequence[Sequence[str]]) -> None:
        for argv in argvs:
            # bootout of a job that is not loaded fails; its exit statuses are not
            # documented, so any is accepted: the wanted state (unloaded) holds either way.
            _run(argv, ok_codes=range(256) if argv[1] == "bootout" else (0,))

    def status(self, label: str) -> ServiceStatus:
        if not self.live:
            return ServiceStatus(enabled=None, running=None)
        printed = _run(["launchctl", "print", f"system/{label}"], ok_codes=range(256))
        loaded = printed.returncode == 0
        return ServiceStatus(enabled=loaded, running=loaded and "state = running" in printed.stdout)
