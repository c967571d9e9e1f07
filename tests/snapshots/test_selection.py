"""Choosing the provider chain for a run: policy order, modes, and refusing early."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from patchd.errors import ExitCode
from patchd.models import InstalledPackage
from patchd.policy.model import SnapshotSettings
from patchd.snapshots import (
    SnapshotContext,
    SnapshotError,
    SnapshotRequired,
    SnapshotUnavailable,
    provider_class,
    select_providers,
)
from patchd.snapshots.btrfs import BtrfsProvider
from patchd.target import Target
from tests.conftest import require
from tests.snapshots.realfs import (
    BTRFS_TOOLS,
    Clock,
    btrfs_loop,
    make_tree,
    read_tree,
    snapper_config,
    subvolume,
    tmpfs,
)

TREE = {"etc/app.conf": "workers=4\n"}


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Path]:
    """A target root on tmpfs, which no filesystem provider can snapshot."""
    require(root=True)
    with tmpfs(tmp_path / "plain") as root:
        yield root


def installed() -> list[InstalledPackage]:
    return [InstalledPackage("app", "1.0", "amd64", "apt")]


def context(root: Path, state_dir: Path) -> SnapshotContext:
    return SnapshotContext(Target.at(root), state_dir, clock=Clock(), installed=installed)


@pytest.fixture(scope="module")
def btrfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require(*BTRFS_TOOLS, "snapper", root=True)
    with btrfs_loop(tmp_path_factory.mktemp("fs")) as mount:
        yield mount


@pytest.fixture
def snapper_root(btrfs: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A subvolume that both snapper (it has a configuration) and plain btrfs can snapshot."""
    name = f"patchdsel{os.getpid()}{request.node.name[-12:].replace('[', '').replace(']', '')}"
    target = subvolume(btrfs, name.replace("-", ""), TREE)
    with snapper_config(target.name, target):
        yield target


def test_required_without_a_usable_provider_refuses_before_creating_anything(
    plain: Path, tmp_path: Path
) -> None:
    root, state = plain, tmp_path / "state"
    make_tree(root, TREE)
    with pytest.raises(SnapshotRequired) as raised:
        select_providers(SnapshotSettings(mode="required"), context(root, state))
    message = str(raised.value)
    assert message.startswith(
        f"the policy requires a filesystem snapshot of {root} before patching"
    )
    for name in ("snapper", "btrfs", "zfs", "lvm"):
        assert f"; {name}: " in message or f"({name}: " in message
    assert "windows-restore-point: absent: restore points exist only on Windows" in message
    assert "apfs: absent: APFS local snapshots exist only on macOS" in message
    assert "nothing was changed" in message
    assert raised.value.exit_code is ExitCode.FAILURE
    assert not state.exists()
    assert read_tree(root) == TREE


def test_required_with_only_package_state_listed_says_no_filesystem_provider_is_listed(
    tmp_path: Path,
) -> None:
    settings = SnapshotSettings(mode="required", providers=["package-state"])
    with pytest.raises(SnapshotRequired, match="no filesystem provider is listed"):
        select_providers(settings, context(tmp_path, tmp_path / "state"))


def test_preferred_without_a_usable_provider_goes_on_with_package_state(
    plain: Path, tmp_path: Path
) -> None:
    plan = select_providers(SnapshotSettings(), context(plain, tmp_path / "state"))
    assert plan.filesystem is None
    assert [p.name for p in plan.providers] == ["package-state"]
    assert [line.split(":")[0] for line in plan.passed_over] == [
        "snapper", "btrfs", "zfs", "lvm", "windows-restore-point", "apfs",
    ]  # fmt: skip


def test_off_takes_package_state_only_and_probes_no_filesystem(tmp_path: Path) -> None:
    with mock.patch("patchd.snapshots.provider_class", wraps=provider_class) as spy:
        plan = select_providers(SnapshotSettings(mode="off"), context(tmp_path, tmp_path / "s"))
    assert [c.args for c in spy.call_args_list] == [("package-state",)]
    taken, notes = plan.take("before patching", "run-1")
    assert [(s.provider, s.id) for s in taken] == [("package-state", "run-1")]
    assert notes == []


def test_without_a_package_backend_nothing_goes(tmp_path: Path) -> None:
    bare = SnapshotContext(Target.at(tmp_path), tmp_path / "state")
    with pytest.raises(SnapshotUnavailable, match="package-state snapshots are unavailable"):
        select_providers(SnapshotSettings(mode="off"), bare)


def test_snapper_is_preferred_to_plain_btrfs_by_default(snapper_root: Path, tmp_path: Path) -> None:
    plan = select_providers(SnapshotSettings(mode="required"), context(snapper_root, tmp_path))
    assert plan.filesystem is not None
    assert plan.filesystem.name == "snapper"
    assert plan.passed_over == ()
    taken, _ = plan.take("before patching", "run-1")
    assert [s.provider for s in taken] == ["package-state", "snapper"]


def test_the_policys_order_wins(snapper_root: Path, tmp_path: Path) -> None:
    settings = SnapshotSettings(mode="required", providers=["zfs", "btrfs", "snapper"])
    plan = select_providers(settings, context(snapper_root, tmp_path))
    assert plan.filesystem is not None
    assert plan.filesystem.name == "btrfs"
    assert [line.split(":")[0] for line in plan.passed_over] == ["zfs"]


def test_a_failing_filesystem_snapshot_is_a_note_when_preferred_and_fatal_when_required(
    snapper_root: Path, tmp_path: Path
) -> None:
    fault = SnapshotError("btrfs: no space left on device")
    for mode in ("preferred", "required"):
        settings = SnapshotSettings(mode=mode, providers=["btrfs"])
        plan = select_providers(settings, context(snapper_root, tmp_path / mode))
        with mock.patch.object(BtrfsProvider, "_create", side_effect=fault):
            if mode == "required":
                with pytest.raises(SnapshotError, match="no space left"):
                    plan.take("", "run-1")
                continue
            taken, notes = plan.take("", "run-1")
        assert [s.provider for s in taken] == ["package-state"]
        assert notes == ["btrfs: snapshot failed: btrfs: no space left on device"]


def test_retention_failing_on_one_provider_does_not_stop_the_others(
    snapper_root: Path, tmp_path: Path
) -> None:
    settings = SnapshotSettings(providers=["btrfs"], keep=1)
    plan = select_providers(settings, context(snapper_root, tmp_path))
    for run in ("a", "b"):
        plan.take("", run)
    fault = SnapshotError("btrfs: could not prune patchd-a: device busy")
    with mock.patch.object(BtrfsProvider, "prune", side_effect=fault):
        deleted = plan.prune(settings.keep)
    assert [(s.provider, s.id) for s in deleted] == [("package-state", "a")]
    assert plan.filesystem is not None
    assert [s.id for s in plan.filesystem.list()] == ["patchd-a", "patchd-b"]
