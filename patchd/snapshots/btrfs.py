"""btrfs: a read-only snapshot of the subvolume that holds the target root.

Snapshots live in ``.patchd-snapshots/<subvolume name>/`` beside the subvolume (same
filesystem, outside the subvolume, so replacing the subvolume leaves them where they
are); when the subvolume is a mount point (the host root) they live inside it, in
``.patchd-snapshots/``, as snapper keeps ``.snapshots``. Each snapshot ``patchd-<run id>``
has a ``patchd-<run id>.json`` beside it, written first: a snapshot is patchd's when both
exist and the first is a subvolume. A target root inside a subvolume is snapshotted and
restored with its whole subvolume; nested subvolumes are not part of a snapshot.

Restoring an alternate root swaps subvolumes: a writable snapshot of the snapshot is made
beside the subvolume, the two are exchanged in one ``renameat2(RENAME_EXCHANGE)`` (no
moment without a subvolume at the path), then the replaced one is deleted. A crash
before the exchange leaves the old tree in place and a ``.<name>.patchd-restore``
leftover (removed by the next restore); after it, the restored tree in place and the old
one under that name. Where the kernel cannot exchange, two renames are used and a crash
between them leaves the old tree at ``.<name>.patchd-old``: rename it back by hand.
Restoring the host root makes a writable snapshot the filesystem's default subvolume;
the machine runs from it after a reboot.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from patchd.atomicfile import atomic_write_text, fsync_directory
from patchd.backends.base import ProbeStatus
from patchd.errors import CommandError
from patchd.snapshots.base import (
    NAME_PREFIX,
    RestoreOutcome,
    Snapshot,
    SnapshotContext,
    SnapshotError,
    SnapshotProbe,
    SnapshotProvider,
    resolved_root,
)
from patchd.timeutil import format_time, parse_time

SUBVOLUME_INODE = 256  # btrfs gives the root directory of every subvolume this inode
SNAPSHOT_DIR_NAME = ".patchd-snapshots"
MAX_DEPTH = 64  # directories walked up from the target root to its subvolume
MAX_METADATA_BYTES = 64 * 1024
_SUBVOLUME_ID = re.compile(r"^\s*Subvolume ID:\s*(\d+)\s*$", re.MULTILINE)
_SUBVOLUME_OPTION = re.compile(r"(^|[,=])subvol(id)?=")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass(frozen=True)
class BtrfsLayout:
    """Where the target's subvolume and its snapshots are."""

    subvolume: Path
    snapshot_dir: Path
    mounted: bool  # the subvolume is a mount point: it cannot be swapped by renaming


class BtrfsProvider(SnapshotProvider):
    """Snapshots of the btrfs subvolume holding the target root (see the module doc)."""

    name = "btrfs"

    def __init__(self, context: SnapshotContext) -> None:
        super().__init__(context)
        self.layout: BtrfsLayout | None = None  # found by the probe

    def _probe(self) -> SnapshotProbe:
        if not self.context.platform.startswith("linux"):
            return SnapshotProbe(ProbeStatus.ABSENT, "btrfs exists only on Linux")
        version = self.run(["btrfs", "--version"]).stdout.strip()
        root = resolved_root(self.context.target)
        fstype = self.run(["stat", "-f", "-c", "%T", str(root)]).stdout.strip()
        if fstype != "btrfs":
            return SnapshotProbe(ProbeStatus.PRESENT, f"{root} is on {fstype}", version=version)
        # Not os.path.ismount: every subvolume has its own st_dev, so it says yes to all.
        found = self.run(["findmnt", "-n", "-o", "TARGET", "-T", str(root)]).stdout.strip()
        mount_point = Path(found)
        subvolume = self._find_subvolume(root, mount_point)
        mounted = subvolume == mount_point
        if mounted:
            snapshot_dir = subvolume / SNAPSHOT_DIR_NAME
        else:
            snapshot_dir = subvolume.parent / SNAPSHOT_DIR_NAME / subvolume.name
        self.layout = BtrfsLayout(subvolume, snapshot_dir, mounted)
        whole = "" if subvolume == root else " (the whole subvolume is snapshotted)"
        return SnapshotProbe(
            ProbeStatus.PRESENT,
            f"subvolume {subvolume}{whole}",
            covers_target=True,
            version=version,
        )

    def _find_subvolume(self, root: Path, mount_point: Path) -> Path:
        """The nearest subvolume at or above ``root``, never above its mount point."""
        path = root
        for _ in range(MAX_DEPTH):
            if _is_subvolume(path):
                self.run(["btrfs", "subvolume", "show", str(path)])  # btrfs agrees, or broken
                return path
            if path in (mount_point, path.parent):
                break  # a bind mount of a plain directory: no subvolume of its own
            path = path.parent
        raise SnapshotError(f"no btrfs subvolume holds {root} below its mount {mount_point}")

    def _layout(self) -> BtrfsLayout:
        self.require()
        if self.layout is None:  # a probe that covers the target always sets it
            raise SnapshotError(f"no btrfs layout for {self.context.target}")
        return self.layout

    def _create(self, label: str, run_id: str) -> Snapshot:
        layout = self._layout()
        snapshot_id = f"{NAME_PREFIX}{run_id}"
        path = layout.snapshot_dir / snapshot_id
        if path.exists():
            raise SnapshotError(f"{path} already exists: run {run_id} has a btrfs snapshot")
        layout.snapshot_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        snapshot = Snapshot(
            self.name,
            snapshot_id,
            self.context.clock(),
            label,
            run_id,
            {"path": str(path), "subvolume": str(layout.subvolume)},
        )
        # The metadata first: a crash in between leaves a small file no listing counts.
        metadata = {k: v for k, v in snapshot.as_dict().items() if k != "details"}
        atomic_write_text(_metadata_path(path), json.dumps(metadata, sort_keys=True))
        try:
            self.run(["btrfs", "subvolume", "snapshot", "-r", str(layout.subvolume), str(path)])
        except BaseException:
            _metadata_path(path).unlink(missing_ok=True)
            raise
        return snapshot

    def _list(self) -> list[Snapshot]:
        layout = self._layout()
        if not layout.snapshot_dir.is_dir():
            return []
        found = []
        for metadata_path in sorted(layout.snapshot_dir.glob(f"{NAME_PREFIX}*.json")):
            path = layout.snapshot_dir / metadata_path.name.removesuffix(".json")
            if not _is_subvolume(path):
                continue  # an interrupted create, or a stub copied into a later snapshot
            with metadata_path.open("rb") as f:
                data = json.loads(f.read(MAX_METADATA_BYTES))
            found.append(
                Snapshot(
                    self.name,
                    path.name,
                    parse_time(data["created_at"]),
                    data["label"],
                    data["run_id"],
                    {"path": str(path), "subvolume": str(layout.subvolume)},
                )
            )
        return found

    def _delete(self, snapshot: Snapshot) -> None:
        path = self._layout().snapshot_dir / snapshot.id
        self.run(["btrfs", "subvolume", "delete", str(path)])
        _metadata_path(path).unlink(missing_ok=True)

    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        layout = self._layout()
        source = layout.snapshot_dir / snapshot.id
        if self.context.target.is_host:
            return self.restore_as_default(snapshot, layout, source)
        if layout.mounted:
            raise SnapshotError(
                f"{layout.subvolume} is a mount point: patchd cannot swap it while mounted",
                hint=f"unmount it, then mount a writable snapshot of {source} in its place",
            )
        return self._restore_by_swap(snapshot, layout, source)

    def _restore_by_swap(
        self, snapshot: Snapshot, layout: BtrfsLayout, source: Path
    ) -> RestoreOutcome:
        current = layout.subvolume
        incoming = current.with_name(f".{current.name}.patchd-restore")
        if _is_subvolume(incoming):  # left by an interrupted restore
            self.run(["btrfs", "subvolume", "delete", str(incoming)])
        self.run(["btrfs", "subvolume", "snapshot", str(source), str(incoming)])
        if _exchange(current, incoming):
            outgoing = incoming
        else:
            outgoing = current.with_name(f".{current.name}.patchd-old")
            os.rename(current, outgoing)  # the crash window: until the next line
            os.rename(incoming, current)
        fsync_directory(current.parent)
        detail = f"{current} is back as of {format_time(snapshot.created_at)}"
        try:
            self.run(["btrfs", "subvolume", "delete", str(outgoing)])
        except CommandError as e:  # nested subvolumes or a mount inside keep it busy
            detail += f"; the replaced tree was kept at {outgoing}: {e.summary}"
        return RestoreOutcome(snapshot, reboot_required=False, detail=detail)

    def restore_as_default(
        self, snapshot: Snapshot, layout: BtrfsLayout, source: Path
    ) -> RestoreOutcome:
        """Make a writable snapshot of ``source`` the default subvolume (the host's way).

        Public so the mechanism can be tried on a test filesystem; a restore of the host
        root calls it. The running system is untouched until the reboot.
        """
        clone = layout.snapshot_dir / f"{snapshot.id}.restored"
        if clone.exists():
            raise SnapshotError(f"{clone} exists: {snapshot.id} was already restored")
        self.run(["btrfs", "subvolume", "snapshot", str(source), str(clone)])
        shown = self.run(["btrfs", "subvolume", "show", str(clone)]).stdout
        match = _SUBVOLUME_ID.search(shown)
        if match is None:
            raise SnapshotError(f"`btrfs subvolume show {clone}` gave no subvolume id")
        self.run(["btrfs", "subvolume", "set-default", match[1], str(layout.subvolume)])
        detail = f"{clone} (subvolume {match[1]}) is the default subvolume from the next boot"
        pinned = self._pinned_root() if self.context.target.is_host else ""
        if pinned:
            return RestoreOutcome(
                snapshot,
                reboot_required=True,
                manual=True,
                detail=f"{detail}, but {pinned} names the root subvolume and overrides the "
                f"default: change it to subvolid={match[1]}, then reboot",
            )
        return RestoreOutcome(snapshot, reboot_required=True, detail=f"{detail}: reboot")

    def _pinned_root(self) -> str:
        """Where the root's subvolume is named explicitly (set-default is then ignored)."""
        for line in _read_text(self.context.target.path("/etc/fstab")).splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "/" and _SUBVOLUME_OPTION.search(fields[3]):
                return "/etc/fstab"
        for arg in _read_text(Path("/proc/cmdline")).split():
            if arg.startswith("rootflags=") and _SUBVOLUME_OPTION.search(arg):
                return "the kernel command line (rootflags)"
        return ""


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.read(MAX_METADATA_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""


def _is_subvolume(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_ino == SUBVOLUME_INODE and os.path.isdir(path) and not path.is_symlink()


def _metadata_path(snapshot_path: Path) -> Path:
    return snapshot_path.with_name(snapshot_path.name + ".json")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where that is unsupported."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # glibc before 2.28, musl before 1.2.x
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err), str(a))
