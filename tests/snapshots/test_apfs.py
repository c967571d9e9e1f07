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
    assert parse_created(captured("tmutil-localsnapshot.txt")) == "2021-04-05-162425"
    assert parse_listed(captured("tmutil-listlocalsnapshots.txt")) == [
        "2021-04-05-162416",
        "2021-04-05-162425",
    ]
    with pytest.raises(SnapshotError, match="reported no snapshot"):
        parse_created("Error: Time Machine is busy\n")
    assert delete_argv("2021-04-05-162425") == [
        "tmutil",
        "deletelocalsnapshots",
        "2021-04-05-162425",
    ]
    with pytest.raises(SnapshotError):
        delete_argv("2026-12-04; rm -rf /")
    with pytest.raises(SnapshotError):
        delete_argv("/")  # `tmutil deletelocalsnapshots /` deletes every local snapshot


def test_listing_skips_update_snapshots_and_reads_the_pre_big_sur_names() -> None:
    # The header and the first name are the captured ones; the update snapshot's name
    # and the name without ".local" follow macOS's formats (see PROVENANCE.md).
    text = captured("tmutil-listlocalsnapshots.txt").replace(
        "com.apple.TimeMachine.2021-04-05-162425.local",
        "com.apple.os.update-MSUPrepareUpdate\ncom.apple.TimeMachine.2017-08-27-004037",
    )
    assert parse_listed(text) == ["2021-04-05-162416", "2017-08-27-004037"]


def test_only_snapshots_patchd_took_are_listed_and_restore_is_manual(tmp_path: Path) -> None:
    runner = ReplayRunner(
        {
            tuple(CREATE_ARGV): captured("tmutil-localsnapshot.txt"),
            tuple(LIST_ARGV): captured("tmutil-listlocalsnapshots.txt"),
            ("tmutil", "deletelocalsnapshots"): captured("tmutil-deletelocalsnapshots.txt"),
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

    assert (taken.id, taken.run_id) == ("2021-04-05-162425", "run-1")
    assert list(json.loads(index.read_text())) == ["2021-04-05-162425"]
    assert snapshots.list() == [taken]  # not Time Machine's own
    outcome = snapshots.restore(taken)
    assert outcome.manual is True
    assert "macOS Recovery" in outcome.detail
    snapshots.delete(taken)
    assert runner.calls[-1] == ("tmutil", "deletelocalsnapshots", "2021-04-05-162425")
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
