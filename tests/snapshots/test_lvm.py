"""The LVM provider on captured ``lvs``/``findmnt`` output (no device-mapper here).

Every operation's exact argv is asserted; the commands are answered from
tests/data/snapshots/ (see its README for where the formats come from).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchd.errors import ToolNotFoundError
from patchd.snapshots.base import SnapshotContext
from patchd.snapshots.lvm import LVS_FIELDS, LvmProvider, parse_findmnt, parse_lvs
from patchd.target import Target
from tests.snapshots.realfs import Clock, ReplayRunner, captured

LVS = ("lvs", "--reportformat", "json", "-o", LVS_FIELDS)
OLDER, NEWER = "patchd-20261202T020000Z-9a8b7c", "patchd-20261203T020000Z-5e6f70"


def lvm(
    root: str, findmnt: str, lvs: str | list[str], tmp_path: Path
) -> tuple[LvmProvider, ReplayRunner]:
    runner = ReplayRunner(
        {
            LVS: lvs,
            ("findmnt", "-J", "-o", "SOURCE,TARGET", "-T", root): captured(findmnt),
            ("lvcreate",): captured("lvcreate.txt"),
            ("lvconvert",): captured("lvconvert-merge-open.txt"),
            ("lvremove",): "",
        }
    )
    context = SnapshotContext(
        Target(Path(root)), tmp_path, clock=Clock(), run=runner, platform="linux"
    )
    return LvmProvider(context), runner


def test_the_report_is_read_row_by_row() -> None:
    volumes = {v.full_name: v for v in parse_lvs(captured("lvs-thin.json"))}
    assert len(volumes) == 10
    web = volumes["data-vg/web-root"]
    assert (web.thin, web.open, web.pool) == (True, True, "thinpool")
    assert "/dev/mapper/data--vg-web--root" in web.devices
    assert volumes["data-vg/srv-data"].thin is False
    assert volumes[f"vg0/{OLDER}"].origin == "root"
    assert volumes[f"vg0/{OLDER}"].open is False


def test_findmnt_gives_the_device_without_a_subvolume_suffix() -> None:
    assert parse_findmnt(captured("findmnt-btrfs-subvol.json")) == "/dev/loop0"
    assert parse_findmnt(captured("findmnt-lvm-root.json")) == "/dev/mapper/vg0-root"


def test_host_root_snapshot_list_restore_delete_and_prune(tmp_path: Path) -> None:
    snapshots, runner = lvm("/", "findmnt-lvm-root.json", captured("lvs-thin.json"), tmp_path)
    probe = snapshots.probe()
    assert probe.usable, probe
    assert probe.detail == "thin volume vg0/root"
    assert runner.calls == [LVS, ("findmnt", "-J", "-o", "SOURCE,TARGET", "-T", "/")]

    runner.calls.clear()
    taken = snapshots.create("before patching", "20261204T215900Z-3fa9c1")
    assert runner.calls == [("lvcreate", "-s", "-n", "patchd-20261204T215900Z-3fa9c1", "vg0/root")]
    assert taken.details == {"volume": "vg0/patchd-20261204T215900Z-3fa9c1"}

    listed = snapshots.list()
    assert [(s.id, s.run_id) for s in listed] == [
        (OLDER, "20261202T020000Z-9a8b7c"),
        (NEWER, "20261203T020000Z-5e6f70"),
    ]  # not the administrator's root-before-upgrade, nor data-vg's
    assert listed[0].created_at == datetime(2026, 12, 2, 2, 0, 5, tzinfo=UTC)

    runner.calls.clear()
    outcome = snapshots.restore(listed[1])
    assert runner.calls == [LVS, ("lvconvert", "--merge", f"vg0/{NEWER}"), LVS]
    assert outcome.reboot_required is True
    assert "starts when it is next activated" in outcome.detail

    runner.calls.clear()
    snapshots.delete(listed[1])
    assert runner.calls == [LVS, ("lvremove", "-y", f"vg0/{NEWER}")]

    runner.calls.clear()
    assert [s.id for s in snapshots.prune(1)] == [OLDER]
    assert runner.calls == [LVS, ("lvremove", "-y", f"vg0/{OLDER}")]


def test_an_alternate_root_whose_volume_is_closed_merges_at_once(tmp_path: Path) -> None:
    report = captured("lvs-thin.json")
    closed = report.replace('"web-root", "vg_name":"data-vg", "lv_attr":"Vwi-aotz--"', '"web-root", "vg_name":"data-vg", "lv_attr":"Vwi-a-tz--"')  # fmt: skip
    assert closed != report
    root = "/var/lib/machines/web"
    snapshots, runner = lvm(
        root, "findmnt-lvm-web.json", [report, report, report, closed], tmp_path
    )
    assert snapshots.probe().detail == "thin volume data-vg/web-root"
    (only,) = snapshots.list()
    assert only.id == "patchd-20261201T020000Z-0c1d2e"

    outcome = snapshots.restore(only)

    assert ("lvconvert", "--merge", "data-vg/patchd-20261201T020000Z-0c1d2e") in runner.calls
    assert (outcome.reboot_required, outcome.detail) == (
        False,
        "data-vg/web-root merged with patchd-20261201T020000Z-0c1d2e",
    )


def test_a_thick_volume_is_not_covered(tmp_path: Path) -> None:
    snapshots, _ = lvm("/srv", "findmnt-lvm-srv.json", captured("lvs-thin.json"), tmp_path)
    probe = snapshots.probe()
    assert probe.status.value == "present"
    assert probe.detail == "data-vg/srv-data is not a thin volume (attr -wi-ao----)"


@pytest.mark.parametrize(
    ("platform", "answer", "expected"),
    [
        pytest.param(
            "linux", ToolNotFoundError("lvs"), "absent: lvs is not installed", id="no-lvm2"
        ),
        pytest.param("darwin", "", "absent: LVM exists only on Linux", id="macos"),
    ],
)
def test_absent_where_lvm_is_not(
    platform: str, answer: str | Exception, expected: str, tmp_path: Path
) -> None:
    runner = ReplayRunner({LVS: answer})
    context = SnapshotContext(Target(Path("/")), tmp_path, run=runner, platform=platform)
    assert str(LvmProvider(context).probe()) == expected
