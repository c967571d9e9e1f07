"""The snapper provider: real snapper (``--no-dbus``) on a loop btrfs, and its parsers."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchd.snapshots.base import SnapshotContext
from patchd.snapshots.snapper import (
    SnapperProvider,
    parse_json_list,
    parse_table,
    parse_table_list,
)
from patchd.target import Target
from tests.conftest import require
from tests.snapshots.realfs import (
    BTRFS_TOOLS,
    Clock,
    ReplayRunner,
    btrfs_loop,
    captured,
    make_tree,
    read_tree,
    sh,
    snapper_config,
    subvolume,
)

TREE = {"etc/app.conf": "workers=4\n", "usr/bin/app": "v1\n"}
_names = itertools.count()


@pytest.fixture(scope="module")
def btrfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require(*BTRFS_TOOLS, "snapper", root=True)
    with btrfs_loop(tmp_path_factory.mktemp("fs")) as mount:
        yield mount


@pytest.fixture
def configured(btrfs: Path) -> Iterator[tuple[Path, str]]:
    """A subvolume with a snapper configuration of its own."""
    name = f"patchdtest{os.getpid()}x{next(_names)}"
    target = subvolume(btrfs, name, TREE)
    with snapper_config(name, target) as config:
        yield target, config


def test_snapshots_restore_list_and_prune_through_the_admins_configuration(
    configured: tuple[Path, str], tmp_path: Path
) -> None:
    target, config = configured
    snapshots = SnapperProvider(SnapshotContext(Target.at(target), tmp_path, clock=Clock()))
    probe = snapshots.probe()
    assert probe.usable, probe
    assert probe.detail == f"configuration {config}"
    first = snapshots.create("before patching", "run-1")
    sh("snapper", "--no-dbus", "-c", config, "create", "--description", "admin's own")
    second = snapshots.create("", "run-2")
    assert (first.id, second.id) == ("1", "3")

    (target / "etc/app.conf").write_text("workers=8\n")
    make_tree(target, {"usr/bin/new": "v2\n"})
    outcome = snapshots.restore(first)

    assert read_tree(target) == TREE
    assert outcome.reboot_required is False
    assert [(s.id, s.label, s.run_id) for s in snapshots.list()] == [
        ("1", "before patching", "run-1"),
        ("3", "", "run-2"),
    ]
    assert [s.id for s in snapshots.prune(1)] == ["1"]
    remaining = sh("snapper", "--no-dbus", "--jsonout", "-c", config, "list").stdout
    assert '"admin\'s own"' in remaining
    assert [s.id for s in snapshots.list()] == ["3"]


def test_a_root_without_a_snapper_configuration_is_not_covered(btrfs: Path, tmp_path: Path) -> None:
    target = subvolume(btrfs, f"unconfigured{next(_names)}", TREE)
    probe = SnapperProvider(SnapshotContext(Target.at(target), tmp_path)).probe()
    assert probe.status.value == "present"
    assert not probe.usable
    assert probe.detail.startswith(f"no configuration for {target}; configurations: ")


def test_json_list_gives_patchds_snapshots_only() -> None:
    found = parse_json_list(captured("snapper-list.json"), "t1")
    assert [s.as_dict() for s in found] == [
        {
            "provider": "snapper",
            "id": "1",
            "created_at": "2026-12-04T22:08:40Z",
            "label": "before patching",
            "run_id": "20261204T215900Z-3fa9c1",
            "details": {"config": "t1"},
        },
        {
            "provider": "snapper",
            "id": "3",
            "created_at": "2026-12-04T22:08:40Z",
            "label": "",
            "run_id": "20261204T220500Z-77ab02",
            "details": {"config": "t1"},
        },
    ]


def test_the_table_of_old_snapper_gives_the_same_snapshots() -> None:
    from_table = parse_table_list(captured("snapper-list-table.txt"), "t1")
    assert from_table == parse_json_list(captured("snapper-list.json"), "t1")
    assert from_table[0].created_at == datetime(2026, 12, 4, 22, 8, 40, tzinfo=UTC)
    configs = parse_table(captured("snapper-list-configs-table.txt"))
    assert configs == [{"Config": "t1", "Subvolume": "/tmp/exp/mnt/@t"}]


def test_old_snapper_is_driven_through_its_tables(tmp_path: Path) -> None:
    runner = ReplayRunner(
        {
            ("snapper", "--version"): "snapper 0.5.6\nflags btrfs,lvm,no-ext4,xattrs\n",
            ("snapper", "--no-dbus", "list-configs"): captured("snapper-list-configs-table.txt"),
            ("snapper", "--no-dbus", "--utc", "--iso"): captured("snapper-list-table.txt"),
            ("snapper", "--no-dbus", "-c", "t1", "create"): "4\n",
            ("snapper", "--no-dbus", "-c", "t1", "undochange"): "create:0 modify:2 delete:1\n",
            ("snapper", "--no-dbus", "-c", "t1", "delete"): "",
        }
    )
    context = SnapshotContext(Target(Path("/tmp/exp/mnt/@t")), tmp_path, run=runner)
    snapshots = SnapperProvider(context)
    assert snapshots.probe().usable
    assert snapshots.json_output is False

    snapshots.create("before patching", "run-9")
    listed = snapshots.list()
    snapshots.restore(listed[0])
    snapshots.delete(listed[1])

    assert runner.calls == [
        ("snapper", "--version"),
        ("snapper", "--no-dbus", "list-configs"),
        (
            "snapper", "--no-dbus", "-c", "t1", "create", "--type", "single",
            "--cleanup-algorithm", "number", "--description", "patchd run-9: before patching",
            "--userdata", "patchd=run-9", "--print-number",
        ),
        ("snapper", "--no-dbus", "--utc", "--iso", "-c", "t1", "list"),
        ("snapper", "--no-dbus", "--utc", "--iso", "-c", "t1", "list"),
        ("snapper", "--no-dbus", "-c", "t1", "undochange", "1..0"),
        ("snapper", "--no-dbus", "--utc", "--iso", "-c", "t1", "list"),
        ("snapper", "--no-dbus", "-c", "t1", "delete", "3"),
    ]  # fmt: skip
