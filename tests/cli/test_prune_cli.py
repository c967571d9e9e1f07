"""``patchd prune``: the retention settings applied on demand, from the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from patchd.models import PackageChange
from patchd.runs.retention import MIN_RUNS_KEPT
from patchd.state.store import StateStore
from tests.conftest import run_patchd

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)  # older than any history setting, from any today
LATER = datetime(2021, 1, 1, tzinfo=UTC)  # old too, but the newest runs stay whatever their age
CHANGE = PackageChange("apt", "hello", "amd64", "1.0", "1.1")


def _finished_run(state: Path, at: datetime) -> str:
    with StateStore.open(state) as store:
        run_id = store.create_run("apply", [(CHANGE, None)], at)
        store.finish_run(run_id, "succeeded", [], at)
    (state / "runs" / run_id).mkdir(parents=True)
    (state / "runs" / run_id / "transcript.log").write_text("$ apt-get install hello\n")
    return run_id


def _runs(state: Path) -> list[str]:
    with StateStore.open(state) as store:
        return [r.id for r in store.list_runs(100)]


def test_prune_removes_old_runs_and_says_what_went(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text("retention:\n  history: 30d\n")
    old = _finished_run(state, LONG_AGO)
    newer = [_finished_run(state, LATER) for _ in range(MIN_RUNS_KEPT)]
    args = ["--config", str(config), "--state-dir", str(state), "prune"]
    shown = run_patchd([*args, "--dry-run", "--json"])
    assert shown.returncode == 0, shown.stderr
    assert shown.json()["runs"] == 1
    assert shown.json()["dry_run"] is True
    assert shown.json()["retention"]["history"] == "30d"
    assert set(_runs(state)) == {old, *newer}  # a dry run removes nothing
    done = run_patchd(args)
    assert done.returncode == 0, done.stderr
    assert "History is kept for 30d, kept packages for 30d" in done.stdout
    assert "Removed 1 run(s), 0 closed update sighting(s)" in done.stdout
    assert set(_runs(state)) == set(newer)
    assert not (state / "runs" / old).exists()


def test_a_bad_retention_setting_exits_78_and_removes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text("retention:\n  history: 1d\n")
    old = _finished_run(state, LONG_AGO)
    result = run_patchd(["--config", str(config), "--state-dir", str(state), "prune"])
    assert result.returncode == 78
    assert "retention.history: 1d is too short: at least 30d" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert _runs(state) == [old]
    assert (state / "runs" / old / "transcript.log").is_file()
