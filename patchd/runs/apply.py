"""An apply run: what ``patchd apply`` and the agent call to install updates.

The run and its planned changes are recorded before anything changes; the patch-run
steps (snapshot, install, verify, health, commit or roll back) are journalled in
:mod:`patchd.runs.patchrun`. Runs a crash left unfinished are finished first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from patchd.backends.base import ChangeResult, Outcome
from patchd.models import Update
from patchd.policy.loader import LoadedPolicy
from patchd.runs.patchrun import PatchRun, recover_unfinished
from patchd.session import Session
from patchd.state.store import RunRecord

log = logging.getLogger(__name__)


def apply_updates(
    session: Session,
    updates: Sequence[Update],
    *,
    dry_run: bool = False,
    policy: LoadedPolicy | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    limits: Mapping[str, datetime] | None = None,
) -> RunRecord:
    """Install ``updates`` under ``policy`` (its snapshots and health checks); return the run.

    ``should_stop`` is asked before each package-manager transaction: when it says so
    (the agent is shutting down), the run ends there and no transaction is cut short.
    ``limits`` maps update ids to the end of the window that allows them now: the run
    installs them in batches that fit before it closes (see :mod:`patchd.runs.budget`).
    Raises what the backends raise when they cannot even start (a lock held past its
    wait, a broken package manager) or :class:`~patchd.snapshots.base.SnapshotRequired`;
    the run is then recorded as failed or aborted.
    """
    recover_unfinished(session, policy)
    if dry_run:
        return _dry_run(session, updates)
    run = PatchRun.plan(session, updates, policy=policy, should_stop=should_stop, limits=limits)
    return run.execute(updates)


def _dry_run(session: Session, updates: Sequence[Update]) -> RunRecord:
    store = session.store
    run_id = store.create_run(
        "apply", [(u.change(), u) for u in updates], session.clock(), dry_run=True
    )
    log.info("run %s: %d update(s) (dry run)", run_id, len(updates))
    skipped = [
        ChangeResult(u.change(), Outcome.SKIPPED, u.installed_version, "dry run") for u in updates
    ]
    store.record_results(run_id, skipped, session.clock())
    store.finish_run(run_id, "dry-run", [], session.clock())
    return store.get_run(run_id)
