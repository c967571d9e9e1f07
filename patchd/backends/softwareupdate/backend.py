"""The macOS ``softwareupdate`` backend: Apple's operating-system and Safari updates.

``softwareupdate --list`` names each update by its label, with a title, a version,
whether Apple recommends it and whether it needs a restart (``Action: restart``); it
must run as root to install. macOS keeps no list of "installed updates" that maps back
to those labels, so an install is judged by the listing itself: an update that
``softwareupdate --list`` no longer offers is installed. patchd never passes
``--restart``: restarts belong to patchd's reboot policy, which sees
``reboot_required``. Apple offers no way back from an installed update, so every
change reports "no rollback path" before it is applied.

On Apple silicon, installing a macOS update from the command line also needs a
volume owner's credentials (``--user``/``--stdinpass``), which patchd does not hold:
such installs fail and say so in the transcript.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from patchd.backends.base import (
    Backend,
    BackendContext,
    Probe,
    ProbeStatus,
    RollbackSource,
    ScanResult,
)
from patchd.backends.native import check_size, find_program, host_platform, run_tool
from patchd.backends.softwareupdate.listing import SoftwareUpdate, parse_list
from patchd.errors import BackendError
from patchd.models import Classification, InstalledPackage, PackageChange, Update
from patchd.transcript import Transcript

PROBE_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 900.0  # --list asks Apple's servers (or the MDM's) and can be slow
INSTALL_TIMEOUT_S = 4 * 3600.0  # a macOS point release downloads gigabytes
SOFTWAREUPDATE = "softwareupdate"  # /usr/sbin, on the system PATH patchd runs commands with
SW_VERS = "sw_vers"
ARCH = "all"  # updates are offered for this Mac; architecture is not a dimension
NO_ROLLBACK = "Apple offers no way to uninstall an installed macOS update"


def list_argv() -> list[str]:
    return [SOFTWAREUPDATE, "--list"]


def install_argv(labels: Sequence[str]) -> list[str]:
    return [SOFTWAREUPDATE, "--install", *labels]


class SoftwareUpdateBackend(Backend):
    """macOS Software Update, through ``softwareupdate`` (see the module doc)."""

    name = "softwareupdate"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._attempted: dict[str, str] = {}  # label -> version installed in this process

    def _probe(self) -> Probe:
        if host_platform(self.context) != "darwin":
            return Probe(ProbeStatus.ABSENT, "softwareupdate exists only on macOS")
        if not self.context.target.is_host:
            return Probe(ProbeStatus.ABSENT, "softwareupdate manages only the running system")
        if find_program((SOFTWAREUPDATE,)) is None:
            return Probe(ProbeStatus.ABSENT, "softwareupdate is not installed")
        result = run_tool([SW_VERS, "-productVersion"], timeout_s=PROBE_TIMEOUT_S)
        version = result.stdout.strip() or None
        return Probe(ProbeStatus.PRESENT, f"softwareupdate on macOS {version}", version)

    def _installed_packages(self) -> list[InstalledPackage]:
        # macOS records installed updates as package receipts that do not map back to
        # softwareupdate's labels; the inventory carries the macOS version instead.
        return []

    def _pending(self) -> list[SoftwareUpdate]:
        result = run_tool(list_argv(), timeout_s=LIST_TIMEOUT_S)
        return parse_list(check_size(result.output, "softwareupdate --list"))

    def _list_updates(self) -> ScanResult:
        return ScanResult(updates=tuple(self._update(u) for u in self._pending()))

    def _update(self, entry: SoftwareUpdate) -> Update:
        notes = [entry.title]
        if not entry.recommended:
            notes.append("Apple does not recommend it for this Mac (Recommended: NO)")
        if entry.action:
            notes.append(f"needs a {entry.action} to complete")
        return Update(
            backend=self.name,
            name=entry.label,
            arch=ARCH,
            installed_version="",  # softwareupdate does not say what it replaces
            available_version=entry.version,
            classification=Classification.SECURITY
            if entry.security_named
            else Classification.OTHER,
            reboot_required=entry.needs_restart,
            notes=tuple(notes),
        )

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        if downgrade:
            raise BackendError(f"cannot roll back a macOS update: {NO_ROLLBACK}")
        for change in changes:
            self._attempted[change.name] = change.to_version
        run_tool(
            install_argv([c.name for c in changes]),
            timeout_s=INSTALL_TIMEOUT_S,
            transcript=transcript,
        )
        return []

    def _installed_state(self) -> dict[tuple[str, str], tuple[str, str]]:
        """An update this process installed is installed once ``--list`` no longer offers it."""
        still_offered = {u.label for u in self._pending()} if self._attempted else set()
        return {
            (label, ARCH): ("", "pending") if label in still_offered else (version, "installed")
            for label, version in self._attempted.items()
        }

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        return [RollbackSource(c, available=False, detail=NO_ROLLBACK) for c in changes]
