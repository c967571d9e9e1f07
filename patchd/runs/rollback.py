"""A rollback run: return the packages an apply run changed to their recorded versions."""

from __future__ import annotations

import logging
from itertools import groupby
from pathlib import Path

from patchd.errors import UsageError
from patchd.models import PackageChange
from patchd.runs.patchrun import current_state, undo_changes
from patchd.runs.recorder import RunRecorder, run_status
from patchd.session import Session
from patchd.state.store import RunRecord

log = logging.getLogger(__name__)

ROLLBACK_OF = "rollback"


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
    changes, notes = undo_changes(run, current_state(session))
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
