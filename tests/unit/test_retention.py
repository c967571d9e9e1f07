"""Tests for patchd.runs.retention: the daily prune, on a real state database and directory.

Runs are recorded through the store as a patch run records them, with their directory
(``transcript.log``, kept packages) as patchd writes it; time is passed in, never read.
Every test checks what went and, as much, what stayed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from patchd.backends.base import RollbackSource
from patchd.config import RetentionSettings
from patchd.errors import UnknownRunError
from patchd.models import Classification, PackageChange, Severity, Update
from patchd.runs import retention
from patchd.runs.journal import RunJournal, Step
from patchd.runs.quarantine import quarantine
from patchd.runs.retention import PruneResult, prune, prune_if_due
from patchd.state.store import StateStore
from patchd.timeutil import format_time, stamp
from patchd.transcript import TranscriptEntry

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
SETTINGS = RetentionSettings(
    history=timedelta(days=400),
    rollback_files=timedelta(days=90),
    rollback_files_max_bytes=64 * 1024 * 1024,
)
MiB = 1024 * 1024
MIN_RUNS_KEPT = retention.MIN_RUNS_KEPT


@pytest.fixture(autouse=True)
def no_minimum_of_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test records a few runs; the newest MIN_RUNS_KEPT are tested on their own."""
    monkeypatch.setattr(retention, "MIN_RUNS_KEPT", 0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(tmp_path / "state")
    yield opened
    opened.close()


def state_dir(store: StateStore) -> Path:
    return store.path.parent


def record_run(
    store: StateStore,
    finished: datetime | None,
    *,
    status: str = "succeeded",
    kept_bytes: int = 0,
    parent: str | None = None,
    journal: Step | None = Step.COMMITTED,
    name: str = "hello",
) -> str:
    """A run as a patch run records it: items, a transcript, its journal, its directory."""
    started = (finished or NOW) - timedelta(minutes=5)
    change = PackageChange("apt", name, "amd64", "1.0", "1.1")
    run_id = store.create_run("rollback" if parent else "apply", [(change, None)], started,
                              parent_run=parent)  # fmt: skip
    directory = state_dir(store) / "runs" / run_id
    directory.mkdir(parents=True)
    (directory / "transcript.log").write_text("$ apt-get install hello\n")
    if kept_bytes:
        kept = directory / "packages" / f"{name}_1.0_amd64.deb"
        kept.parent.mkdir()
        kept.write_bytes(b"\0" * kept_bytes)
        store.record_rollback_sources(run_id, [RollbackSource(change, True, kept)])
    if journal is not None:
        RunJournal(store, run_id).append(Step.PLANNED, started)
        RunJournal(store, run_id).append(journal, started)
    if finished is not None:
        store.finish_run(run_id, status, [], finished)
    else:
        store.set_run_status(run_id, status)
    return run_id


def rows(store: StateStore, table: str, run_id: str) -> int:
    column = "id" if table == "runs" else "run_id"
    return int(store.query(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (run_id,))[0][0])


def everything(store: StateStore, *, but: str = "") -> list[str]:
    """The database's whole content, to compare before and after (``but`` a table)."""
    db = sqlite3.connect(store.path)
    try:
        return [line for line in db.iterdump() if not but or f'INTO "{but}"' not in line]
    finally:
        db.close()


def prune_daily(store: StateStore, start: datetime, days: int) -> int:
    """Prune once a day for ``days`` days after ``start``, as the agent does: runs removed."""
    return sum(
        prune(store, state_dir(store), SETTINGS, start + timedelta(days=day)).runs
        for day in range(1, days + 1)
    )


def files(store: StateStore) -> list[str]:
    runs = state_dir(store) / "runs"
    return sorted(str(p.relative_to(runs)) for p in runs.rglob("*")) if runs.exists() else []


def test_runs_older_than_the_history_go_with_everything_they_recorded(store: StateStore) -> None:
    old = record_run(store, NOW - timedelta(days=401), kept_bytes=10)
    recent = record_run(store, NOW - timedelta(days=399), kept_bytes=10)
    store.append_transcript(old, _entry())
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert result.runs == 1
    for table in ("runs", "run_items", "run_transcript", "run_journal"):
        assert rows(store, table, old) == 0, table
    assert not (state_dir(store) / "runs" / old).exists()
    assert store.get_run(recent).status == "succeeded"
    assert (state_dir(store) / "runs" / recent / "transcript.log").is_file()


def test_runs_that_are_not_over_stay_however_old(store: StateStore) -> None:
    long_ago = NOW - timedelta(days=900)
    running = record_run(store, None, status="running", journal=Step.PLANNED)
    # Packages it is keeping right now, before its items point at them.
    downloading = state_dir(store) / "runs" / running / "packages" / "hello_1.0_amd64.deb"
    downloading.parent.mkdir()
    downloading.write_bytes(b"\0" * 10)
    rebooting = record_run(
        store, long_ago, status="rebooting", journal=Step.REBOOT_PENDING, kept_bytes=10
    )
    # Closed, but its journal ends mid-way: recovery at the next start still needs it.
    interrupted = record_run(
        store, long_ago, status="failed", journal=Step.TRANSACTION_ENDED, kept_bytes=10
    )
    database = everything(store, but="housekeeping")
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert (result.runs, result.rollback_files_runs, result.freed_bytes) == (0, 0, 0)
    assert everything(store, but="housekeeping") == database
    for run_id in (running, rebooting, interrupted):
        assert (state_dir(store) / "runs" / run_id / "transcript.log").is_file()
        assert (state_dir(store) / "runs" / run_id / "packages").is_dir()


def test_a_run_a_kept_rollback_refers_to_stays_until_both_are_old(store: StateStore) -> None:
    undone = record_run(store, NOW - timedelta(days=500), kept_bytes=10)
    rollback = record_run(store, NOW - timedelta(days=300), parent=undone)
    assert prune(store, state_dir(store), SETTINGS, NOW).runs == 0
    assert rows(store, "runs", undone) == 1
    assert prune_daily(store, NOW, 101) == 2  # both older than the history now
    assert rows(store, "runs", undone) == rows(store, "runs", rollback) == 0


def test_kept_packages_go_after_their_time_and_the_run_says_so(store: StateStore) -> None:
    expired = record_run(store, NOW - timedelta(days=91), kept_bytes=1000)
    fresh = record_run(store, NOW - timedelta(days=89), kept_bytes=1000)
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert (result.runs, result.rollback_files_runs, result.freed_bytes) == (0, 1, 1000)
    item = store.get_run(expired).items[0]
    assert (item.rollback_available, item.rollback_file) == (False, None)
    assert "removed 90d after the run (retention.rollback_files)" in item.rollback_detail
    assert "only what the repositories still carry" in item.rollback_detail
    assert not (state_dir(store) / "runs" / expired / "packages").exists()
    assert (state_dir(store) / "runs" / expired / "transcript.log").is_file()  # the record stays
    kept = store.get_run(fresh).items[0]
    assert kept.rollback_available
    assert kept.rollback_file is not None
    assert Path(kept.rollback_file).stat().st_size == 1000


def test_the_oldest_kept_packages_go_while_all_weigh_more_than_the_bound(
    store: StateStore,
) -> None:
    first = record_run(store, NOW - timedelta(days=3), kept_bytes=30 * MiB)
    second = record_run(store, NOW - timedelta(days=2), kept_bytes=30 * MiB, name="bye")
    third = record_run(store, NOW - timedelta(days=1), kept_bytes=30 * MiB, name="ciao")
    result = prune(store, state_dir(store), SETTINGS, NOW)  # 90 MiB kept; the bound is 64
    assert (result.rollback_files_runs, result.freed_bytes) == (1, 30 * MiB)
    assert "exceeded retention.rollback_files_max_bytes (64.0 MiB)" in (
        store.get_run(first).items[0].rollback_detail
    )
    assert not store.get_run(first).items[0].rollback_available
    assert store.get_run(second).items[0].rollback_available
    assert store.get_run(third).items[0].rollback_available


def test_the_newest_run_keeps_its_packages_even_alone_over_the_bound(store: StateStore) -> None:
    older = record_run(store, NOW - timedelta(days=2), kept_bytes=1 * MiB)
    newest = record_run(store, NOW - timedelta(days=1), kept_bytes=70 * MiB, name="big")
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert result.rollback_files_runs == 1  # the older one went; still over, but the newest stays
    assert not store.get_run(older).items[0].rollback_available
    assert store.get_run(newest).items[0].rollback_available
    assert (state_dir(store) / "runs" / newest / "packages").is_dir()


def test_directories_no_record_uses_go_and_nothing_else_is_touched(store: StateStore) -> None:
    runs = state_dir(store) / "runs"
    kept = record_run(store, NOW - timedelta(days=1))
    stray = runs / "20250101T000000Z-abcdef"  # no record, older than the history: left by a crash
    (stray / "packages").mkdir(parents=True)
    (stray / "packages" / "a.deb").write_bytes(b"x" * 7)
    unused = record_run(store, NOW - timedelta(days=1), name="bye")
    (runs / unused / "packages").mkdir()  # kept files no item points at
    (runs / unused / "packages" / "b.deb").write_bytes(b"y" * 5)
    other = runs / "notes"  # not named like a run: not patchd's to remove
    other.mkdir()
    outside = state_dir(store) / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (runs / "20270101T000000Z-fedcba").symlink_to(outside)  # never followed
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert result.freed_bytes == 12
    assert not stray.exists()
    assert not (runs / unused / "packages").exists()
    assert (runs / unused / "transcript.log").is_file()
    assert (runs / kept / "transcript.log").is_file()
    assert other.is_dir()
    assert (outside / "keep.txt").read_text() == "keep"


def test_closed_sightings_events_and_quarantine_of_old_policies_go(store: StateStore) -> None:
    long_ago = NOW - timedelta(days=401)
    installed, unlisted, pending = _update("a"), _update("b"), _update("c")
    store.record_scan([installed, unlisted, pending], {}, long_ago)
    store.record_scan([pending], {("apt", "a", "amd64"): "1.1"}, long_ago + timedelta(hours=1))
    recent = _update("d")
    store.record_scan([pending, recent], {}, NOW - timedelta(days=1))
    store.record_scan([pending], {("apt", "d", "amd64"): "1.1"}, NOW)  # closed, but recently
    _events(store, [("accepted", long_ago), ("accepted", long_ago), ("refused", long_ago),
                    ("accepted", NOW)])  # fmt: skip
    with store.transaction() as db:
        db.execute("UPDATE policy_state SET sha256 = 'current' WHERE id = 1")
    quarantine(store, "current", update_ids=["x"], run_id="r", reason="failed", at=long_ago)
    quarantine(store, "older", update_ids=["y"], run_id="r", reason="failed", at=long_ago)
    quarantine(store, "older", update_ids=["z"], run_id="r", reason="failed", at=NOW)
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert (result.sightings, result.policy_events, result.quarantine_entries) == (2, 2, 1)
    left = {name for (name,) in store.query("SELECT name FROM update_sightings")}
    assert left == {"c", "d"}
    events = store.query("SELECT kind, at FROM policy_events ORDER BY id")
    # The newest of each kind stays, however old: `patchd status` shows the last refusal.
    assert events == [("refused", format_time(long_ago)), ("accepted", format_time(NOW))]
    assert {u for (u,) in store.query("SELECT update_id FROM quarantine")} == {"x", "z"}


def test_a_dry_run_counts_the_same_and_changes_nothing(store: StateStore) -> None:
    record_run(store, NOW - timedelta(days=401), kept_bytes=10)
    record_run(store, NOW - timedelta(days=91), kept_bytes=20, name="bye")
    stray = state_dir(store) / "runs" / "20250101T000000Z-abcdef"
    stray.mkdir()
    (stray / "transcript.log").write_text("12345")
    store.record_scan([_update("a")], {}, NOW - timedelta(days=500))
    store.record_scan([], {}, NOW - timedelta(days=450))
    database, tree = everything(store), files(store)
    predicted = prune(store, state_dir(store), SETTINGS, NOW, dry_run=True)
    assert everything(store) == database
    assert files(store) == tree
    done = prune(store, state_dir(store), SETTINGS, NOW)
    assert predicted == PruneResult(**{**done.as_dict(), "dry_run": True})
    assert (done.runs, done.sightings, done.rollback_files_runs) == (1, 1, 1)
    assert done.freed_bytes == 10 + len("$ apt-get install hello\n") + 20 + 5


def test_the_prune_runs_once_a_day(store: StateStore) -> None:
    old = record_run(store, NOW - timedelta(days=500))
    assert prune_if_due(store, state_dir(store), SETTINGS, NOW) is not None
    assert rows(store, "runs", old) == 0
    again = record_run(store, NOW - timedelta(days=500))
    assert prune_if_due(store, state_dir(store), SETTINGS, NOW + timedelta(hours=22)) is None
    assert rows(store, "runs", again) == 1  # not due: untouched
    done = prune_if_due(store, state_dir(store), SETTINGS, NOW + timedelta(days=1))
    assert done is not None
    assert done.runs == 1


def test_a_clock_set_back_makes_the_prune_due(store: StateStore) -> None:
    assert prune_if_due(store, state_dir(store), SETTINGS, NOW) is not None
    assert prune_if_due(store, state_dir(store), SETTINGS, NOW - timedelta(hours=1)) is not None
    assert store.query("SELECT last_pruned_at FROM housekeeping") == [
        (format_time(NOW - timedelta(hours=1)),)
    ]


def _update(name: str) -> Update:
    return Update("apt", name, "amd64", "1.0", "1.1", Classification.SECURITY, Severity.LOW)


def _entry() -> TranscriptEntry:
    return TranscriptEntry(NOW - timedelta(days=401), ("apt-get", "install"), 0, "done", 1.0)


def _events(store: StateStore, events: list[tuple[str, datetime]]) -> None:
    with store.transaction() as db:
        for kind, at in events:
            db.execute(
                "INSERT INTO policy_events (at, kind, reason, code, source) VALUES (?, ?, ?, ?, ?)",
                (format_time(at), kind, "test", "ok", json.dumps("file")),
            )


def test_a_run_still_going_keeps_its_packages_whatever_they_weigh(store: StateStore) -> None:
    going = record_run(store, NOW - timedelta(days=2), kept_bytes=70 * MiB,
                       status="rebooting", journal=Step.REBOOT_PENDING)  # fmt: skip
    newest = record_run(store, NOW - timedelta(days=1), kept_bytes=1 * MiB, name="bye")
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert (result.rollback_files_runs, result.freed_bytes) == (0, 0)
    for run_id in (going, newest):
        assert store.get_run(run_id).items[0].rollback_available


def test_a_last_prune_time_patchd_did_not_write_makes_the_prune_due(store: StateStore) -> None:
    with store.transaction() as db:
        db.execute("UPDATE housekeeping SET last_pruned_at = 'yesterday'")
    assert prune_if_due(store, state_dir(store), SETTINGS, NOW) is not None
    assert store.query("SELECT last_pruned_at FROM housekeeping") == [(format_time(NOW),)]


def test_the_run_a_running_rollback_undoes_keeps_its_packages(store: StateStore) -> None:
    undone = record_run(store, NOW - timedelta(days=95), kept_bytes=70 * MiB)  # past 90d, over
    rollback = record_run(store, None, parent=undone, status="running", journal=Step.PLANNED)
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert (result.rollback_files_runs, result.freed_bytes) == (0, 0)
    item = store.get_run(undone).items[0]
    assert item.rollback_available
    assert item.rollback_file is not None
    assert Path(item.rollback_file).stat().st_size == 70 * MiB
    RunJournal(store, rollback).append(Step.COMMITTED, NOW)  # once it is over, they go
    store.finish_run(rollback, "succeeded", [], NOW)
    assert prune(store, state_dir(store), SETTINGS, NOW).rollback_files_runs == 1


def test_the_newest_finished_run_keeps_its_packages_beside_a_run_still_going(
    store: StateStore,
) -> None:
    older = record_run(store, NOW - timedelta(days=3), kept_bytes=1 * MiB)
    newest = record_run(store, NOW - timedelta(days=2), kept_bytes=70 * MiB, name="big")
    record_run(store, None, status="running", journal=Step.PLANNED, name="other")  # no packages
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert result.rollback_files_runs == 1
    assert not store.get_run(older).items[0].rollback_available
    assert store.get_run(newest).items[0].rollback_available


def test_directories_without_a_record_are_kept_as_a_run_of_their_age(store: StateStore) -> None:
    """The database moved aside (as patchd's hint for a damaged one says) or restored."""
    runs = state_dir(store) / "runs"
    ages = {"young": (1, "aaaaaa"), "middle": (91, "bbbbbb"), "old": (401, "cccccc")}
    for age, (days, suffix) in ages.items():
        started = NOW - timedelta(days=days)
        directory = runs / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{suffix}"
        (directory / "packages").mkdir(parents=True)
        (directory / "packages" / f"{age}.deb").write_bytes(b"\0" * days)
        (directory / "transcript.log").write_text(age)
    result = prune(store, state_dir(store), SETTINGS, NOW)
    assert result.freed_bytes == 91 + 401 + len("old")
    assert sorted(p.name for p in runs.rglob("*.deb")) == ["young.deb"]
    assert sorted(p.read_text() for p in runs.rglob("transcript.log")) == ["middle", "young"]


def test_rollbacks_and_the_runs_they_undid_go_together_batch_by_batch(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH_RUNS", 1)
    pairs = []
    for n in range(3):
        undone = record_run(store, NOW - timedelta(days=500 + n), name=f"p{n}")
        pairs += [undone, record_run(store, NOW - timedelta(days=450 + n), parent=undone)]
    assert prune(store, state_dir(store), SETTINGS, NOW).runs == 6
    assert store.list_runs(100) == []


def test_a_rollback_recorded_meanwhile_keeps_the_run_it_undoes(store: StateStore) -> None:
    undone = record_run(store, NOW - timedelta(days=500))
    doomed = retention._RunTable.read(store).older_than(stamp(NOW - SETTINGS.history))
    assert doomed == [undone]
    record_run(store, None, parent=undone, status="running", journal=Step.PLANNED)  # meanwhile
    assert retention._delete_runs(store, doomed) == []
    assert store.get_run(undone).status == "succeeded"


def test_the_newest_runs_stay_whatever_their_age(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock set years ahead makes every run look old: the recent trail stays."""
    monkeypatch.setattr(retention, "MIN_RUNS_KEPT", MIN_RUNS_KEPT)
    recorded = [record_run(store, NOW - timedelta(days=30 - n), name=f"p{n}") for n in range(25)]
    years_ahead = NOW + timedelta(days=5 * 365)
    assert prune(store, state_dir(store), SETTINGS, years_ahead).runs == 5
    assert {r.id for r in store.list_runs(100)} == set(recorded[5:])
    assert MIN_RUNS_KEPT == 20


def test_a_version_listed_again_after_its_install_keeps_its_first_sighting(
    store: StateStore,
) -> None:
    long_ago = NOW - timedelta(days=500)
    again = _update("a")
    store.record_scan([again], {}, long_ago)
    store.record_scan([], {("apt", "a", "amd64"): "1.1"}, long_ago + timedelta(days=1))
    store.record_scan([again], {}, NOW - timedelta(hours=1))  # downgraded: listed again
    assert prune(store, state_dir(store), SETTINGS, NOW).sightings == 0
    sighting = store.sighting("apt", "a", "amd64", "1.1")
    assert sighting is not None
    assert sighting["first_seen"] == format_time(long_ago)


def test_a_daily_timer_a_little_early_still_prunes(store: StateStore) -> None:
    assert prune_if_due(store, state_dir(store), SETTINGS, NOW) is not None
    early = NOW + timedelta(hours=23, minutes=59)
    assert prune_if_due(store, state_dir(store), SETTINGS, early) is not None


def test_a_rollback_of_a_run_pruned_meanwhile_is_refused_as_unknown(store: StateStore) -> None:
    undone = record_run(store, NOW - timedelta(days=500))
    assert prune(store, state_dir(store), SETTINGS, NOW).runs == 1
    before = everything(store)
    with pytest.raises(UnknownRunError, match=f"no run '{undone}' is recorded"):
        store.create_run("rollback", [], NOW, parent_run=undone)
    assert everything(store) == before


def test_a_clock_set_years_ahead_moves_the_cutoffs_two_days_a_prune(store: StateStore) -> None:
    kept = record_run(store, NOW - timedelta(days=300))
    recent = record_run(store, NOW - timedelta(days=1), kept_bytes=10)
    assert prune(store, state_dir(store), SETTINGS, NOW).runs == 0
    years_ahead = NOW + timedelta(days=5 * 365)
    done = prune(store, state_dir(store), SETTINGS, years_ahead)
    assert (done.runs, done.rollback_files_runs) == (0, 0)  # counted from NOW + 2 days
    assert store.get_run(kept).status == "succeeded"
    assert store.get_run(recent).items[0].rollback_available
    assert store.query("SELECT pruned_through FROM housekeeping") == [
        (format_time(NOW + retention.MAX_ADVANCE),)
    ]
