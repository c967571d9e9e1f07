"""An apply run: record the plan, secure a way back, install, judge, record the verdict.

The run and its planned changes are recorded before anything changes, and every
command's transcript as it happens, so the record survives a failed or interrupted
run. Each package's verdict comes from the package database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from itertools import groupby

from patchd.backends.base import ChangeResult, Outcome
from patchd.models import Update
from patchd.runs.recorder import RunRecorder
from patchd.session import Session
from patchd.state.store import RunRecord

log = logging.getLogger(__name__)


def apply_updates(
    session: Session,
    updates: Sequence[Update],
    *,
    dry_run: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunRecord:
    """Install ``updates``; return the recorded run (also when some failed).

    ``should_stop`` is asked before each package-manager transaction: when it says so
    (the agent is shutting down), the run ends there, recorded as ``interrupted``, and no
    transaction is cut short. Raises what the backends raise when they cannot even start
    (a lock held past its wait, a broken package manager); the run is then recorded as
    failed.
    """
    store = session.store
    run_id = store.create_run(
        "apply", [(u.change(), u) for u in updates], session.clock(), dry_run=dry_run
    )
    log.info("run %s: %d update(s)%s", run_id, len(updates), " (dry run)" if dry_run else "")
    if dry_run:
        skipped = [
            ChangeResult(u.change(), Outcome.SKIPPED, u.installed_version, "dry run")
            for u in updates
        ]
        store.record_results(run_id, skipped, session.clock())
        store.finish_run(run_id, "dry-run", [], session.clock())
        return store.get_run(run_id)
    recorder = RunRecorder(session, run_id)
    with recorder.finishing():
        for name, group in groupby(
            sorted(updates, key=lambda u: u.backend), key=lambda u: u.backend
        ):
            if should_stop():
                recorder.stop("patchd is stopping: the rest of the run is left for later")
                break
            backend = session.backend(name)
            batch = list(group)
            changes = [u.change() for u in batch]
            keep_dir = session.state_dir / "runs" / run_id / "packages"
            sources = backend.prepare_rollback(changes, keep_dir, recorder.transcript)
            store.record_rollback_sources(run_id, sources)
            recorder.notes += [
                f"no rollback path for {s.change.name}: {s.detail}"
                for s in sources
                if not s.available
            ]
            recorder.record(backend.apply(changes, recorder.transcript))
            advisories = backend.advisories(batch)  # the new packages are downloaded now
            store.save_advisories(batch, advisories, session.clock())
    return store.get_run(run_id)
