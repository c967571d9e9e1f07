"""The Chocolatey backend: Windows packages from Chocolatey's community or private feeds.

``choco outdated -r`` lists what can be upgraded (a package pinned with ``choco pin``
is reported as held and never upgraded); ``choco list -r`` (Chocolatey 2) or
``choco list --local-only -r`` (Chocolatey 1) is the database the verdict reads. An
upgrade is pinned to the version the scan saw; the way back is
``choco install NAME --version OLD --allow-downgrade``, available while a feed still
carries the old version (``choco search NAME --exact --all-versions`` says, before
applying). Chocolatey needs an elevated session; the agent runs as SYSTEM. Exit codes
1641 and 3010 are successes that need a restart.
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
from patchd.backends.chocolatey.listing import OutdatedPackage, parse_outdated, parse_versions
from patchd.backends.native import check_size, find_program, host_platform, run_tool
from patchd.errors import CommandError
from patchd.models import Classification, InstalledPackage, PackageChange, Update, UpdateState
from patchd.transcript import Transcript

PROBE_TIMEOUT_S = 60.0
LIST_TIMEOUT_S = 900.0  # choco outdated asks every feed about every package
INSTALL_TIMEOUT_S = 3600.0
ARCH = "all"
CHOCO = "choco"
OUTDATED_CODES = (0, 2)  # 2: outdated packages found (with useEnhancedExitCodes)
REBOOT_CODES = (1641, 3010)  # installed; a restart is needed (or was started)


def outdated_argv() -> list[str]:
    return [CHOCO, "outdated", "-r"]


def list_argv(major_version: int) -> list[str]:
    """``choco list -r``; Chocolatey 1 needs ``--local-only`` to list the local packages."""
    return [CHOCO, "list", "-r"] if major_version >= 2 else [CHOCO, "list", "--local-only", "-r"]


def upgrade_argv(name: str, version: str) -> list[str]:
    return [CHOCO, "upgrade", name, "--version", version, "-y", "--no-progress"]


def downgrade_argv(name: str, version: str) -> list[str]:
    return [
        CHOCO,
        "install",
        name,
        "--version",
        version,
        "--allow-downgrade",
        "-y",
        "--no-progress",
    ]


def search_argv(name: str) -> list[str]:
    return [CHOCO, "search", name, "--exact", "--all-versions", "-r"]


class ChocolateyBackend(Backend):
    """Chocolatey (see the module doc)."""

    name = "chocolatey"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._major = 2

    def _probe(self) -> Probe:
        if host_platform(self.context) != "win32":
            return Probe(ProbeStatus.ABSENT, "Chocolatey exists only on Windows")
        if not self.context.target.is_host:
            return Probe(ProbeStatus.ABSENT, "Chocolatey manages only the running system")
        if find_program((CHOCO,)) is None:
            return Probe(ProbeStatus.ABSENT, "choco is not installed")
        version = run_tool([CHOCO, "--version"], timeout_s=PROBE_TIMEOUT_S).stdout.strip()
        major = version.split(".", 1)[0]
        if not major.isdigit():
            return Probe(ProbeStatus.BROKEN, f"choco --version printed {version[:80]!r}")
        self._major = int(major)
        return Probe(ProbeStatus.PRESENT, f"Chocolatey {version}", version)

    def _installed_packages(self) -> list[InstalledPackage]:
        text = run_tool(list_argv(self._major), timeout_s=LIST_TIMEOUT_S).stdout
        return [
            InstalledPackage(name, version, ARCH, self.name)
            for name, version in parse_versions(check_size(text, "choco list"))
        ]

    def _list_updates(self) -> ScanResult:
        result = run_tool(outdated_argv(), timeout_s=LIST_TIMEOUT_S, ok_codes=OUTDATED_CODES)
        entries = parse_outdated(check_size(result.stdout, "choco outdated"))
        return ScanResult(updates=tuple(self._update(e) for e in entries))

    def _update(self, entry: OutdatedPackage) -> Update:
        held = entry.pinned
        return Update(
            backend=self.name,
            name=entry.name,
            arch=ARCH,
            installed_version=entry.installed,
            available_version=entry.available,
            # Chocolatey's feeds carry no security classification for packages.
            classification=Classification.OTHER,
            state=UpdateState.HELD if held else UpdateState.AVAILABLE,
            notes=("pinned by the administrator (choco pin)",) if held else (),
        )

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        build = downgrade_argv if downgrade else upgrade_argv
        notes: list[str] = []
        failure: CommandError | None = None
        for change in changes:
            try:
                result = run_tool(
                    build(change.name, change.to_version),
                    timeout_s=INSTALL_TIMEOUT_S,
                    transcript=transcript,
                    ok_codes=(0, *REBOOT_CODES),
                )
            except CommandError as e:
                failure = failure or e  # the other packages still get their turn
                continue
            if result.returncode in REBOOT_CODES:
                note = (
                    f"{change.name}: installed; Windows needs a restart (exit {result.returncode})"
                )
                notes.append(note)
                transcript.note(note)  # kept even when another package's failure is raised
        if failure is not None:
            raise failure
        return notes

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        sources = []
        for change in changes:
            try:
                result = run_tool(
                    search_argv(change.name), timeout_s=LIST_TIMEOUT_S, transcript=transcript
                )
            except CommandError as e:
                sources.append(
                    RollbackSource(change, False, detail=f"choco search failed: {e.summary}")
                )
                continue
            offered = {
                version
                for name, version in parse_versions(check_size(result.stdout, "choco search"))
                if name.lower() == change.name.lower()
            }
            if change.from_version in offered:
                sources.append(
                    RollbackSource(
                        change,
                        True,
                        detail=f"choco install --version {change.from_version} --allow-downgrade",
                    )
                )
            else:
                sources.append(
                    RollbackSource(
                        change, False, detail=f"no feed offers {change.from_version} any more"
                    )
                )
        return sources
