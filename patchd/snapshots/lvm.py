"""LVM thin volumes: a thin snapshot of the logical volume the target root is mounted from.

The mount holding the target root comes from ``findmnt -J`` (util-linux), the logical
volume from ``lvs --reportformat json`` (lvm2 2.02.158 and later); only thin volumes
(``lv_attr`` starting with ``V``) are snapshotted, because their snapshots need no size
and cannot overflow. patchd's snapshots are ``VG/patchd-<run id>`` with the target's
volume as origin; LVM keeps no label for them. A restore is ``lvconvert --merge``: when
the origin is open (mounted: always for the host root) the merge is deferred to its next
activation, so a reboot is required. The snapshot is consumed by the merge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from patchd.backends.base import ProbeStatus
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

LVS_FIELDS = "lv_name,vg_name,lv_attr,pool_lv,lv_path,origin,lv_time"
MAX_REPORT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class LogicalVolume:
    """One row of the ``lvs`` report."""

    name: str
    vg: str
    attr: str
    pool: str
    path: str
    origin: str
    time: str

    @property
    def full_name(self) -> str:
        return f"{self.vg}/{self.name}"

    @property
    def thin(self) -> bool:
        return self.attr.startswith("V")

    @property
    def open(self) -> bool:
        return len(self.attr) > 5 and self.attr[5] == "o"

    @property
    def devices(self) -> set[str]:
        """The paths a mount table may name it by (``/dev/VG/LV``, ``/dev/mapper/VG-LV``)."""
        mapper = f"{self.vg.replace('-', '--')}-{self.name.replace('-', '--')}"
        return {self.path, f"/dev/mapper/{mapper}", f"/dev/{self.vg}/{self.name}"} - {""}


class LvmProvider(SnapshotProvider):
    """Thin snapshots of the logical volume holding the target root (see the module doc)."""

    name = "lvm"

    def __init__(self, context: SnapshotContext) -> None:
        super().__init__(context)
        self.volume: LogicalVolume | None = None  # found by the probe

    def _probe(self) -> SnapshotProbe:
        if not self.context.platform.startswith("linux"):
            return SnapshotProbe(ProbeStatus.ABSENT, "LVM exists only on Linux")
        volumes = self._volumes()  # first: an absent lvs makes the provider absent
        root = resolved_root(self.context.target)
        mount = self.run(["findmnt", "-J", "-o", "SOURCE,TARGET", "-T", str(root)]).stdout
        source = parse_findmnt(mount)
        volume = next((v for v in volumes if source in v.devices), None)
        if volume is None:
            return SnapshotProbe(ProbeStatus.PRESENT, f"{root} is on {source}, not an LVM volume")
        if not volume.thin:
            return SnapshotProbe(
                ProbeStatus.PRESENT, f"{volume.full_name} is not a thin volume (attr {volume.attr})"
            )
        self.volume = volume
        return SnapshotProbe(
            ProbeStatus.PRESENT, f"thin volume {volume.full_name}", covers_target=True
        )

    def _volumes(self) -> list[LogicalVolume]:
        out = self.run(["lvs", "--reportformat", "json", "-o", LVS_FIELDS]).stdout
        return parse_lvs(out)

    def _origin(self) -> LogicalVolume:
        self.require()
        if self.volume is None:  # a probe that covers the target always sets it
            raise SnapshotError(f"no logical volume for {self.context.target}")
        return self.volume

    def _create(self, label: str, run_id: str) -> Snapshot:
        origin = self._origin()
        name = f"{NAME_PREFIX}{run_id}"
        self.run(["lvcreate", "-s", "-n", name, origin.full_name])
        return Snapshot(
            self.name, name, self.context.clock(), label, run_id, {"volume": f"{origin.vg}/{name}"}
        )

    def _list(self) -> list[Snapshot]:
        origin = self._origin()
        return [
            Snapshot(
                self.name,
                v.name,
                _lv_time(v.time),
                "",
                v.name.removeprefix(NAME_PREFIX),
                {"volume": v.full_name},
            )
            for v in self._volumes()
            if v.vg == origin.vg and v.origin == origin.name and v.name.startswith(NAME_PREFIX)
        ]

    def _delete(self, snapshot: Snapshot) -> None:
        self.run(["lvremove", "-y", f"{self._origin().vg}/{snapshot.id}"])

    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        origin = self._origin()
        self.run(["lvconvert", "--merge", f"{origin.vg}/{snapshot.id}"])
        current = next((v for v in self._volumes() if v.full_name == origin.full_name), origin)
        if not (current.open or self.context.target.is_host):
            return RestoreOutcome(snapshot, False, f"{origin.full_name} merged with {snapshot.id}")
        return RestoreOutcome(
            snapshot,
            reboot_required=True,
            detail=f"{origin.full_name} is in use: the merge of {snapshot.id} starts when it is "
            "next activated (reboot, or unmount it and deactivate and reactivate it)",
        )


def parse_lvs(text: str) -> list[LogicalVolume]:
    """Rows of ``lvs --reportformat json -o`` :data:`LVS_FIELDS` output."""
    if len(text) > MAX_REPORT_BYTES:
        raise SnapshotError(f"lvs report larger than {MAX_REPORT_BYTES} bytes")
    rows: list[dict[str, Any]] = [
        lv for report in json.loads(text).get("report", []) for lv in report.get("lv", [])
    ]
    return [
        LogicalVolume(
            name=row["lv_name"],
            vg=row["vg_name"],
            attr=row.get("lv_attr", ""),
            pool=row.get("pool_lv", ""),
            path=row.get("lv_path", ""),
            origin=row.get("origin", ""),
            time=row.get("lv_time", ""),
        )
        for row in rows
    ]


def parse_findmnt(text: str) -> str:
    """The source device of the (innermost) mount in ``findmnt -J -o SOURCE,TARGET -T`` output."""
    filesystems = json.loads(text).get("filesystems", [])
    if not filesystems:
        raise SnapshotError("findmnt found no mount")
    source: str = filesystems[-1]["source"]
    return source.partition("[")[0]  # btrfs and bind mounts add "[/subdir]"


def _lv_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z").astimezone(UTC)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
