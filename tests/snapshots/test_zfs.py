"""The ZFS provider on a real pool (zfs-fuse on a file), and its parsers."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchd.snapshots.base import SnapshotContext, SnapshotError
from patchd.snapshots.zfs import ZfsProvider, find_dataset, parse_get
from patchd.target import Target
from tests.conftest import require
from tests.snapshots.realfs import (
    ZFS_TOOLS,
    Clock,
    captured,
    make_tree,
    read_tree,
    sh,
    tmpfs,
    zfs_fuse_daemon,
    zfs_pool,
)

TREE = {"etc/app.conf": "workers=4\n", "usr/bin/app": "v1\n"}
_names = itertools.count()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    require(*ZFS_TOOLS, root=True)
    workdir = tmp_path_factory.mktemp("zfs")
    name = f"patchdtest{os.getpid()}"
    with zfs_fuse_daemon(workdir), zfs_pool(workdir, name) as mount:
        yield name, mount


@pytest.fixture
def dataset(pool: tuple[str, Path]) -> tuple[str, Path]:
    """A dataset holding a small tree, mounted under the pool."""
    name = f"{pool[0]}/root{next(_names)}"
    sh("zfs", "create", name)
    mount = Path(sh("zfs", "get", "-H", "-o", "value", "mountpoint", name).stdout.strip())
    make_tree(mount, TREE)
    return name, mount


def provider(root: Path, state_dir: Path, clock: Clock | None = None) -> ZfsProvider:
    return ZfsProvider(SnapshotContext(Target.at(root), state_dir, clock=clock or Clock()))


def test_restore_rolls_the_dataset_back(dataset: tuple[str, Path], tmp_path: Path) -> None:
    name, mount = dataset
    snapshots = provider(mount, tmp_path)
    assert snapshots.probe().usable, snapshots.probe()
    assert snapshots.dataset == name
    first = snapshots.create("before patching", "run-1")
    (mount / "etc/app.conf").write_text("workers=8\n")
    second = snapshots.create("", "run-2")
    make_tree(mount, {"usr/bin/new": "v2\n"})

    outcome = snapshots.restore(first)

    assert read_tree(mount) == TREE
    assert outcome.reboot_required is False
    assert f"later snapshots destroyed: {second.id}" in outcome.detail
    assert [(s.id, s.label, s.run_id) for s in snapshots.list()] == [
        ("patchd-run-1", "before patching", "run-1")
    ]


def test_list_and_prune_leave_others_snapshots_alone(
    dataset: tuple[str, Path], tmp_path: Path
) -> None:
    name, mount = dataset
    snapshots = provider(mount, tmp_path)
    for run in ("a", "b", "c"):
        snapshots.create("", run)
        if run == "a":
            sh("zfs", "snapshot", f"{name}@admin-weekly")
            sh("zfs", "snapshot", f"{name}@patchd-lookalike")  # the name, not the property

    assert [s.run_id for s in snapshots.list()] == ["a", "b", "c"]
    assert [s.id for s in snapshots.prune(1)] == ["patchd-a", "patchd-b"]

    left = sh("zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-d", "1", name).stdout.split()
    assert sorted(left) == [f"{name}@{s}" for s in ("admin-weekly", "patchd-c", "patchd-lookalike")]


def test_restore_is_refused_when_it_would_destroy_an_admins_snapshot(
    dataset: tuple[str, Path], tmp_path: Path
) -> None:
    name, mount = dataset
    snapshots = provider(mount, tmp_path)
    taken = snapshots.create("", "run-1")
    (mount / "etc/app.conf").write_text("workers=8\n")
    sh("zfs", "snapshot", f"{name}@admin-after")

    with pytest.raises(SnapshotError, match="would destroy snapshots patchd did not take: admin"):
        snapshots.restore(taken)
    assert (mount / "etc/app.conf").read_text() == "workers=8\n"


def test_a_directory_on_another_filesystem_is_not_covered(
    pool: tuple[str, Path], tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "plain") as root:
        probe = provider(root, tmp_path).probe()
    assert str(probe) == f"present, does not cover the target: no mounted dataset holds {root}"


def test_the_dataset_is_the_nearest_mount_on_the_same_device(tmp_path: Path) -> None:
    (tmp_path / "srv" / "www").mkdir(parents=True)
    listing = f"tank\t{tmp_path}\ntank/srv\t{tmp_path / 'srv'}\ntank/old\tlegacy\n"
    assert find_dataset(listing, tmp_path / "srv" / "www") == "tank/srv"
    # /proc is another filesystem mounted below "/": a dataset at "/" does not hold it.
    assert find_dataset("rpool/ROOT/debian\t/\n", Path("/proc/sys")) is None
    assert find_dataset(captured("zfs-list-mountpoints.txt"), Path("/etc")) is None


def test_zfs_get_output_is_read_as_name_property_value() -> None:
    rows = list(parse_get(captured("zfs-get.txt")))
    assert rows[:3] == [
        ("tank/root@patchd-20261204T215900Z-3fa9c1", "creation", "1796422132"),
        ("tank/root@patchd-20261204T215900Z-3fa9c1", "patchd:run", "20261204T215900Z-3fa9c1"),
        ("tank/root@patchd-20261204T215900Z-3fa9c1", "patchd:label", "before patching"),
    ]
    assert ("tank/root@patchd-lookalike", "patchd:run", "-") in rows


def test_zfs_tools_without_zfs_running_are_absent_not_broken(tmp_path: Path) -> None:
    from patchd.backends.base import ProbeStatus
    from patchd.errors import CommandError
    from tests.snapshots.realfs import ReplayRunner

    # What zfs-fuse 0.7.0's zfs printed on this project's machine with no daemon running.
    stopped = CommandError(
        ["zfs", "list", "-H", "-o", "name,mountpoint"], 1,
        "internal error: failed to initialize ZFS library\n",
    )  # fmt: skip
    runner = ReplayRunner({("zfs", "list"): stopped})
    context = SnapshotContext(Target.at(tmp_path), tmp_path, clock=Clock(), run=runner)
    probe = ZfsProvider(context).probe()
    assert probe.status is ProbeStatus.ABSENT
    assert "not running" in probe.detail
    other = ReplayRunner({("zfs", "list"): CommandError(["zfs", "list"], 1, "permission denied\n")})
    broken = ZfsProvider(SnapshotContext(Target.at(tmp_path), tmp_path, clock=Clock(), run=other))
    assert broken.probe().status is ProbeStatus.BROKEN
