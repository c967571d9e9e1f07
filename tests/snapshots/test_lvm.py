"""The LVM provider on real ``lvs``/``lvcreate``/``findmnt`` output (no device-mapper here).

Every operation's exact argv is asserted; the commands are answered from
tests/data/snapshots/ (PROVENANCE.md says where each capture comes from). The thin
volumes come from a real ``lvs --reportformat json`` of a thin pool with thin and
thick snapshots (libstorage-ng's capture, VG ``test``); lvm2 keeps no label on a
snapshot, so where a test needs patchd's own snapshots it renames two of the captured
thin snapshots of ``test/thin2`` the way patchd names its own, in the open.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchd.errors import ToolNotFoundError
from patchd.snapshots.base import SnapshotContext
from patchd.snapshots.lvm import LVS_FIELDS, LvmProvider, _lv_time, parse_findmnt, parse_lvs
from patchd.target import Target
from tests.snapshots.realfs import Clock, ReplayRunner, captured

LVS = ("lvs", "--reportformat", "json", "-o", LVS_FIELDS)
# Where findmnt-lvm-*.json were captured (tmpfs mounts named after the volumes).
THIN_MOUNT, THICK_MOUNT = "/tmp/lpk-lvm/m/root", "/tmp/lpk-lvm/m/srv"
OLDER, NEWER = "patchd-20261202T020000Z-9a8b7c", "patchd-20261203T020000Z-5e6f70"
REPORT = "lvs-libstorage-snapshot1.json"


def with_patchd_snapshots() -> str:
    """The captured report with thin2's snapshots named as patchd names its own."""
    text = captured(REPORT)
    renamed = text.replace('"thin2-snap1"', f'"{OLDER}"').replace('"thin2-snap2"', f'"{NEWER}"')
    assert (renamed.count(OLDER), renamed.count(NEWER)) == (1, 1)
    return renamed


def lvm(
    root: str, findmnt: str, lvs: str | list[str], tmp_path: Path
) -> tuple[LvmProvider, ReplayRunner]:
    runner = ReplayRunner(
        {
            LVS: lvs,
            ("findmnt", "-J", "-o", "SOURCE,TARGET", "-T", root): captured(findmnt),
            ("lvcreate",): captured("lvcreate.txt"),
            ("lvconvert",): captured("lvconvert-merge-open.txt"),
            ("lvremove",): captured("lvremove.txt"),
        }
    )
    context = SnapshotContext(
        Target(Path(root)), tmp_path, clock=Clock(), run=runner, platform="linux"
    )
    return LvmProvider(context), runner


def test_the_report_is_read_row_by_row() -> None:
    volumes = {v.full_name: v for v in parse_lvs(captured(REPORT))}
    assert len(volumes) == 14  # libstorage-ng asked with --all: hidden volumes are rows too
    thin = volumes["test/thin2"]
    assert (thin.thin, thin.open, thin.pool) == (True, False, "thin-pool")
    assert {"/dev/mapper/test-thin2", "/dev/test/thin2"} <= thin.devices
    assert volumes["test/linear1"].thin is False
    assert volumes["test/thin2-snap1"].origin == "thin2"
    assert volumes["test/thin2-snap2"].attr == "Vwi---tz-k"  # inactive, skip-activation flag
    assert volumes["test/thin-pool"].attr.startswith("t")


def test_lvm2_reports_the_fields_patchd_asks_for_with_path_and_time() -> None:
    (root, swap) = parse_lvs(captured("lvs-lvm2-2.03.16-linear.json"))
    assert (root.full_name, root.path, swap.full_name) == ("vg0/root", "/dev/vg0/root", "vg0/swap")
    assert _lv_time(root.time) == datetime(2026, 12, 4, 23, 42, 36, tzinfo=UTC)
    assert _lv_time("") == datetime.fromtimestamp(0, UTC)  # a report without lv_time


def test_findmnt_gives_the_device_without_a_subvolume_suffix() -> None:
    assert parse_findmnt(captured("findmnt-btrfs-subvol.json")) == "/dev/loop0"
    assert parse_findmnt(captured("findmnt-lvm-thin2.json")) == "/dev/mapper/test-thin2"


def test_host_root_snapshot_list_restore_delete_and_prune(tmp_path: Path) -> None:
    # findmnt answers for "/" with the capture of the thin2 mount (it names the same source).
    snapshots, runner = lvm("/", "findmnt-lvm-thin2.json", with_patchd_snapshots(), tmp_path)
    probe = snapshots.probe()
    assert probe.usable, probe
    assert probe.detail == "thin volume test/thin2"
    assert runner.calls == [LVS, ("findmnt", "-J", "-o", "SOURCE,TARGET", "-T", "/")]

    runner.calls.clear()
    taken = snapshots.create("before patching", "20261204T215900Z-3fa9c1")
    assert runner.calls == [
        ("lvcreate", "-s", "-n", "patchd-20261204T215900Z-3fa9c1", "test/thin2")
    ]
    assert taken.details == {"volume": "test/patchd-20261204T215900Z-3fa9c1"}

    listed = snapshots.list()
    # Not linear3-snap2 (a thin snapshot of another origin), nor the thick snapshots.
    assert [(s.id, s.run_id) for s in listed] == [
        (OLDER, "20261202T020000Z-9a8b7c"),
        (NEWER, "20261203T020000Z-5e6f70"),
    ]

    runner.calls.clear()
    outcome = snapshots.restore(listed[1])
    assert runner.calls == [LVS, ("lvconvert", "--merge", f"test/{NEWER}"), LVS]
    assert outcome.reboot_required is True  # the host root is always in use
    assert "starts when it is next activated" in outcome.detail

    runner.calls.clear()
    snapshots.delete(listed[1])
    assert runner.calls == [LVS, ("lvremove", "-y", f"test/{NEWER}")]

    runner.calls.clear()
    assert [s.id for s in snapshots.prune(1)] == [OLDER]
    assert runner.calls == [LVS, ("lvremove", "-y", f"test/{OLDER}")]


def test_an_alternate_root_whose_volume_is_closed_merges_at_once(tmp_path: Path) -> None:
    report = with_patchd_snapshots()  # thin2 is "Vwi-a-tz--": active, not open
    snapshots, runner = lvm(THIN_MOUNT, "findmnt-lvm-thin2.json", report, tmp_path)
    older, _ = snapshots.list()
    outcome = snapshots.restore(older)
    assert ("lvconvert", "--merge", f"test/{OLDER}") in runner.calls
    assert (outcome.reboot_required, outcome.detail) == (False, f"test/thin2 merged with {OLDER}")


def test_an_alternate_root_in_use_waits_for_the_next_activation(tmp_path: Path) -> None:
    report = with_patchd_snapshots()
    opened = report.replace('"thin2", "lv_uuid":"fA6gcX-bmO4-ZeKX-eASS-SrJs-MsE6-33f0Tf", "vg_name":"test", "vg_uuid":"e9UqnS-Afr3-qwoY-GEbf-aS0N-JXiV-tswJd7", "lv_role":"public,origin,thinorigin,multithinorigin", "lv_attr":"Vwi-a-tz--"', '"thin2", "lv_uuid":"fA6gcX-bmO4-ZeKX-eASS-SrJs-MsE6-33f0Tf", "vg_name":"test", "vg_uuid":"e9UqnS-Afr3-qwoY-GEbf-aS0N-JXiV-tswJd7", "lv_role":"public,origin,thinorigin,multithinorigin", "lv_attr":"Vwi-aotz--"')  # fmt: skip
    assert opened != report  # as lvs shows thin2 once it is mounted
    snapshots, _ = lvm(THIN_MOUNT, "findmnt-lvm-thin2.json", opened, tmp_path)
    _, newer = snapshots.list()
    outcome = snapshots.restore(newer)
    assert outcome.reboot_required is True
    assert outcome.detail.startswith("test/thin2 is in use")


def test_a_thick_volume_is_not_covered(tmp_path: Path) -> None:
    snapshots, _ = lvm(THICK_MOUNT, "findmnt-lvm-linear1.json", captured(REPORT), tmp_path)
    probe = snapshots.probe()
    assert probe.status.value == "present"
    assert probe.detail == "test/linear1 is not a thin volume (attr owi-a-s---)"
    assert not probe.usable


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
