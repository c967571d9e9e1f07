"""How long an endpoint keeps its own history: the daily prune.

Every scan and run adds to the local state: a run's items, its package managers'
transcripts (up to 4 MiB a command) and its journal; a sighting for every update version
ever listed; an event for every policy accepted or refused; and, under
``STATE_DIR/runs/RUN_ID/``, the package files kept to roll the run back. Without a bound
they grow for as long as the endpoint lives. The agent prunes once a day (at the end of
a cycle, see :func:`prune_if_due`); ``patchd prune`` does it on demand.

What goes (``retention:`` in the agent configuration, :class:`~patchd.config.RetentionSettings`):

- finished runs older than ``history``, with their items, transcripts and journal;
- sightings closed (installed, or no longer listed) before that, policy events older
  than that except the newest of each kind, and quarantine entries older than that of
  policies no longer in force (an older policy can never come back: versions only move
  forward);
- the kept package files of runs finished more than ``rollback_files`` ago, and then,
  oldest first, of older runs while all of them hold more than
  ``rollback_files_max_bytes``. The newest run's files always stay. Their items then say
  that no rollback path is left, which ``patchd status`` and the reports show.

What always stays: a run that is not over (running, waiting for its reboot, or whose
journal does not end in a final step: recovery needs it), the run such a run undoes
(with its kept packages), a run a kept run refers to (the apply run a rollback undid),
and the newest :data:`MIN_RUNS_KEPT` runs. A clock set years ahead cannot wipe the recent
trail either way: the cutoffs move at most :data:`MAX_ADVANCE` a prune.

The database changes first, in transactions of :data:`BATCH_RUNS` runs, and the files go
after: an interruption between the two leaves only files that no record uses, and every
prune removes those. A run directory no record names (a crash's leftovers, or a database
moved aside or restored) is treated as a run of the age its id gives. Only directories
named like a run id are ever removed, and no symbolic link is followed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from patchd.config import RetentionSettings
from patchd.paths import PACKAGES_DIR, RUNS_DIR
from patchd.policy.durations import format_duration
from patchd.state.store import StateStore
from patchd.timeutil import format_time, parse_time, stamp

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(days=1)
BATCH_RUNS = 50  # runs removed in one transaction (transcripts: up to 4 MiB a command)
MIN_RUNS_KEPT = 20  # the newest runs stay whatever their age
PRUNE_SLACK = timedelta(hours=1)  # a daily timer's cycle a little early is still due
MAX_ADVANCE = timedelta(days=2)  # how far the time the cutoffs count from moves, a prune
MAX_RUN_DIRS = 100_000  # directories under runs/ looked at in one prune
MAX_FILES_PER_RUN = 100_000  # files counted under one run's directory
_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")  # as patchd.state.store.new_run_id
OPEN_STATUSES = ("running", "rebooting")


@dataclass(frozen=True)
class PruneResult:
    """What a prune removed (or, with ``dry_run``, would remove)."""

    runs: int
    sightings: int
    policy_events: int
    quarantine_entries: int
    rollback_files_runs: int  # runs whose kept package files went
    freed_bytes: int  # on disk, from kept package files and unused run directories
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def removed_anything(self) -> bool:
        return any((self.runs, self.sightings, self.policy_events, self.quarantine_entries,
                    self.rollback_files_runs, self.freed_bytes))  # fmt: skip

    def describe(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {self.runs} run(s), {self.sightings} closed update sighting(s), "
            f"{self.policy_events} policy event(s), {self.quarantine_entries} quarantine "
            f"entr{'y' if self.quarantine_entries == 1 else 'ies'}, and the kept packages "
            f"of {self.rollback_files_runs} run(s): {_size(self.freed_bytes)} on disk"
        )


def prune_if_due(
    store: StateStore, state_dir: Path, settings: RetentionSettings, now: datetime
) -> PruneResult | None:
    """Prune if the last prune was :data:`PRUNE_EVERY` ago or more (or never); else ``None``.

    A clock set back makes the last prune look to be in the future: that counts as due.
    """
    rows = store.query("SELECT last_pruned_at FROM housekeeping WHERE id = 1")
    try:
        last = parse_time(rows[0][0]) if rows and rows[0][0] else None
    except ValueError:  # not written by patchd: due, and written again below
        last = None
    if last is not None and now - (PRUNE_EVERY - PRUNE_SLACK) < last <= now:
        return None
    result = prune(store, state_dir, settings, now)
    with store.transaction() as db:
        db.execute("UPDATE housekeeping SET last_pruned_at = ? WHERE id = 1", (format_time(now),))
    if result.removed_anything:
        log.info("history pruned: %s", result.describe())
    return result


def prune(
    store: StateStore,
    state_dir: Path,
    settings: RetentionSettings,
    now: datetime,
    *,
    dry_run: bool = False,
) -> PruneResult:
    """Remove what the retention settings no longer keep; see the module's description.

    The cutoffs count back from ``now``, but from no later than :data:`MAX_ADVANCE` after
    the time the last prune counted from: a clock set years ahead moves them two days a
    prune, not years at once.
    """
    runs_dir = state_dir / RUNS_DIR
    run_dirs = _run_dirs(runs_dir)  # listed first: a run's record exists before its directory
    now = _counted_from(store, now)
    cutoff = stamp(now - settings.history)  # stored times sort as text
    files_cutoff = stamp(now - settings.rollback_files)
    runs = _RunTable.read(store)
    doomed = runs.older_than(cutoff)  # newest first
    skip = runs.in_use | set(doomed)
    with_files = _runs_with_files(store)  # oldest first
    expired = [r for r, finished in with_files.items()
               if finished is not None and finished < files_cutoff and r not in skip]  # fmt: skip
    counts = _history_counts(store, cutoff)
    deleted = doomed
    if not dry_run:
        deleted = _delete_runs(store, doomed)
        _drop_rollback_files(store, expired, settings)
        counts = _delete_history(store, cutoff)
        with store.transaction() as db:
            db.execute("UPDATE housekeeping SET pruned_through = ? WHERE id = 1", (stamp(now),))
    # The files. A run's directory holds its transcript.log, kept with its record, and
    # the packages kept for its rollback (PACKAGES_DIR), kept while an item uses them.
    known = {row[0] for row in runs.rows} - set(deleted)  # read after the directories
    used = set(with_files) - set(expired) - set(deleted)
    freed = 0
    kept: list[tuple[str, Path, int]] = []  # packages kept, oldest run first
    keep = runs.in_use | used
    for run_id, path in run_dirs:
        doomed_path = _doomed_path(run_id, path, keep=keep, known=known,
                                   cutoffs=(cutoff, files_cutoff))  # fmt: skip
        if doomed_path is None:
            kept.append((run_id, path / PACKAGES_DIR, _tree_size(path / PACKAGES_DIR)))
            continue
        freed += _tree_size(doomed_path)
        if not dry_run:
            _remove_tree(doomed_path)
    trimmed = _over_the_bound(kept, settings.rollback_files_max_bytes, runs.in_use)
    for run_id, packages, size in trimmed:
        freed += size
        if not dry_run:
            _drop_rollback_files(store, [run_id], settings, by_size=True)
            _remove_tree(packages)
    return PruneResult(
        runs=len(deleted),
        sightings=counts[0],
        policy_events=counts[1],
        quarantine_entries=counts[2],
        rollback_files_runs=len(set(expired) | {run_id for run_id, _, _ in trimmed}),
        freed_bytes=freed,
        dry_run=dry_run,
    )


def _counted_from(store: StateStore, now: datetime) -> datetime:
    """``now``, or :data:`MAX_ADVANCE` after the last prune's, whichever is earlier."""
    rows = store.query("SELECT pruned_through FROM housekeeping WHERE id = 1")
    try:
        last = parse_time(rows[0][0]) if rows and rows[0][0] else None
    except ValueError:  # not written by patchd
        last = None
    return now if last is None else min(now, last + MAX_ADVANCE)


def _over_the_bound(
    kept: Sequence[tuple[str, Path, int]], bound: int, in_use: set[str]
) -> list[tuple[str, Path, int]]:
    """The oldest kept packages to remove until all of them weigh at most ``bound``.

    Never the packages of a run in use (see :class:`_RunTable`), nor the newest other
    run's: the one most likely to be rolled back.
    """
    candidates = [k for k in kept if k[2] > 0 and k[0] not in in_use]
    over = sum(size for _, _, size in kept) - bound
    trimmed = []
    for entry in candidates[:-1]:  # oldest first (run ids sort by time)
        if over <= 0:
            break
        trimmed.append(entry)
        over -= entry[2]
    return trimmed


def _doomed_path(
    run_id: str, path: Path, *, keep: set[str], known: set[str], cutoffs: tuple[str, str]
) -> Path | None:
    """What goes of a run's directory ``path``: all of it, its kept packages, or nothing."""
    if run_id in keep:
        return None
    if run_id in known:
        return path / PACKAGES_DIR  # kept files no item uses (any more)
    # No record: removed now (started before it finished, so before the cutoff), a
    # crash's leftovers, or the database was moved aside or restored. Treated as a run
    # of that age would be.
    started = _run_started(run_id)
    if started < cutoffs[0]:
        return path
    return path / PACKAGES_DIR if started < cutoffs[1] else None


def _run_started(run_id: str) -> str:
    """The start a run id encodes, as stored times are written (``...Z``)."""
    moment = datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return stamp(moment)


# -- the database ----------------------------------------------------------------------


@dataclass(frozen=True)
class _RunTable:
    """Every recorded run: which are in use, and which the history no longer keeps."""

    rows: list[tuple[str, str | None, str | None, str]]  # id, parent_run, finished_at, status
    in_use: set[str]  # not over, or undone by a run not over: their files stay too

    @classmethod
    def read(cls, store: StateStore) -> _RunTable:
        from patchd.runs.journal import unfinished_runs

        rows = store.query("SELECT id, parent_run, finished_at, status FROM runs ORDER BY id DESC")
        not_over = {r[0] for r in rows if r[3] in OPEN_STATUSES} | set(unfinished_runs(store))
        undone = {r[1] for r in rows if r[0] in not_over and r[1]}
        return cls(rows, not_over | undone)

    def older_than(self, cutoff: str) -> list[str]:
        """Finished runs older than ``cutoff`` to remove, newest first.

        Kept whatever their age: runs in use, a run a kept run refers to (its
        ``parent_run``, a foreign key), and the newest :data:`MIN_RUNS_KEPT` runs, so
        that a clock set years ahead cannot wipe the recent trail.
        """
        newest = {run_id for run_id, _, _, _ in self.rows[:MIN_RUNS_KEPT]}
        old = (
            {
                run_id
                for run_id, _, finished, status in self.rows
                if finished is not None and finished < cutoff and status not in OPEN_STATUSES
            }
            - self.in_use
            - newest
        )
        referenced = {parent for run_id, parent, _, _ in self.rows if parent and run_id not in old}
        return [r[0] for r in self.rows if r[0] in old and r[0] not in referenced]


def _runs_with_files(store: StateStore) -> dict[str, str | None]:
    """Runs whose items point at kept package files, oldest first: when each finished."""
    rows = store.query(
        """SELECT DISTINCT r.id, r.finished_at FROM runs r JOIN run_items i ON i.run_id = r.id
           WHERE i.rollback_file IS NOT NULL ORDER BY r.id"""
    )
    return dict(rows)


def _delete_runs(store: StateStore, run_ids: Sequence[str]) -> list[str]:
    """Delete these runs and what they recorded, in batches; return those deleted.

    Each batch first leaves out a run that another run outside it refers to: one
    recorded since the list was made (a rollback started meanwhile) stays, for the next
    prune to look at again. ``run_ids`` newest first, so a rollback goes before the run
    it undid.
    """
    deleted: list[str] = []
    for start in range(0, len(run_ids), BATCH_RUNS):
        batch = list(run_ids[start : start + BATCH_RUNS])
        marks = ", ".join("?" for _ in batch)
        with store.transaction() as db:
            free = [
                run_id
                for (run_id,) in db.execute(
                    f"""SELECT id FROM runs r WHERE id IN ({marks}) AND NOT EXISTS (
                            SELECT 1 FROM runs c WHERE c.parent_run = r.id
                            AND c.id NOT IN ({marks}))""",  # noqa: S608 - placeholders only
                    (*batch, *batch),
                )
            ]
            if not free:
                continue
            ours = ", ".join("?" for _ in free)
            for table in ("run_transcript", "run_journal", "run_items"):
                db.execute(f"DELETE FROM {table} WHERE run_id IN ({ours})", free)  # noqa: S608
            db.execute(f"DELETE FROM runs WHERE id IN ({ours})", free)  # noqa: S608
        deleted += free
    return deleted


def _drop_rollback_files(
    store: StateStore, run_ids: Sequence[str], settings: RetentionSettings, *, by_size: bool = False
) -> None:
    """Record that these runs' kept package files are gone (before they go)."""
    if by_size:
        why = (
            "the kept package was removed: the kept packages of all runs exceeded "
            f"retention.rollback_files_max_bytes ({_size(settings.rollback_files_max_bytes)})"
        )
    else:
        why = (
            f"the kept package was removed {format_duration(settings.rollback_files)} after "
            "the run (retention.rollback_files)"
        )
    detail = why + "; a rollback can use only what the repositories still carry"
    for start in range(0, len(run_ids), BATCH_RUNS):
        batch = run_ids[start : start + BATCH_RUNS]
        marks = ", ".join("?" for _ in batch)
        with store.transaction() as db:
            db.execute(
                f"""UPDATE run_items SET rollback_available = 0, rollback_file = NULL,
                        rollback_detail = ?
                    WHERE run_id IN ({marks}) AND rollback_file IS NOT NULL""",  # noqa: S608
                (detail, *batch),
            )


# Closed (installed, or no longer listed) and not listed since: a version listed again
# after it was installed keeps its installed_at, and its first sighting.
_CLOSED_SIGHTINGS = (
    "FROM update_sightings WHERE (installed_at < ? OR unlisted_at < ?) AND last_seen < ?"
)
_OLD_EVENTS = "FROM policy_events WHERE at < ? AND id NOT IN (SELECT MAX(id) FROM policy_events GROUP BY kind)"
_OLD_QUARANTINE = (
    "FROM quarantine WHERE at < ? AND policy_sha256 IS NOT (SELECT sha256 FROM policy_state)"
)


def _history_counts(store: StateStore, cutoff: str) -> tuple[int, int, int]:
    return (
        int(store.query(f"SELECT COUNT(*) {_CLOSED_SIGHTINGS}", (cutoff,) * 3)[0][0]),
        int(store.query(f"SELECT COUNT(*) {_OLD_EVENTS}", (cutoff,))[0][0]),
        int(store.query(f"SELECT COUNT(*) {_OLD_QUARANTINE}", (cutoff,))[0][0]),
    )


def _delete_history(store: StateStore, cutoff: str) -> tuple[int, int, int]:
    with store.transaction() as db:
        return (
            db.execute(f"DELETE {_CLOSED_SIGHTINGS}", (cutoff,) * 3).rowcount,
            db.execute(f"DELETE {_OLD_EVENTS}", (cutoff,)).rowcount,
            db.execute(f"DELETE {_OLD_QUARANTINE}", (cutoff,)).rowcount,
        )


# -- the files -------------------------------------------------------------------------


def _run_dirs(runs_dir: Path) -> list[tuple[str, Path]]:
    """The directories under ``runs_dir`` named like a run id, oldest first."""
    found: list[tuple[str, Path]] = []
    try:
        with os.scandir(runs_dir) as entries:
            for entry in entries:
                if len(found) >= MAX_RUN_DIRS:
                    log.warning("%s: more than %d run directories; the rest next time",
                                runs_dir, MAX_RUN_DIRS)  # fmt: skip
                    break
                if _RUN_ID.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                    found.append((entry.name, Path(entry.path)))
    except FileNotFoundError:
        return []
    return sorted(found)


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed), counted up to a bound."""
    if not _is_dir(path):
        return 0
    total = files = 0
    for top, _, names in os.walk(path):
        for name in names:
            files += 1
            if files > MAX_FILES_PER_RUN:
                return total
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            total += st.st_size
    return total


def _remove_tree(path: Path) -> None:
    """Remove ``path``; what cannot be removed is said, and left to the next prune."""
    try:
        if path.is_symlink():
            path.unlink()  # the link only: never what it points at
            return
        shutil.rmtree(path)
    except FileNotFoundError:
        pass  # another prune (the agent's, or `patchd prune`) was first
    except OSError as e:
        log.warning("cannot remove %s: %s", path, e)


def _size(count: int) -> str:
    """``512 bytes``, ``1.5 KiB``, ... ``12.0 GiB``."""
    if count < 1024:
        return f"{count} bytes"
    value, unit = count / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
