"""Windows System Restore: a restore point of the running system before patching.

Only for the host (restore points cover the system drive) on Windows editions that have
System Restore (not Windows Server) with System Protection turned on. Commands run in
Windows PowerShell 5.1 (``powershell.exe``: ``Checkpoint-Computer`` is not in PowerShell
7). patchd's restore points are those whose description starts with ``patchd <run id>``.
Windows creates at most one restore point per 24 hours by default
(``SystemRestorePointCreationFrequency``): a skipped one is reported as an error. A restore
is ``Restore-Computer``, which restarts the computer. A restore point is deleted with
``SRRemoveRestorePoint`` (srclient.dll), which has no cmdlet.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from patchd.backends.base import ProbeStatus
from patchd.snapshots.base import (
    RestoreOutcome,
    Snapshot,
    SnapshotError,
    SnapshotProbe,
    SnapshotProvider,
)

POWERSHELL = ("powershell.exe", "-NoProfile", "-NonInteractive", "-Command")
DESCRIPTION_PREFIX = "patchd "
MAX_DESCRIPTION_CHARS = 256
# Each of these ends a PowerShell single-quoted string; doubled, it stands for itself.
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"
_PROBE = (
    "if (-not (Get-Command Checkpoint-Computer -ErrorAction SilentlyContinue)) { 'absent' } "
    "elseif ((Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"
    "\\SystemRestore' -ErrorAction SilentlyContinue).RPSessionInterval -eq 1) { 'enabled' } "
    "else { 'disabled' }"
)
_WMI_TIME = re.compile(r"^(\d{14})\.\d{6}([+-]\d{3})$")


def powershell(script: str) -> list[str]:
    """The argv running ``script`` in Windows PowerShell."""
    return [*POWERSHELL, script]


def quote(text: str) -> str:
    """``text`` as a PowerShell single-quoted string (no expansion of ``$`` or backticks)."""
    return "'" + "".join(c * 2 if c in _PS_QUOTES else c for c in text) + "'"


def create_argv(description: str) -> list[str]:
    return powershell(
        f"Checkpoint-Computer -Description {quote(description)} "
        "-RestorePointType MODIFY_SETTINGS -ErrorAction Stop"
    )


def list_argv() -> list[str]:
    # -InputObject keeps one restore point a list (a pipeline would unroll it to an object).
    return powershell(
        "ConvertTo-Json -InputObject @(Get-ComputerRestorePoint | Select-Object "
        "SequenceNumber,Description,CreationTime,RestorePointType,EventType)"
    )


def restore_argv(sequence: str) -> list[str]:
    return powershell(f"Restore-Computer -RestorePoint {int(sequence)} -Confirm:$false")


def delete_argv(sequence: str) -> list[str]:
    return powershell(
        "Add-Type -Namespace Patchd -Name SystemRestore -MemberDefinition "
        "'[DllImport(\"srclient.dll\")] public static extern int SRRemoveRestorePoint(int index);'; "
        f"exit [Patchd.SystemRestore]::SRRemoveRestorePoint({int(sequence)})"
    )


class WindowsRestorePointProvider(SnapshotProvider):
    """System Restore points of the running Windows system (see the module doc)."""

    name = "windows-restore-point"

    def _probe(self) -> SnapshotProbe:
        if self.context.platform != "win32":
            return SnapshotProbe(ProbeStatus.ABSENT, "restore points exist only on Windows")
        if not self.context.target.is_host:
            return SnapshotProbe(ProbeStatus.PRESENT, "restore points cover only the host")
        state = self.run(powershell(_PROBE)).stdout.strip()
        if state == "absent":
            return SnapshotProbe(ProbeStatus.ABSENT, "this Windows edition has no System Restore")
        if state != "enabled":
            return SnapshotProbe(ProbeStatus.PRESENT, "System Protection is turned off")
        return SnapshotProbe(ProbeStatus.PRESENT, "System Restore", covers_target=True)

    def _create(self, label: str, run_id: str) -> Snapshot:
        description = (f"{DESCRIPTION_PREFIX}{run_id}" + (f": {label}" if label else ""))[
            :MAX_DESCRIPTION_CHARS
        ]
        before = {s.id for s in self._list()}
        self.run(create_argv(description))
        made = [s for s in self._list() if s.id not in before and s.run_id == run_id]
        if not made:
            raise SnapshotError(
                "Windows did not create the restore point",
                hint="it creates at most one every 24 hours unless "
                "SystemRestorePointCreationFrequency says otherwise",
            )
        return made[-1]

    def _list(self) -> list[Snapshot]:
        return parse_restore_points(self.run(list_argv()).stdout)

    def _delete(self, snapshot: Snapshot) -> None:
        self.run(delete_argv(snapshot.id))

    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        self.run(restore_argv(snapshot.id))
        return RestoreOutcome(
            snapshot,
            reboot_required=True,
            detail=f"Windows restarts to return to restore point {snapshot.id}",
        )


def parse_restore_points(text: str) -> list[Snapshot]:
    """patchd's restore points in ``... | ConvertTo-Json`` output, by sequence number.

    PowerShell prints nothing for no restore point and one object (not a list) for one.
    """
    if not text.strip():
        return []
    data = json.loads(text)
    entries: list[dict[str, Any]] = data if isinstance(data, list) else [data]
    found = []
    for entry in entries:
        description = str(entry.get("Description") or "")
        if not description.startswith(DESCRIPTION_PREFIX):
            continue
        run_id, _, label = description.removeprefix(DESCRIPTION_PREFIX).partition(": ")
        sequence = str(entry["SequenceNumber"])
        created = parse_wmi_time(str(entry["CreationTime"]))
        found.append(Snapshot("windows-restore-point", sequence, created, label, run_id))
    return sorted(found, key=lambda s: int(s.id))


def parse_wmi_time(text: str) -> datetime:
    """A WMI ``CIM_DATETIME`` (``20241104123015.123456-300``: offset in minutes)."""
    match = _WMI_TIME.match(text)
    if match is None:
        raise SnapshotError(f"not a WMI time: {text!r}")
    zone = timezone(timedelta(minutes=int(match[2])))
    return datetime.strptime(match[1], "%Y%m%d%H%M%S").replace(tzinfo=zone)
