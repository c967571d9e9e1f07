"""The Windows Update backend: the Windows Update Agent API, driven through ``wua.ps1``.

Each update is named by its first KB article (or its UpdateID when it has none) and
versioned by ``UpdateID:RevisionNumber``, the identity WUA installs by; it is never
"installed at an older version" — before an update it is absent, so a change moves
from the empty version to the update's. Classification comes from the update's
classification category (Security Updates → security; Critical Updates, Update Rollups,
Updates → bug fix; ...), severity from its ``MsrcSeverity``, CVE ids from ``CveIDs``
and the restart flag from ``InstallationBehavior.RebootBehavior``.

Installs download and install through ``IUpdateInstaller``; the verdict is a fresh
search of installed updates, where one installed but waiting for a restart counts as
installed (WUA finishes it at the restart, which patchd's reboot policy schedules). A
way back exists only for an update WUA marks ``IsUninstallable``: rollback uninstalls
it. Windows Update has no alternate root: the backend manages the running system.
"""

from __future__ import annotations

import logging
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
from patchd.backends.windows_update.wua import (
    ResultCode,
    WuaUpdate,
    load,
    parse_operation,
    parse_reboot_state,
    parse_updates,
    script_argv,
    split_version,
)
from patchd.errors import BackendError
from patchd.models import InstalledPackage, PackageChange, Update
from patchd.process import CommandResult
from patchd.transcript import Transcript

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120.0
SEARCH_TIMEOUT_S = 1800.0  # a first search against Microsoft Update can take many minutes
INSTALL_TIMEOUT_S = 4 * 3600.0  # a cumulative update downloads and stages gigabytes
ARCH = "all"  # WUA offers what fits this machine; architecture is not a dimension


class WindowsUpdateBackend(Backend):
    """Windows Update through the Windows Update Agent COM API (see the module doc)."""

    name = "windows-update"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._offered: dict[tuple[str, str], WuaUpdate] = {}  # (name, version) seen by a scan
        self._removed: set[str] = set()  # names this process uninstalled

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        if host_platform(self.context) != "win32":
            return Probe(ProbeStatus.ABSENT, "Windows Update exists only on Windows")
        if not self.context.target.is_host:
            return Probe(ProbeStatus.ABSENT, "Windows Update manages only the running system")
        if find_program(("powershell.exe",)) is None:
            return Probe(ProbeStatus.ABSENT, "Windows PowerShell (powershell.exe) is not installed")
        data = load(self._script("probe", timeout_s=PROBE_TIMEOUT_S).stdout, "probe")
        version = str(data.get("agentVersion") or "") or None
        return Probe(ProbeStatus.PRESENT, f"Windows Update Agent {version}", version)

    def _installed_packages(self) -> list[InstalledPackage]:
        text = self._script("installed", timeout_s=SEARCH_TIMEOUT_S).stdout
        return [
            InstalledPackage(u.name, u.version, ARCH, self.name, "installed")
            for u in parse_updates(check_size(text, "wua.ps1 installed"), "installed")
        ]

    def _list_updates(self) -> ScanResult:
        text = self._script("search", timeout_s=SEARCH_TIMEOUT_S).stdout
        found = parse_updates(check_size(text, "wua.ps1 search"), "search")
        self._offered = {(u.name, u.version): u for u in found}
        return ScanResult(updates=tuple(self._update(u) for u in found))

    def _update(self, entry: WuaUpdate) -> Update:
        notes = [entry.title]
        if entry.classification_names:
            notes.append("classification: " + ", ".join(entry.classification_names))
        if entry.reboot_behavior == 2:
            notes.append("may request a restart (RebootBehavior CanRequestReboot)")
        if entry.uninstallable:
            notes.append("Windows can uninstall it (IsUninstallable)")
        return Update(
            backend=self.name,
            name=entry.name,
            arch=ARCH,
            installed_version="",
            available_version=entry.version,
            classification=entry.classification,
            severity=entry.severity,
            cves=entry.cves,
            reboot_required=entry.may_restart,
            notes=tuple(notes),
        )

    def reboot_state(self) -> tuple[bool, tuple[str, ...]]:
        """Whether Windows waits for a restart, and the signals that say so.

        The servicing registry keys (``RebootRequired``, ``RebootPending``,
        ``PendingFileRenameOperations``) and ``ISystemInformation.RebootRequired``.
        """
        self.require()
        return parse_reboot_state(self._script("reboot-state", timeout_s=PROBE_TIMEOUT_S).stdout)

    def _pending_reboot_reasons(self) -> tuple[str, ...]:
        pending, signals = self.reboot_state()
        if not pending:
            return ()
        shown = ", ".join(signals) if signals else "no signal named"
        return (f"Windows Update waits for a restart ({shown})",)

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
            return self._uninstall(changes, transcript)
        versions = tuple(c.to_version for c in changes)
        for version in versions:
            split_version(version)
        return self._operate("install", versions, transcript)

    def _uninstall(self, changes: Sequence[PackageChange], transcript: Transcript) -> list[str]:
        present = [c for c in changes if c.from_version]
        if any(c.to_version for c in changes):
            raise BackendError(
                "Windows Update cannot install an older revision of an update; "
                "a rollback can only uninstall one"
            )
        self._removed.update(c.name for c in present)
        return self._operate("uninstall", tuple(c.from_version for c in present), transcript)

    def _operate(self, action: str, versions: tuple[str, ...], transcript: Transcript) -> list[str]:
        if not versions:
            return []
        # A failing script raises CommandError: the verdict still comes from WUA's records.
        result = self._script(action, versions, timeout_s=INSTALL_TIMEOUT_S, transcript=transcript)
        outcome = parse_operation(result.stdout, action)
        notes = [f"{action}: {ResultCode(outcome.result_code).name.lower()}"]
        if outcome.reboot_required:
            notes.append("Windows needs a restart to finish")
        notes += [f"Windows Update did not find {m}" for m in outcome.missing]
        notes += [f"{r} cannot be uninstalled (IsUninstallable is false)" for r in outcome.refused]
        failed = {
            v: ResultCode(code).name.lower()
            for v, code in outcome.per_update.items()
            if code not in (ResultCode.SUCCEEDED, ResultCode.SUCCEEDED_WITH_ERRORS)
        }
        notes += [f"{v}: {why}" for v, why in failed.items()]
        return notes

    def _installed_state(self) -> dict[tuple[str, str], tuple[str, str]]:
        """Installed updates; one this process uninstalled and now absent is at ``""``.

        A rollback's target is "absent", written as the empty version: the verdict finds
        it reached when WUA no longer lists the update as installed.
        """
        state = {(p.name, p.arch): (p.version, p.status) for p in self._installed_packages()}
        for name in self._removed:
            state.setdefault((name, ARCH), ("", "installed"))
        return state

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        if any((c.name, c.to_version) not in self._offered for c in changes):
            self._list_updates()
        sources = []
        for change in changes:
            update = self._offered.get((change.name, change.to_version))
            if update is None:
                sources.append(
                    RollbackSource(change, False, detail="Windows Update no longer offers it")
                )
            elif update.uninstallable:
                sources.append(
                    RollbackSource(change, True, detail="uninstall through Windows Update")
                )
            else:
                sources.append(
                    RollbackSource(
                        change, False, detail="Windows marks this update as not uninstallable"
                    )
                )
        return sources

    # -- helpers ---------------------------------------------------------------------

    def _script(
        self,
        action: str,
        updates: tuple[str, ...] = (),
        *,
        timeout_s: float,
        transcript: Transcript | None = None,
    ) -> CommandResult:
        return run_tool(
            script_argv(action, updates),
            timeout_s=timeout_s,
            transcript=transcript,
        )
