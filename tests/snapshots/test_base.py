"""The template every provider inherits: probing, validation, wrapping, retention."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchd.backends.base import ProbeStatus
from patchd.errors import CommandError, ConfigError, ToolNotFoundError
from patchd.snapshots import PROVIDERS, provider_class
from patchd.snapshots.base import (
    RestoreOutcome,
    Snapshot,
    SnapshotContext,
    SnapshotError,
    SnapshotProbe,
    SnapshotProvider,
    SnapshotUnavailable,
)
from patchd.target import Target
from tests.snapshots.realfs import Clock


class ToyProvider(SnapshotProvider):
    """Keeps snapshots in a list; its probe and steps do what the test sets."""

    name = "toy"

    def __init__(self, context: SnapshotContext, probe: SnapshotProbe | Exception) -> None:
        super().__init__(context)
        self.answer = probe
        self.probes = 0
        self.kept: list[Snapshot] = []

    def _probe(self) -> SnapshotProbe:
        self.probes += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def _create(self, label: str, run_id: str) -> Snapshot:
        if label == "explode":
            raise KeyError("device")
        snapshot = Snapshot(self.name, f"patchd-{run_id}", self.context.clock(), label, run_id)
        self.kept.append(snapshot)
        return snapshot

    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        return RestoreOutcome(snapshot, False, "done")

    def _delete(self, snapshot: Snapshot) -> None:
        self.kept.remove(snapshot)

    def _list(self) -> list[Snapshot]:
        return list(reversed(self.kept))  # any native order: the base sorts by time


USABLE = SnapshotProbe(ProbeStatus.PRESENT, "", covers_target=True)


def toy(tmp_path: Path, probe: SnapshotProbe | Exception = USABLE) -> ToyProvider:
    return ToyProvider(SnapshotContext(Target.at(tmp_path), tmp_path, clock=Clock()), probe)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        pytest.param(ToolNotFoundError("zfs"), "absent: zfs is not installed", id="not-installed"),
        pytest.param(CommandError(["zfs", "list"], 1, "connect: Connection refused\n"), "broken: command failed with exit status 1: zfs list: connect: Connection refused", id="failing"),
        pytest.param(RuntimeError("odd"), "broken: RuntimeError: odd", id="stray"),
    ],
)  # fmt: skip
def test_probe_tells_absent_from_broken_and_is_asked_once(
    failure: Exception, expected: str, tmp_path: Path
) -> None:
    provider = toy(tmp_path, failure)
    assert str(provider.probe()) == expected
    provider.probe()
    assert provider.probes == 1
    with pytest.raises(SnapshotUnavailable, match=f"toy snapshots of {tmp_path} are unavailable"):
        provider.create("", "run-1")


@pytest.mark.parametrize(
    ("label", "run_id"),
    [
        pytest.param("", "../../etc", id="path-in-run-id"),
        pytest.param("", "run 1", id="space-in-run-id"),
        pytest.param("line\nbreak", "run-1", id="newline-in-label"),
        pytest.param("x" * 201, "run-1", id="long-label"),
    ],
)
def test_names_that_could_escape_are_refused_before_anything_runs(
    label: str, run_id: str, tmp_path: Path
) -> None:
    provider = toy(tmp_path)
    with pytest.raises(SnapshotError):
        provider.create(label, run_id)
    assert provider.probes == 0
    assert provider.kept == []


def test_stray_exceptions_become_snapshot_errors_naming_the_provider(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="toy: could not create a snapshot: KeyError"):
        toy(tmp_path).create("explode", "run-1")


def test_prune_deletes_the_oldest_beyond_keep(tmp_path: Path) -> None:
    provider = toy(tmp_path)
    clock = provider.context.clock
    assert isinstance(clock, Clock)
    for run in ("a", "b", "c"):
        provider.create("", run)
        clock.advance()
    assert [s.run_id for s in provider.list()] == ["a", "b", "c"]
    assert [s.run_id for s in provider.prune(1)] == ["a", "b"]
    assert [s.run_id for s in provider.kept] == ["c"]
    with pytest.raises(SnapshotError, match="at least 1"):
        provider.prune(0)


def test_a_snapshot_of_another_provider_is_refused(tmp_path: Path) -> None:
    provider = toy(tmp_path)
    provider.create("", "run-1")
    other = Snapshot("btrfs", "patchd-run-1", datetime(2026, 12, 4, tzinfo=UTC), "", "run-1")
    with pytest.raises(SnapshotError, match="not one of patchd's toy snapshots"):
        provider.restore(other)


def test_snapshots_are_frozen_values_with_a_stable_dict_form() -> None:
    snapshot = Snapshot(
        "zfs", "patchd-r", datetime(2026, 12, 4, 2, tzinfo=UTC), "l", "r", {"k": "v"}
    )
    assert snapshot.as_dict() == {
        "provider": "zfs",
        "id": "patchd-r",
        "created_at": "2026-12-04T02:00:00Z",
        "label": "l",
        "run_id": "r",
        "details": {"k": "v"},
    }
    assert hash(snapshot) == hash(Snapshot("zfs", "patchd-r", snapshot.created_at, "l", "r"))
    with pytest.raises(TypeError):
        snapshot.details["k"] = "w"  # type: ignore[index]


def test_every_provider_in_the_table_imports_and_is_complete(tmp_path: Path) -> None:
    for name in PROVIDERS:
        cls = provider_class(name)
        assert cls.name == name
        cls(SnapshotContext(Target.at(tmp_path), tmp_path))  # abstract gaps fail here
    with pytest.raises(ConfigError, match="unknown snapshot provider"):
        provider_class("ext4")
