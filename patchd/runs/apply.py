"""An apply run: record the plan, secure a way back, install, judge, record the verdict.

The run and its planned changes are recorded before anything changes, and every
command's transcript as it happens, so the record survives a failed or interrupted
run. Each package's verdict comes from the package database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import groupby

from patchd.backends.base import ChangeResult, Outcome
from patchd.errors import PatchdError
from patchd.models import Update
from patchd.session import Session
from patchd.state.store import RunRecord
from patchd.transcript import Transcript

log = logging.getLogger(__name__)


def run_status(results: Sequence[ChangeResult]) -> str:
    """``succeeded`` when every change landed, ``failed`` when none did, else ``partial``."""
    done = sum(r.outcome is Outcome.DONE for r in results)
    failed = sum(r.outcome is Outcome.FAILED for r in results)
    if failed == 0:
        return "succeeded"
    return "failed" if done == 0 else "partial"


def apply_updates(
    session: Session, updates: Sequence[Update], *, dry_run: bool = False
) -> RunRecord:
    """Install ``updates``; return the recorded run (also when some failed).

    Raises what the backends raise when they cannot even start (a lock held past its
    wait, a broken package manager); the run is then recorded as failed.
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
    transcript = Transcript(sink=lambda entry: store.append_transcript(run_id, entry))
    results: list[ChangeResult] = []
    notes: list[str] = []
    try:
        for name, group in groupby(
            sorted(updates, key=lambda u: u.backend), key=lambda u: u.backend
        ):
            backend = session.backend(name)
            batch = list(group)
            changes = [u.change() for u in batch]
            keep_dir = session.state_dir / "runs" / run_id / "packages"
            sources = backend.prepare_rollback(changes, keep_dir, transcript)
            store.record_rollback_sources(run_id, sources)
            notes += [
                f"no rollback path for {s.change.name}: {s.detail}"
                for s in sources
                if not s.available
            ]
            outcome = backend.apply(changes, transcript)
            store.record_results(run_id, outcome.results, session.clock())
            results.extend(outcome.results)
            notes.extend(outcome.notes)
            advisories = backend.advisories(batch)  # the new packages are downloaded now
            store.save_advisories(batch, advisories, session.clock())
    except PatchdError as e:
        notes.append(f"run stopped: {e}")
        store.finish_run(run_id, "failed", notes, session.clock())
        raise
    except BaseException:
        store.finish_run(run_id, "interrupted", notes, session.clock())
        raise
    store.finish_run(run_id, run_status(results), notes, session.clock())
    return store.get_run(run_id)
