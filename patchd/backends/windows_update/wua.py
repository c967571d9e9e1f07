"""What ``wua.ps1`` prints, parsed and classified; and the argv that runs it.

The script is patchd's own (shipped next to this module); it turns the Windows Update
Agent's COM objects (``IUpdate``, ``IInstallationResult``) into JSON. This module is
pure, so the tests run it on that JSON without Windows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from patchd.backends.native import check_count
from patchd.errors import BackendError
from patchd.models import Classification, Severity

SCRIPT = Path(__file__).with_name("wua.ps1")
POWERSHELL = ("powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
_UPDATE_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


class ResultCode(IntEnum):
    """WUA's ``OperationResultCode``."""

    NOT_STARTED = 0
    IN_PROGRESS = 1
    SUCCEEDED = 2
    SUCCEEDED_WITH_ERRORS = 3
    FAILED = 4
    ABORTED = 5


class RebootBehavior(IntEnum):
    """WUA's ``InstallationRebootBehavior``."""

    NEVER_REBOOTS = 0
    ALWAYS_REQUIRES_REBOOT = 1
    CAN_REQUEST_REBOOT = 2


# The classification categories (IUpdate.Categories with Type "UpdateClassification") by
# their fixed ids, which unlike their names are not translated. Only "Security Updates"
# is security; Microsoft's other fix classifications are bug fixes.
CLASSIFICATIONS: dict[str, tuple[str, Classification]] = {
    "0fa1201d-4330-4fa8-8ae9-b877473b6441": ("Security Updates", Classification.SECURITY),
    "e6cf1350-c01b-414d-a61f-263d14d133b4": ("Critical Updates", Classification.BUGFIX),
    "28bc880e-0592-4cbf-8f95-c79b17911d5f": ("Update Rollups", Classification.BUGFIX),
    "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83": ("Updates", Classification.BUGFIX),
    "68c5b0a3-d1a6-4553-ae49-01d3a7827828": ("Service Packs", Classification.BUGFIX),
    "b54e7d24-7add-428f-8b75-90a396fa584f": ("Feature Packs", Classification.ENHANCEMENT),
    "3689bdc8-b205-4af4-8d4a-a63924c5e9d5": ("Upgrades", Classification.ENHANCEMENT),
    "e0789628-ce08-4437-be74-2495b842f43b": ("Definition Updates", Classification.OTHER),
    "ebfc1fc5-71a4-4f7b-9aca-3b9a503104a0": ("Drivers", Classification.OTHER),
    "b4832bd8-e735-4761-8daf-37f882276dab": ("Tools", Classification.OTHER),
    "5c9376ab-8ce6-464a-b136-22113dd69609": ("Applications", Classification.OTHER),
}
_BY_NAME = {name.lower(): kind for name, kind in CLASSIFICATIONS.values()}
SEVERITIES = {
    "critical": Severity.CRITICAL,
    "important": Severity.IMPORTANT,
    "moderate": Severity.MODERATE,
    "low": Severity.LOW,
}


@dataclass(frozen=True)
class WuaUpdate:
    """One update as the Windows Update Agent describes it."""

    update_id: str
    revision: int
    title: str
    kb: tuple[str, ...]
    msrc_severity: str
    classification_names: tuple[str, ...]
    classification: Classification
    cves: tuple[str, ...]
    reboot_behavior: int
    reboot_pending: bool  # installed, but needs a restart to finish
    uninstallable: bool
    size_bytes: int

    @property
    def name(self) -> str:
        """The package name patchd uses: its first KB article, or its UpdateID without one."""
        return self.kb[0] if self.kb else self.update_id

    @property
    def version(self) -> str:
        """``UpdateID:RevisionNumber``, the identity WUA searches and installs by."""
        return f"{self.update_id}:{self.revision}"

    @property
    def severity(self) -> Severity:
        return SEVERITIES.get(self.msrc_severity.lower(), Severity.UNKNOWN)

    @property
    def may_restart(self) -> bool:
        return self.reboot_behavior != RebootBehavior.NEVER_REBOOTS


@dataclass(frozen=True)
class OperationResult:
    """What ``IUpdateInstaller.Install()`` or ``.Uninstall()`` reported."""

    result_code: int
    hresult: int
    reboot_required: bool
    per_update: dict[str, int]  # "UpdateID:revision" -> OperationResultCode
    missing: tuple[str, ...]  # asked for, but WUA did not find them
    refused: tuple[str, ...]  # asked to uninstall, but not uninstallable

    @property
    def succeeded(self) -> bool:
        return self.result_code == ResultCode.SUCCEEDED


def script_argv(action: str, updates: tuple[str, ...] = ()) -> list[str]:
    """The argv running ``wua.ps1 -Action action`` (with ``-Updates id:rev,...``)."""
    argv = [*POWERSHELL, "-File", str(SCRIPT), "-Action", action]
    if updates:
        for item in updates:
            split_version(item)  # refuses anything that is not UpdateID:revision
        argv += ["-Updates", ",".join(updates)]
    return argv


def split_version(version: str) -> tuple[str, int]:
    """``UpdateID:RevisionNumber`` → its parts; :class:`BackendError` for anything else."""
    update_id, _, revision = version.partition(":")
    if not _UPDATE_ID.match(update_id) or not revision.isdigit():
        raise BackendError(f"{version!r} is not a Windows Update version (UpdateID:revision)")
    return update_id.lower(), int(revision)


def load(text: str, action: str) -> dict[str, Any]:
    """The script's JSON; :class:`BackendError` if it reported an error or printed no object."""
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except ValueError as e:
        raise BackendError(f"wua.ps1 {action} printed something that is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise BackendError(f"wua.ps1 {action} printed no JSON object")
    if "error" in data:
        raise BackendError(
            f"the Windows Update Agent failed ({action}): {data['error']} "
            f"(HRESULT 0x{int(data.get('hresult') or 0) & 0xFFFFFFFF:08X})"
        )
    return data


def parse_updates(text: str, action: str = "search") -> list[WuaUpdate]:
    """The updates of a ``search`` or ``installed`` document."""
    entries = load(text, action).get("updates") or []
    if isinstance(entries, dict):  # PowerShell unrolls a one-element array it was not told to keep
        entries = [entries]
    if not isinstance(entries, list):
        raise BackendError(f"wua.ps1 {action}: 'updates' is not a list")
    check_count(len(entries), f"wua.ps1 {action}")
    return [_update(e) for e in entries]


def _update(entry: Any) -> WuaUpdate:
    try:
        categories = [c for c in entry.get("categories") or [] if isinstance(c, dict)]
        kinds = [c for c in categories if c.get("type") == "UpdateClassification"]
        return WuaUpdate(
            update_id=split_version(f"{entry['updateId']}:0")[0],
            revision=int(entry["revision"]),
            title=str(entry.get("title") or ""),
            kb=tuple(str(k) for k in entry.get("kb") or []),
            msrc_severity=str(entry.get("msrcSeverity") or ""),
            classification_names=tuple(str(c.get("name")) for c in kinds),
            classification=classify(kinds),
            cves=tuple(str(c) for c in entry.get("cveIds") or []),
            reboot_behavior=int(entry.get("rebootBehavior") or 0),
            reboot_pending=bool(entry.get("rebootRequired")) and not entry.get("isInstalled"),
            uninstallable=bool(entry.get("isUninstallable")),
            size_bytes=int(entry.get("maxDownloadSize") or 0),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BackendError(f"wua.ps1: an update entry is malformed ({e}): {entry!r:.200}") from e


def classify(categories: list[dict[str, Any]]) -> Classification:
    """The most urgent classification among an update's classification categories."""
    order = list(Classification)  # SECURITY, BUGFIX, ENHANCEMENT, OTHER: most urgent first
    found = [Classification.OTHER]
    for category in categories:
        by_id = CLASSIFICATIONS.get(str(category.get("id", "")).lower())
        kind = by_id[1] if by_id else _BY_NAME.get(str(category.get("name", "")).lower())
        if kind is not None:
            found.append(kind)
    return min(found, key=order.index)


def parse_operation(text: str, action: str) -> OperationResult:
    """The result of an ``install`` or ``uninstall`` document."""
    data = load(text, action)
    try:
        per_update = {
            f"{str(u['updateId']).lower()}:{int(u['revision'])}": int(u["resultCode"])
            for u in data.get("updates") or []
        }
        return OperationResult(
            result_code=int(data.get("resultCode") or 0),
            hresult=int(data.get("hresult") or 0),
            reboot_required=bool(data.get("rebootRequired")),
            per_update=per_update,
            missing=tuple(str(m) for m in data.get("missing") or []),
            refused=tuple(str(r) for r in data.get("refused") or []),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BackendError(f"wua.ps1 {action}: malformed result ({e})") from e


def parse_reboot_state(text: str) -> tuple[bool, tuple[str, ...]]:
    """Whether a restart is pending, and the signals (registry keys, WUA) that say so."""
    data = load(text, "reboot-state")
    return bool(data.get("rebootRequired")), tuple(str(r) for r in data.get("reasons") or [])
