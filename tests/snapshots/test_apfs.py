"""The APFS provider on captured ``tmutil`` output, with exact argv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchd.snapshots.apfs import (
    CREATE_ARGV,
    LIST_ARGV,
    ApfsProvider,
    delete_argv,
    parse_created,
    parse_listed,
)
from patchd.snapshots.base import SnapshotContext, SnapshotError
from patchd.target import Target
from tests.snapshots.realfs import Clock, ReplayRunner, captured


def test_tmutil_output_is_parsed() -> None:
    assert parse_created(captured("tmutil-localsnapshot.txt")) == "2026-12-04-221530"
    assert parse_listed(captured("tmutil-listlocalsnapshots.txt")) == [
        "2026-12-03-091004",
        "2026-12-04-030512",
        "2026-12-04-221530",
    ]
    with pytest.raises(SnapshotError, match="reported no snapshot"):
        parse_created("Error: Time Machine is busy\n")
    assert delete_argv("2026-12-04-221530") == [
        "tmutil",
        "deletelocalsnapshots",
        "2026-12-04-221530",
    ]
    with pytest.raises(SnapshotError):
        delete_argv("2026-12-04; rm -rf /")


def test_only_snapshots_patchd_took_are_listed_and_restore_is_manual(tmp_path: Path) -> None:
    runner = ReplayRunner(
        {
            tuple(CREATE_ARGV): captured("tmutil-localsnapshot.txt"),
            tuple(LIST_ARGV): captured("tmutil-listlocalsnapshots.txt"),
            ("tmutil", "deletelocalsnapshots"): "Deleted local snapshot '2026-12-04-221530'\n",
        }
    )
    context = SnapshotContext(
        Target(Path("/")), tmp_path, clock=Clock(), run=runner, platform="darwin"
    )
    snapshots = ApfsProvider(context)
    index = tmp_path / "snapshot-index" / "apfs.json"
    index.parent.mkdir()
    purged = {
        "provider": "apfs",
        "created_at": "2026-11-01T02:00:00Z",
        "label": "",
        "run_id": "old",
    }
    index.write_text(json.dumps({"2026-11-01-020000": purged}))  # macOS purged it since

    taken = snapshots.create("before patching", "run-1")

    assert (taken.id, taken.run_id) == ("2026-12-04-221530", "run-1")
    assert list(json.loads(index.read_text())) == ["2026-12-04-221530"]
    assert snapshots.list() == [taken]  # not Time Machine's own two
    outcome = snapshots.restore(taken)
    assert outcome.manual is True
    assert "macOS Recovery" in outcome.detail
    snapshots.delete(taken)
    assert runner.calls[-1] == ("tmutil", "deletelocalsnapshots", "2026-12-04-221530")
    assert json.loads(index.read_text()) == {}
    assert runner.calls.count(tuple(CREATE_ARGV)) == 1


@pytest.mark.parametrize(
    ("platform", "root", "expected"),
    [
        pytest.param("linux", "/", "absent: APFS local snapshots exist only on macOS", id="linux"),
        pytest.param("darwin", "/Volumes/image", "present, does not cover the target: local snapshots cover only the host", id="not-host"),
    ],
)  # fmt: skip
def test_probe(platform: str, root: str, expected: str, tmp_path: Path) -> None:
    context = SnapshotContext(Target(Path(root)), tmp_path, run=ReplayRunner({}), platform=platform)
    assert str(ApfsProvider(context).probe()) == expected
