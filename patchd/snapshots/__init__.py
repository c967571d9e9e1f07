"""Pre-patch snapshots: the provider registry and the choice of the chain for a run.

Before a patch run changes anything, patchd takes a package-state snapshot (always)
and a filesystem snapshot with the first provider that can snapshot the target root.
Providers are an explicit table imported lazily, so Windows- and macOS-only code never
loads on Linux. docs/snapshots.md describes the providers for administrators.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from patchd.backends.base import ProbeStatus
from patchd.errors import ConfigError, PatchdError
from patchd.snapshots.base import (
    Snapshot,
    SnapshotContext,
    SnapshotError,
    SnapshotProvider,
    SnapshotRequired,
    SnapshotUnavailable,
)

if TYPE_CHECKING:  # the policy model imports pydantic: not on the snapshot modules' path
    from patchd.policy.model import SnapshotSettings

log = logging.getLogger(__name__)

PROVIDERS: dict[str, str] = {
    "snapper": "patchd.snapshots.snapper:SnapperProvider",
    "btrfs": "patchd.snapshots.btrfs:BtrfsProvider",
    "zfs": "patchd.snapshots.zfs:ZfsProvider",
    "lvm": "patchd.snapshots.lvm:LvmProvider",
    "windows-restore-point": "patchd.snapshots.windows:WindowsRestorePointProvider",
    "apfs": "patchd.snapshots.apfs:ApfsProvider",
    "package-state": "patchd.snapshots.package_state:PackageStateProvider",
}
PACKAGE_STATE = "package-state"
# Tried in this order when the policy names none: snapper before plain btrfs, because
# snapper's snapshots are the ones the administrator already manages and rolls back.
FILESYSTEM_PREFERENCE = ("snapper", "btrfs", "zfs", "lvm", "windows-restore-point", "apfs")

__all__ = [
    "PROVIDERS",
    "Snapshot",
    "SnapshotContext",
    "SnapshotError",
    "SnapshotPlan",
    "SnapshotProvider",
    "SnapshotRequired",
    "SnapshotUnavailable",
    "provider_class",
    "select_providers",
]


def provider_class(name: str) -> type[SnapshotProvider]:
    """The class implementing provider ``name``; :class:`ConfigError` for an unknown name."""
    try:
        module_name, _, class_name = PROVIDERS[name].partition(":")
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown snapshot provider {name!r}", hint=f"known: {known}") from None
    cls: type[SnapshotProvider] = getattr(importlib.import_module(module_name), class_name)
    return cls


@dataclass(frozen=True)
class SnapshotPlan:
    """The providers a run snapshots with, and why the others were passed over.

    ``filesystem`` is ``None`` when no filesystem provider can snapshot the target (mode
    ``preferred``) or none was wanted (mode ``off``). ``passed_over`` holds one line per
    provider tried and found unusable.
    """

    mode: str
    filesystem: SnapshotProvider | None
    package_state: SnapshotProvider
    passed_over: tuple[str, ...] = ()

    @property
    def providers(self) -> tuple[SnapshotProvider, ...]:
        """In the order snapshots are taken: package state first, so the filesystem
        snapshot also holds its manifest."""
        fs = (self.filesystem,) if self.filesystem is not None else ()
        return (self.package_state, *fs)

    def take(self, label: str, run_id: str) -> tuple[list[Snapshot], list[str]]:
        """Take every snapshot of the plan; return them and notes on what failed.

        A failing package-state snapshot, or a failing filesystem snapshot in mode
        ``required``, raises: the run must not go on without it. In mode ``preferred``
        a failing filesystem snapshot becomes a note.
        """
        taken = [self.package_state.create(label, run_id)]
        notes = list(self.passed_over)
        if self.filesystem is not None:
            try:
                taken.append(self.filesystem.create(label, run_id))
            except PatchdError as e:
                if self.mode == "required":
                    raise
                notes.append(f"{self.filesystem.name}: snapshot failed: {e}")
        return taken, notes

    def prune(self, keep: int) -> list[Snapshot]:
        """Apply retention to every provider of the plan; return what was deleted.

        Never raises: a snapshot that cannot be deleted now is logged and tried again
        after the next run, which retention must not stop.
        """
        deleted = []
        for provider in self.providers:
            try:
                deleted += provider.prune(keep)
            except PatchdError as e:
                log.warning("%s: retention: %s", provider.name, e)
        return deleted


def select_providers(settings: SnapshotSettings, context: SnapshotContext) -> SnapshotPlan:
    """Choose the providers for a run on ``context``'s target, probing as little as needed.

    The policy's ``providers`` in their order, else :data:`FILESYSTEM_PREFERENCE`; the first
    filesystem provider that is present and covers the target root wins. Package state is
    always in the plan. Raises :class:`SnapshotRequired` in mode ``required`` when no
    filesystem provider can be used, and :class:`SnapshotUnavailable` when package state
    cannot (no package backend) — both before anything is changed.
    """
    package_state = provider_class(PACKAGE_STATE)(context)
    if not package_state.probe().usable:
        raise SnapshotUnavailable(
            f"package-state snapshots are unavailable: {package_state.probe()}",
            hint="patchd needs a working package backend to patch this target",
        )
    if settings.mode == "off":
        return SnapshotPlan(settings.mode, None, package_state)
    wanted: Sequence[str] = settings.providers or FILESYSTEM_PREFERENCE
    passed_over: list[str] = []
    for name in wanted:
        if name == PACKAGE_STATE:
            continue
        provider = provider_class(name)(context)
        probe = provider.probe()
        if probe.usable:
            log.info("snapshots of %s: %s and package state", context.target, name)
            return SnapshotPlan(settings.mode, provider, package_state, tuple(passed_over))
        if probe.status is not ProbeStatus.ABSENT or settings.providers:
            # Installed but broken deserves attention; merely not covering this root does not.
            level = logging.WARNING if probe.status is ProbeStatus.BROKEN else logging.DEBUG
            log.log(level, "%s snapshots unusable: %s", name, probe)
        passed_over.append(f"{name}: {probe}")
    if settings.mode == "required":
        tried = "; ".join(passed_over) or "no filesystem provider is listed in the policy"
        raise SnapshotRequired(
            f"the policy requires a filesystem snapshot of {context.target} before patching, "
            f"and no provider can take one ({tried})",
            hint="set up one of these providers for the target, or set snapshots.mode to "
            "preferred; nothing was changed",
        )
    return SnapshotPlan(settings.mode, None, package_state, tuple(passed_over))
