"""A rollback run: return the packages an apply run changed to their recorded versions."""

from __future__ import annotations

import logging
from itertools import groupby
from pathlib import Path

from patchd.backends.base import Outcome
from patchd.errors import UsageError
from patchd.models import PackageChange
from patchd.runs.recorder import RunRecorder, run_status
from patchd.session import Session
from patchd.state.store import RunRecord

log = logging.getLogger(__name__)

ROLLBACK_OF = "rollback"


def _current_state(session: Session) -> dict[tuple[str, str, str], tuple[str, str]]:
    return {
        (p.backend, p.name, p.arch): (p.version, p.status)
        for backend in session.backends
        for p in backend.installed_packages()
    }


def _undoable(
    run: RunRecord, current: dict[tuple[str, str, str], tuple[str, str]]
) -> tuple[list[PackageChange], list[str]]:
    """What undoing ``run`` changes now, and notes on the packages it leaves alone.

    A package returns to its recorded version if the run changed it (fully, or half-way
    where an install failed) and nobody has changed it since.
    """
    changes, notes = [], []
    for item in run.items:
        if item.outcome not in (Outcome.DONE.value, Outcome.FAILED.value):
            continue
        version, status = current.get(item.change.key, (None, "not-installed"))
        if version == item.change.from_version and status == "installed":
            continue  # untouched by the run, or already back
        left_at = item.found_version or item.change.to_version
        if version != left_at:
            notes.append(
                f"{item.change.name} left alone: it is at {version or 'not installed'} now, "
                f"not {left_at} as the run left it"
            )
            continue
        changes.append(
            PackageChange(
                item.change.backend,
                item.change.name,
                item.change.arch,
                version,
                item.change.from_version,
            )
        )
    return changes, notes


def rollback_run(session: Session, run_id: str) -> RunRecord:
    """Undo apply run ``run_id``; return the new rollback run.

    Raises :class:`UsageError` if the run is not an apply run that changed anything that
    is still as it left it.
    """
    store = session.store
    run = store.get_run(run_id)
    if run.kind != "apply" or run.dry_run:
        raise UsageError(
            f"run {run_id} is a {'dry run' if run.dry_run else run.kind} run; "
            "only apply runs can be rolled back"
        )
    changes, notes = _undoable(run, _current_state(session))
    if not changes:
        raise UsageError(
            f"run {run_id} has nothing to roll back" + (f" ({'; '.join(notes)})" if notes else ""),
            hint="see `patchd status` for what each run changed",
        )
    kept = {
        item.change.key: Path(item.rollback_file)
        for item in run.items
        if item.rollback_file and Path(item.rollback_file).is_file()
    }
    rollback_id = store.create_run(
        ROLLBACK_OF, [(c, None) for c in changes], session.clock(), parent_run=run_id
    )
    log.info("run %s: rolling back %d package(s) of run %s", rollback_id, len(changes), run_id)
    recorder = RunRecorder(session, rollback_id, notes=notes)
    with recorder.finishing():
        for name, group in groupby(
            sorted(changes, key=lambda c: c.backend), key=lambda c: c.backend
        ):
            batch: list[PackageChange] = list(group)
            recorder.record(
                session.backend(name).rollback(
                    batch,
                    recorder.transcript,
                    {c.key: kept[c.key] for c in batch if c.key in kept},
                )
            )
    if run_status(recorder.results) == "succeeded":
        store.set_run_status(run_id, "rolled-back")
    return store.get_run(rollback_id)
