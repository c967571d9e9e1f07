"""macOS APFS: a Time Machine local snapshot of the boot volume (the host only).

``tmutil localsnapshot /`` takes it and names it by date; it cannot carry a label, so
patchd keeps an index of the snapshots it took in its state directory
(``snapshot-index/apfs.json``) and lists only those. macOS may delete local snapshots by
itself (after about 24 hours, or when space runs low). A snapshot cannot be restored
from the running system: the restore outcome says how to do it from macOS Recovery.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from patchd.atomicfile import atomic_write_text
from patchd.backends.base import ProbeStatus
from patchd.snapshots.base import (
    MAX_SNAPSHOTS_LISTED,
    RestoreOutcome,
    Snapshot,
    SnapshotError,
    SnapshotProbe,
    SnapshotProvider,
)
from patchd.timeutil import parse_time

MAX_INDEX_BYTES = 1024 * 1024
_CREATED = re.compile(r"^Created local snapshot with date: (\d{4}-\d{2}-\d{2}-\d{6})\s*$", re.M)
# macOS 11 and later end the names in ".local" (and list "com.apple.os.update-..." and
# a "Snapshots for volume group containing disk /:" header, which are not patchd's);
# macOS 10.13 to 10.15 printed the names without it.
_LISTED = re.compile(r"^com\.apple\.TimeMachine\.(\d{4}-\d{2}-\d{2}-\d{6})(?:\.local)?\s*$", re.M)

CREATE_ARGV = ["tmutil", "localsnapshot", "/"]
LIST_ARGV = ["tmutil", "listlocalsnapshots", "/"]


def delete_argv(date: str) -> list[str]:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{6}", date):
        raise SnapshotError(f"{date!r} is not a local snapshot date")
    return ["tmutil", "deletelocalsnapshots", date]


def parse_created(text: str) -> str:
    """The date naming the snapshot ``tmutil localsnapshot`` reports it created."""
    match = _CREATED.search(text)
    if match is None:
        raise SnapshotError(f"tmutil reported no snapshot: {text.strip()[-200:]!r}")
    return match[1]


def parse_listed(text: str) -> list[str]:
    """The dates of the local snapshots in ``tmutil listlocalsnapshots /`` output."""
    return _LISTED.findall(text)


class ApfsProvider(SnapshotProvider):
    """Time Machine local snapshots of the macOS boot volume (see the module doc)."""

    name = "apfs"

    @property
    def index(self) -> SnapshotIndex:
        return SnapshotIndex(self.context.state_dir / "snapshot-index" / "apfs.json")

    def _probe(self) -> SnapshotProbe:
        if self.context.platform != "darwin":
            return SnapshotProbe(ProbeStatus.ABSENT, "APFS local snapshots exist only on macOS")
        if not self.context.target.is_host:
            return SnapshotProbe(ProbeStatus.PRESENT, "local snapshots cover only the host")
        self.run(LIST_ARGV)  # fails on a boot volume that is not APFS
        return SnapshotProbe(ProbeStatus.PRESENT, "boot volume", covers_target=True)

    def _create(self, label: str, run_id: str) -> Snapshot:
        date = parse_created(self.run(CREATE_ARGV).stdout)
        snapshot = Snapshot(self.name, date, self.context.clock(), label, run_id)
        # Forget what macOS purged by itself, so the index stays as small as the snapshots.
        still_there = set(parse_listed(self.run(LIST_ARGV).stdout)) | {date}
        self.index.replace({k: v for k, v in self.index.entries().items() if k in still_there})
        self.index.add(snapshot)
        return snapshot

    def _list(self) -> list[Snapshot]:
        recorded = self.index.entries()
        return [recorded[d] for d in parse_listed(self.run(LIST_ARGV).stdout) if d in recorded]

    def _delete(self, snapshot: Snapshot) -> None:
        self.run(delete_argv(snapshot.id))
        self.index.remove(snapshot.id)

    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        return RestoreOutcome(
            snapshot,
            reboot_required=False,
            manual=True,
            detail=f"macOS cannot return to local snapshot {snapshot.id} while running from the "
            "volume: start up in macOS Recovery, choose Restore from Time Machine, select the "
            f"startup disk and the snapshot dated {snapshot.id}",
        )


class SnapshotIndex:
    """patchd's record of the snapshots it took, which tmutil cannot label.

    One small JSON file per provider in the state directory, written atomically.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, Snapshot]:
        """Snapshot id → the snapshot as recorded; empty if there is no index yet."""
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_INDEX_BYTES + 1)
        except FileNotFoundError:
            return {}
        if len(data) > MAX_INDEX_BYTES:
            raise SnapshotError(f"{self.path} is larger than {MAX_INDEX_BYTES} bytes")
        try:
            raw = json.loads(data)
            return {
                k: Snapshot(v["provider"], k, parse_time(v["created_at"]), v["label"], v["run_id"])
                for k, v in raw.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SnapshotError(f"{self.path} is not a snapshot index: {e}") from e

    def add(self, snapshot: Snapshot) -> None:
        self.replace({**self.entries(), snapshot.id: snapshot})

    def remove(self, snapshot_id: str) -> None:
        entries = self.entries()
        if entries.pop(snapshot_id, None) is not None:
            self.replace(entries)

    def replace(self, entries: Mapping[str, Snapshot]) -> None:
        """Record exactly ``entries``."""
        if len(entries) > MAX_SNAPSHOTS_LISTED:
            raise SnapshotError(f"{self.path}: more than {MAX_SNAPSHOTS_LISTED} snapshots")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {k: {**s.as_dict(), "details": None} for k, s in entries.items()}
        atomic_write_text(self.path, json.dumps(body, indent=1, sort_keys=True))
