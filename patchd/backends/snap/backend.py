"""The snap backend: snapd, on the running system only.

A snap's identity at a point in time is its *revision*, which the store assigns per
upload; versions are descriptive only, and neither "enforce an order of release"
(snapcraft.io/docs/revisions). So patchd's "version" of a snap is its revision, and
snap has no entry in the version-ordering table. snapd keeps the previous revision
after a refresh (``refresh.retain``, at least 2), which makes ``snap revert NAME
--revision=R`` a real way back. snapd manages only the system it runs on: there is no
alternate root, so for ``--root`` the backend is absent. The store has no security
metadata for snaps: every update is ``other``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from patchd import process
from patchd.backends.base import Backend, Probe, ProbeStatus, RollbackSource, ScanResult
from patchd.backends.recorded import run_recorded
from patchd.errors import CommandError, ToolNotFoundError
from patchd.models import Classification, InstalledPackage, PackageChange, Update, UpdateState
from patchd.transcript import Transcript

if TYPE_CHECKING:  # the table's parser loads only when snapd is there to ask
    from patchd.backends.snap.table import SnapRow

PROBE_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 300.0  # snap refresh --list asks the store
REFRESH_TIMEOUT_S = 3600.0
REVERT_TIMEOUT_S = 1800.0
# snap names architectures as Debian does; os.uname() gives the kernel's names.
_ARCHITECTURES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def snap_architecture() -> str:
    """This machine's architecture as snapd names it."""
    machine = os.uname().machine
    return _ARCHITECTURES.get(machine, machine)


class SnapBackend(Backend):
    """snapd, through the ``snap`` command."""

    name = "snap"

    @property
    def arch(self) -> str:
        return str(self.context.settings.get("arch") or snap_architecture())

    def _table(self, *args: str, timeout_s: float = LIST_TIMEOUT_S) -> list[SnapRow]:
        from patchd.backends.snap.table import parse_table

        result = process.run(["snap", *args], timeout_s=timeout_s)
        return parse_table(result.stdout + "\n" + result.stderr)

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        if not self.context.target.is_host:
            return Probe(
                ProbeStatus.ABSENT,
                f"snapd manages only the running system, not {self.context.target} (no --root)",
            )
        try:
            result = process.run(["snap", "version"], timeout_s=PROBE_TIMEOUT_S)
        except ToolNotFoundError:
            return Probe(ProbeStatus.ABSENT, "snap is not installed")
        from patchd.backends.snap.table import parse_version

        versions = parse_version(result.stdout)
        snapd = versions.get("snapd")
        if snapd is None or snapd == "unavailable":
            return Probe(
                ProbeStatus.BROKEN, "snapd is not answering (`snap version`: snapd unavailable)"
            )
        return Probe(ProbeStatus.PRESENT, f"snapd {snapd}", snapd)

    def _installed_packages(self) -> list[InstalledPackage]:
        return [
            InstalledPackage(row.name, row.revision, self.arch, self.name, _status(row))
            for row in self._table("list")
        ]

    def _list_updates(self) -> ScanResult:
        installed = {row.name: row for row in self._table("list")}
        updates = []
        for row in self._table("refresh", "--list"):
            current = installed.get(row.name)
            if current is None:
                continue
            held = "held" in current.notes
            updates.append(
                Update(
                    backend=self.name,
                    name=row.name,
                    arch=self.arch,
                    installed_version=current.revision,
                    available_version=row.revision,
                    classification=Classification.OTHER,
                    state=UpdateState.HELD if held else UpdateState.AVAILABLE,
                    notes=(
                        f"version {current.version} → {row.version} (revisions {current.revision} → {row.revision})",
                        *(
                            ("refreshes held by the administrator (snap refresh --hold)",)
                            if held
                            else ()
                        ),
                    ),
                )
            )
        return ScanResult(updates=tuple(updates))

    # -- change ----------------------------------------------------------------------

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        if downgrade:
            for change in changes:
                run_recorded(
                    ["snap", "revert", change.name, f"--revision={change.to_version}"],
                    transcript,
                    timeout_s=REVERT_TIMEOUT_S,
                )
            return []
        # Refreshing by name installs what the store offers now: only if that is the
        # revision scanned (a specific revision needs developer access to the snap).
        from patchd.backends.snap.table import parse_table

        listing = run_recorded(["snap", "refresh", "--list"], transcript, timeout_s=LIST_TIMEOUT_S)
        offered = {
            row.name: row.revision for row in parse_table(listing.stdout + "\n" + listing.stderr)
        }
        chosen, notes = [], []
        for change in changes:
            if offered.get(change.name) == change.to_version:
                chosen.append(change.name)
            else:
                now = offered.get(change.name)
                notes.append(
                    f"{change.name}: the store offers "
                    f"{'revision ' + now if now else 'no refresh'} now, not revision "
                    f"{change.to_version}; nothing done (scan again)"
                )
        if chosen:
            run_recorded(["snap", "refresh", *chosen], transcript, timeout_s=REFRESH_TIMEOUT_S)
        return notes

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        try:
            rows = self._table("list", "--all")
        except CommandError as e:
            transcript.failure(e)
            raise
        present = {(row.name, row.revision) for row in rows}
        return [
            RollbackSource(
                change,
                True,
                detail=f"snapd keeps revision {change.from_version} after the refresh "
                "(refresh.retain); `snap revert` returns to it",
            )
            if (change.name, change.from_version) in present
            else RollbackSource(
                change,
                False,
                detail=f"revision {change.from_version} of {change.name} is not installed",
            )
            for change in changes
        ]


def _status(row: SnapRow) -> str:
    """snap's notes say when a snap is broken or disabled; otherwise it is installed."""
    for word in ("broken", "disabled"):
        if word in row.notes:
            return word
    return "installed"
