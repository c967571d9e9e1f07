"""The winget backend: third-party applications through the Windows Package Manager.

``winget upgrade --include-unknown`` lists what can be upgraded (packages whose
installed version winget cannot tell are included, marked "Unknown"); ``winget list``
is the installed-package database the verdict reads. Every command accepts the source
and package agreements and disables interactivity, so nothing waits for a person.

An upgrade is pinned to the version the scan saw (``--version V --exact``). The way
back is the same command for the old version, ``winget install --id X --version OLD
--exact --force``, which works while the source still carries that version — checked
with ``winget show --versions`` before applying. Packages pinned with ``winget pin``
are left out of ``winget upgrade`` by winget itself, so patchd never sees them.

winget versions are whatever each publisher writes ("Unknown", "< 10.0.22000",
dates, build strings); winget orders them only heuristically, so patchd registers no
version ordering for this backend and compares winget versions for equality only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from patchd.backends.base import (
    Backend,
    Probe,
    ProbeStatus,
    RollbackSource,
    ScanResult,
)
from patchd.backends.native import check_size, find_program, host_platform, run_tool
from patchd.backends.winget.table import WingetRow, last_write, parse_table
from patchd.errors import CommandError
from patchd.models import Classification, InstalledPackage, PackageChange, Update, UpdateSource
from patchd.transcript import Transcript

PROBE_TIMEOUT_S = 60.0
LIST_TIMEOUT_S = 600.0  # winget refreshes its source index when it is old
INSTALL_TIMEOUT_S = 3600.0
ARCH = "all"
WINGET = "winget"
_SPINNER = ("-", "\\", "|", "/")
COMMON = ("--accept-source-agreements", "--disable-interactivity")


def list_upgrades_argv() -> list[str]:
    return [WINGET, "upgrade", "--include-unknown", *COMMON]


def list_installed_argv() -> list[str]:
    return [WINGET, "list", *COMMON]


def upgrade_argv(package_id: str, version: str) -> list[str]:
    return [
        WINGET, "upgrade", "--id", package_id, "--version", version, "--exact", "--silent",
        "--accept-package-agreements", *COMMON,
    ]  # fmt: skip


def install_argv(package_id: str, version: str) -> list[str]:
    """Reinstall ``version`` over whatever is installed: winget's way back."""
    return [
        WINGET, "install", "--id", package_id, "--version", version, "--exact", "--silent",
        "--force", "--accept-package-agreements", *COMMON,
    ]  # fmt: skip


def versions_argv(package_id: str) -> list[str]:
    return [WINGET, "show", "--id", package_id, "--exact", "--versions", *COMMON]


def parse_versions(text: str) -> list[str]:
    """The versions ``winget show --versions`` lists (one per line under a dashed rule).

    winget's progress spinner can leave one of ``- \\ | /`` on a line of its own.
    """
    lines = [last_write(line).strip() for line in text.split("\n")]
    for index, line in enumerate(lines):
        if len(line) >= 3 and set(line) == {"-"}:
            return [v for v in lines[index + 1 :] if v and v not in _SPINNER]
    return []


class WingetBackend(Backend):
    """The Windows Package Manager (see the module doc)."""

    name = "winget"

    def _probe(self) -> Probe:
        if host_platform(self.context) != "win32":
            return Probe(ProbeStatus.ABSENT, "winget exists only on Windows")
        if not self.context.target.is_host:
            return Probe(ProbeStatus.ABSENT, "winget manages only the running system")
        if find_program((WINGET,)) is None:
            return Probe(ProbeStatus.ABSENT, "winget is not installed (App Installer is missing)")
        version = run_tool([WINGET, "--version"], timeout_s=PROBE_TIMEOUT_S).stdout.strip()
        return Probe(ProbeStatus.PRESENT, f"winget {version}", version.removeprefix("v") or None)

    def _installed_packages(self) -> list[InstalledPackage]:
        text = run_tool(list_installed_argv(), timeout_s=LIST_TIMEOUT_S).stdout
        rows = parse_table(check_size(text, "winget list"))
        return [
            InstalledPackage(row.id, row.version, ARCH, self.name)
            for row in _first_of_each(rows).values()
        ]

    def _list_updates(self) -> ScanResult:
        text = run_tool(list_upgrades_argv(), timeout_s=LIST_TIMEOUT_S).stdout
        rows = parse_table(check_size(text, "winget upgrade"))
        warnings = [
            f"winget cut the id of {row.name!r} short; it cannot be targeted"
            for row in rows
            if row.truncated_id
        ]
        first = _first_of_each(rows)
        for package_id in first:
            versions = [r.version for r in rows if r.id == package_id]
            if len(versions) > 1:
                warnings.append(
                    f"winget lists {package_id} more than once (installed "
                    f"{', '.join(versions)}); the first is used"
                )
        return ScanResult(
            updates=tuple(self._update(r) for r in first.values()), warnings=tuple(warnings)
        )

    def _update(self, row: WingetRow) -> Update:
        notes = [row.name]
        if row.version == "Unknown":
            notes.append("winget cannot tell the installed version (--include-unknown)")
        elif row.version.startswith("<"):
            notes.append(f"winget knows only that the installed version is {row.version}")
        return Update(
            backend=self.name,
            name=row.id,
            arch=ARCH,
            installed_version=row.version,
            available_version=row.available,
            # winget's sources publish no security classification for packages.
            classification=Classification.OTHER,
            source=UpdateSource(origin=row.source),
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
        build = install_argv if downgrade else upgrade_argv
        failure: CommandError | None = None
        for change in changes:
            try:
                run_tool(
                    build(change.name, change.to_version),
                    timeout_s=INSTALL_TIMEOUT_S,
                    transcript=transcript,
                )
            except CommandError as e:
                failure = failure or e  # the other packages still get their turn
        if failure is not None:
            raise failure
        return []

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        sources = []
        for change in changes:
            if change.from_version in ("", "Unknown") or change.from_version.startswith("<"):
                sources.append(
                    RollbackSource(
                        change,
                        False,
                        detail=f"the installed version is {change.from_version or 'unknown'}",
                    )
                )
                continue
            try:
                result = run_tool(
                    versions_argv(change.name), timeout_s=LIST_TIMEOUT_S, transcript=transcript
                )
            except CommandError as e:
                sources.append(
                    RollbackSource(change, False, detail=f"winget show failed: {e.summary}")
                )
                continue
            if change.from_version in parse_versions(check_size(result.stdout, "winget show")):
                sources.append(
                    RollbackSource(
                        change, True, detail=f"winget install --version {change.from_version}"
                    )
                )
            else:
                sources.append(
                    RollbackSource(
                        change, False, detail=f"the source no longer offers {change.from_version}"
                    )
                )
        return sources


def _first_of_each(rows: Sequence[WingetRow]) -> dict[str, WingetRow]:
    """Each package id's first row; rows with an id winget cut short are left out.

    winget lists a package twice when it is installed twice (per machine and per user,
    or two architectures); one id can be targeted only once.
    """
    first: dict[str, WingetRow] = {}
    for row in rows:
        if not row.truncated_id:
            first.setdefault(row.id, row)
    return first
