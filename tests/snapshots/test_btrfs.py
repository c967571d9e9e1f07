"""The btrfs provider on a real btrfs filesystem (a loop-mounted file)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchd.snapshots.base import Snapshot, SnapshotContext, SnapshotError
from patchd.snapshots.btrfs import BtrfsProvider
from patchd.target import Target
from tests.conftest import require
from tests.snapshots.realfs import (
    BTRFS_TOOLS,
    Clock,
    btrfs_loop,
    make_tree,
    read_tree,
    sh,
    subvolume,
    tmpfs,
)

TREE = {
    "etc/hostname": "web1\n",
    "etc/app.conf": "workers=4\n",
    "usr/lib/app/lib.so": "version 1.0\n",
}


@pytest.fixture(scope="module")
def btrfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require(*BTRFS_TOOLS, root=True)
    with btrfs_loop(tmp_path_factory.mktemp("fs")) as mount:
        yield mount


@pytest.fixture
def target(btrfs: Path, request: pytest.FixtureRequest) -> Path:
    """A subvolume holding a small system tree, named after the test."""
    return subvolume(btrfs, re.sub(r"\W", "_", request.node.name)[:60], TREE)


def provider(root: Path, state_dir: Path, clock: Clock | None = None) -> BtrfsProvider:
    return BtrfsProvider(SnapshotContext(Target.at(root), state_dir, clock=clock or Clock()))


def subvolumes(mount: Path) -> set[str]:
    listed = sh("btrfs", "subvolume", "list", mount).stdout
    return {line.split(" path ")[1] for line in listed.splitlines() if " path " in line}


def test_restore_of_an_alternate_root_brings_its_files_back(
    btrfs: Path, target: Path, tmp_path: Path
) -> None:
    snapshots = provider(target, tmp_path)
    assert snapshots.probe().usable, snapshots.probe()
    taken = snapshots.create("before patching", "run-1")
    assert taken.details["path"] == str(btrfs / ".patchd-snapshots" / target.name / "patchd-run-1")

    (target / "etc/app.conf").write_text("workers=8\n")
    (target / "usr/lib/app/lib.so").unlink()
    make_tree(target, {"usr/lib/app/new.so": "version 2.0\n"})

    outcome = snapshots.restore(taken)

    assert read_tree(target) == TREE
    assert outcome.reboot_required is False
    assert "replaced tree was kept" not in outcome.detail
    assert target.stat().st_ino == 256  # a subvolume again, and a writable one
    (target / "etc/touched").write_text("yes\n")
    left = {s for s in subvolumes(btrfs) if target.name in s and "patchd-restore" in s}
    assert left == set()
    assert [s.id for s in snapshots.list()] == ["patchd-run-1"]  # kept for another restore


def test_list_shows_only_patchds_snapshots_and_prune_keeps_the_newest(
    btrfs: Path, target: Path, tmp_path: Path
) -> None:
    clock = Clock()
    snapshots = provider(target, tmp_path, clock)
    snapshots.probe()
    snapshot_dir = btrfs / ".patchd-snapshots" / target.name
    for run in ("a", "b", "c", "d"):
        snapshots.create(f"run {run}", run)
        clock.advance()
    # The administrator's snapshot, and one named like patchd's without its metadata.
    sh("btrfs", "subvolume", "snapshot", "-r", target, snapshot_dir / "admin-copy")
    sh("btrfs", "subvolume", "snapshot", "-r", target, snapshot_dir / "patchd-manual")

    listed = snapshots.list()
    assert [(s.id, s.label, s.run_id) for s in listed] == [
        (f"patchd-{r}", f"run {r}", r) for r in ("a", "b", "c", "d")
    ]
    assert listed[0].created_at < listed[-1].created_at

    pruned = snapshots.prune(2)

    assert [s.id for s in pruned] == ["patchd-a", "patchd-b"]
    assert [s.id for s in snapshots.list()] == ["patchd-c", "patchd-d"]
    assert sorted(p.name for p in snapshot_dir.iterdir()) == [
        "admin-copy",
        "patchd-c",
        "patchd-c.json",
        "patchd-d",
        "patchd-d.json",
        "patchd-manual",
    ]


def test_deleting_a_snapshot_patchd_did_not_take_is_refused(
    btrfs: Path, target: Path, tmp_path: Path
) -> None:
    snapshots = provider(target, tmp_path)
    snapshots.create("", "mine")
    snapshot_dir = btrfs / ".patchd-snapshots" / target.name
    sh("btrfs", "subvolume", "snapshot", "-r", target, snapshot_dir / "patchd-theirs")
    theirs = Snapshot("btrfs", "patchd-theirs", Clock()(), "", "theirs")

    with pytest.raises(SnapshotError, match="not one of patchd's btrfs snapshots"):
        snapshots.delete(theirs)
    assert (snapshot_dir / "patchd-theirs").is_dir()


def test_a_target_inside_a_subvolume_is_snapshotted_with_its_subvolume(
    btrfs: Path, target: Path, tmp_path: Path
) -> None:
    snapshots = provider(target / "usr", tmp_path)
    probe = snapshots.probe()
    assert probe.usable
    assert f"subvolume {target} (the whole subvolume is snapshotted)" in probe.detail
    taken = snapshots.create("", "inside")
    assert Path(taken.details["path"], "etc/app.conf").read_text() == "workers=4\n"


def test_restoring_the_host_root_makes_a_writable_copy_the_default_subvolume(
    btrfs: Path, target: Path, tmp_path: Path
) -> None:
    # The host's way, tried on this test filesystem: nothing of the host is touched.
    snapshots = provider(target, tmp_path)
    taken = snapshots.create("", "host")
    assert snapshots.layout is not None
    source = snapshots.layout.snapshot_dir / taken.id
    try:
        outcome = snapshots.restore_as_default(taken, snapshots.layout, source)
        default = sh("btrfs", "subvolume", "get-default", btrfs).stdout
    finally:
        sh("btrfs", "subvolume", "set-default", "5", btrfs)
    assert outcome.reboot_required is True
    assert outcome.manual is False
    assert default.strip().endswith(f"path .patchd-snapshots/{target.name}/patchd-host.restored")
    clone = snapshots.layout.snapshot_dir / "patchd-host.restored"
    (clone / "etc/writable").write_text("yes\n")
    assert [s.id for s in snapshots.list()] == ["patchd-host"]


def test_a_mounted_subvolume_of_an_alternate_root_is_not_swapped(
    btrfs: Path, target: Path, tmp_path: Path
) -> None:
    mount = tmp_path / "mounted"
    mount.mkdir()
    device = sh("findmnt", "-n", "-o", "SOURCE", "--target", btrfs).stdout.strip()
    sh("mount", "-o", f"subvol={target.name}", device, mount)
    try:
        snapshots = provider(mount, tmp_path / "state")
        taken = snapshots.create("", "mounted")
        assert taken.details["path"] == str(mount / ".patchd-snapshots" / "patchd-mounted")
        (mount / "etc/app.conf").write_text("changed\n")
        with pytest.raises(SnapshotError, match="is a mount point"):
            snapshots.restore(taken)
        assert (mount / "etc/app.conf").read_text() == "changed\n"
    finally:
        sh("umount", mount)


def test_a_root_on_another_filesystem_is_not_covered(tmp_path: Path) -> None:
    require("btrfs", root=True)
    with tmpfs(tmp_path / "plain") as root:
        probe = provider(root, tmp_path).probe()
    assert str(probe) == f"present, does not cover the target: {root} is on tmpfs"


def test_restore_without_an_atomic_exchange_falls_back_to_two_renames(
    btrfs: Path, target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("patchd.snapshots.btrfs._exchange", lambda a, b: False)  # old kernel
    snapshots = provider(target, tmp_path)
    taken = snapshots.create("", "fallback")
    (target / "etc/app.conf").write_text("workers=8\n")

    snapshots.restore(taken)

    assert read_tree(target) == TREE
    assert not (btrfs / f".{target.name}.patchd-old").exists()


def test_restore_clears_what_an_interrupted_restore_left(
    btrfs: Path, target: Path, tmp_path: Path
) -> None:
    snapshots = provider(target, tmp_path)
    taken = snapshots.create("", "again")
    leftover = btrfs / f".{target.name}.patchd-restore"
    sh("btrfs", "subvolume", "create", leftover)
    (target / "etc/app.conf").write_text("workers=8\n")

    snapshots.restore(taken)

    assert read_tree(target) == TREE
    assert not leftover.exists()


def test_a_bind_mounted_plain_directory_is_not_mistaken_for_a_subvolume(
    target: Path, tmp_path: Path
) -> None:
    bound = tmp_path / "bound"
    bound.mkdir()
    sh("mount", "--bind", target / "usr", bound)
    try:
        probe = provider(bound, tmp_path).probe()
    finally:
        sh("umount", bound)
    assert str(probe) == f"broken: no btrfs subvolume holds {bound} below its mount {bound}"
