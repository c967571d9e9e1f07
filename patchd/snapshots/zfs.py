"""ZFS: a snapshot of the dataset the target root lives in.

The dataset is the one whose mount point is the nearest ancestor of (or equal to) the
target root and on the same device (datasets mounted with ``mountpoint=legacy`` are not
found). patchd's snapshots are ``DATASET@patchd-<run id>`` with the user properties
``patchd:run`` and ``patchd:label``; both the name and the property make one patchd's.
Child datasets are not included. A restore is ``zfs rollback -r``, which destroys the
snapshots taken after the one restored: patchd refuses when any of those is not its own.
Works with OpenZFS and with zfs-fuse (which lacks ``zfs list -p``, so times are read with
``zfs get -p``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

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

RUN_PROPERTY = "patchd:run"
LABEL_PROPERTY = "patchd:label"
GET_BATCH = 100  # snapshot names per `zfs get`, to stay far below argv limits
_NO_MOUNT = {"-", "none", "legacy"}

# What zfs(8) says when no ZFS runs: no kernel module (OpenZFS) or no daemon (zfs-fuse).
NOT_RUNNING = "failed to initialize ZFS library"


class ZfsProvider(SnapshotProvider):
    """Snapshots of the ZFS dataset holding the target root (see the module doc)."""

    name = "zfs"

    def __init__(self, context: SnapshotContext) -> None:
        super().__init__(context)
        self.dataset: str | None = None  # found by the probe

    def _probe(self) -> SnapshotProbe:
        if self.context.platform == "win32":
            return SnapshotProbe(ProbeStatus.ABSENT, "no ZFS on Windows")
        try:
            out = self.run(["zfs", "list", "-H", "-o", "name,mountpoint"]).stdout
        except CommandError as e:
            if NOT_RUNNING in e.output:  # tools installed, no kernel module or zfs-fuse daemon
                return SnapshotProbe(ProbeStatus.ABSENT, "ZFS is installed but not running here")
            raise
        root = resolved_root(self.context.target)
        dataset = find_dataset(out, root)
        if dataset is None:
            return SnapshotProbe(ProbeStatus.PRESENT, f"no mounted dataset holds {root}")
        self.dataset = dataset
        return SnapshotProbe(ProbeStatus.PRESENT, f"dataset {dataset}", covers_target=True)

    def _dataset(self) -> str:
        self.require()
        if self.dataset is None:  # a probe that covers the target always sets it
            raise SnapshotError(f"no ZFS dataset for {self.context.target}")
        return self.dataset

    def _create(self, label: str, run_id: str) -> Snapshot:
        name = f"{self._dataset()}@{NAME_PREFIX}{run_id}"
        labelled = ["-o", f"{LABEL_PROPERTY}={label}"] if label else []
        self.run(["zfs", "snapshot", "-o", f"{RUN_PROPERTY}={run_id}", *labelled, name])
        return Snapshot(
            self.name, name.partition("@")[2], self.context.clock(), label, run_id, {"name": name}
        )

    def _list(self) -> list[Snapshot]:
        return [s for s in self._all_snapshots() if s.run_id]

    def _all_snapshots(self) -> list[Snapshot]:
        """Every snapshot of the dataset in creation order; others' have no ``run_id``."""
        dataset = self._dataset()
        names = self.run(
            [
                "zfs",
                "list",
                "-H",
                "-t",
                "snapshot",
                "-o",
                "name",
                "-s",
                "createtxg",
                "-d",
                "1",
                dataset,
            ]
        ).stdout.split("\n")
        names = [n for n in names if n.startswith(f"{dataset}@")]
        ours = [n for n in names if n.startswith(f"{dataset}@{NAME_PREFIX}")]
        properties: dict[str, dict[str, str]] = {}
        for start in range(0, len(ours), GET_BATCH):
            argv = ["zfs", "get", "-H", "-p", "-o", "name,property,value"]
            argv += [f"creation,{RUN_PROPERTY},{LABEL_PROPERTY}", *ours[start : start + GET_BATCH]]
            for name, prop, value in parse_get(self.run(argv).stdout):
                properties.setdefault(name, {})[prop] = value
        return [_snapshot(name, properties.get(name, {})) for name in names]

    def _delete(self, snapshot: Snapshot) -> None:
        self.run(["zfs", "destroy", f"{self._dataset()}@{snapshot.id}"])

    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        dataset = self._dataset()
        everything = self._all_snapshots()
        later = everything[[s.id for s in everything].index(snapshot.id) + 1 :]
        foreign = [s.id for s in later if not s.run_id]
        if foreign:
            raise SnapshotError(
                f"rolling {dataset} back to {snapshot.id} would destroy snapshots patchd did "
                f"not take: {', '.join(foreign)}",
                hint=f"copy or release them, or run `zfs rollback -r {dataset}@{snapshot.id}`",
            )
        self.run(["zfs", "rollback", "-r", f"{dataset}@{snapshot.id}"])
        detail = f"{dataset} rolled back to {snapshot.id}"
        if later:
            detail += f"; later snapshots destroyed: {', '.join(s.id for s in later)}"
        if self.context.target.is_host:
            detail += "; programs still running use the replaced files: reboot"
        return RestoreOutcome(snapshot, reboot_required=self.context.target.is_host, detail=detail)


def find_dataset(listing: str, root: Path) -> str | None:
    """The dataset in ``zfs list -H -o name,mountpoint`` output that holds ``root``.

    The nearest mount point at or above ``root``, on the same device (so a non-ZFS mount
    in between is not mistaken for the dataset).
    """
    best: tuple[int, str] | None = None
    for line in listing.splitlines():
        name, _, mountpoint = line.partition("\t")
        if mountpoint in _NO_MOUNT or not mountpoint.startswith("/"):
            continue
        mount = Path(mountpoint)
        if (mount == root or mount in root.parents) and _same_device(mount, root):
            depth = len(mount.parts)
            if best is None or depth > best[0]:
                best = (depth, name)
    return best[1] if best else None


def parse_get(text: str) -> Iterator[tuple[str, str, str]]:
    """``(name, property, value)`` from ``zfs get -H -o name,property,value`` output."""
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            yield parts[0], parts[1], parts[2]


def _snapshot(name: str, properties: dict[str, str]) -> Snapshot:
    run_id = properties.get(RUN_PROPERTY, "-")
    label = properties.get(LABEL_PROPERTY, "-")
    creation = properties.get("creation", "0")
    created = datetime.fromtimestamp(int(creation) if creation.isdigit() else 0, UTC)
    return Snapshot(
        "zfs",
        name.partition("@")[2],
        created,
        "" if label == "-" else label,
        "" if run_id == "-" else run_id,
        {"name": name},
    )


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False
