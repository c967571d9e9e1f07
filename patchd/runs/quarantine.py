"""Change sets held back after a run failed its health checks, until the policy changes.

Keyed by the policy's sha256: a new policy (any change, signed again) gives the
administrators' fresh word on them, so the quarantine does not carry over.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from patchd.state.store import StateStore
from patchd.timeutil import format_time


def quarantine(
    store: StateStore,
    policy_sha256: str,
    *,
    update_ids: Iterable[str],
    run_id: str,
    reason: str,
    at: datetime,
) -> None:
    """Hold ``update_ids`` under the policy ``policy_sha256``, saying which run failed and why."""
    with store.transaction() as db:
        for update_id in update_ids:
            db.execute(
                """INSERT OR REPLACE INTO quarantine (policy_sha256, update_id, run_id, reason, at)
                   VALUES (?, ?, ?, ?, ?)""",
                (policy_sha256, update_id, run_id, reason, format_time(at)),
            )


def quarantined(store: StateStore, policy_sha256: str) -> dict[str, str]:
    """Update id → why it is held, for the policy ``policy_sha256``."""
    rows = store.query(
        "SELECT update_id, run_id, reason FROM quarantine WHERE policy_sha256 = ?", (policy_sha256,)
    )
    return {
        update_id: f"quarantined by run {run_id}: {reason}" for update_id, run_id, reason in rows
    }
