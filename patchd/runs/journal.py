"""The write-ahead journal of a patch run: every step is durable before the next begins.

    planned → snapshot-taken → (transaction-begun → transaction-ended)… → verified
            → [reboot-pending] → health-checked → committed | rollback-begun → rolled-back
    (or aborted, when the run stopped before changing anything)

Each step is its own committed SQLite transaction (WAL, ``synchronous=FULL``), written
*before* the action it announces completes is relied on: ``transaction-begun`` is on disk
before the package manager starts. After a crash, :mod:`patchd.runs.recovery` reads the
last step of each unfinished run and finishes it — or rolls it back — exactly once.

Fault injection (documented for tests and for operators who want to rehearse a crash):
with ``PATCHD_FAULT_AFTER=STEP`` (or ``STEP:N`` for its N-th occurrence in the run) in the
environment, patchd kills itself with SIGKILL right after writing that step.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from patchd.state.store import StateStore
from patchd.timeutil import format_time

FAULT_ENV = "PATCHD_FAULT_AFTER"
MAX_DETAIL_CHARS = 1024 * 1024


class Step(StrEnum):
    PLANNED = "planned"
    SNAPSHOT_TAKEN = "snapshot-taken"
    TRANSACTION_BEGUN = "transaction-begun"
    TRANSACTION_ENDED = "transaction-ended"
    VERIFIED = "verified"
    REBOOT_PENDING = "reboot-pending"  # a reboot was started; health is checked after it
    HEALTH_CHECKED = "health-checked"
    ROLLBACK_BEGUN = "rollback-begun"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"


TERMINAL = frozenset({Step.COMMITTED, Step.ROLLED_BACK, Step.ABORTED})


class RunJournal:
    """Appends and reads the journal of one run."""

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def append(self, step: Step, at: datetime, detail: Mapping[str, Any] | None = None) -> None:
        """Make ``step`` durable; then honour a requested fault after it."""
        text = json.dumps(dict(detail or {}), sort_keys=True, default=str)[:MAX_DETAIL_CHARS]
        with self.store.transaction() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM run_journal WHERE run_id = ?", (self.run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO run_journal (run_id, seq, step, detail, at) VALUES (?, ?, ?, ?, ?)",
                (self.run_id, seq, step.value, text, format_time(at)),
            )
        self._maybe_crash(step)

    def steps(self) -> list[tuple[Step, dict[str, Any]]]:
        rows = self.store.query(
            "SELECT step, detail FROM run_journal WHERE run_id = ? ORDER BY seq", (self.run_id,)
        )
        return [(Step(step), json.loads(detail)) for step, detail in rows]

    def last(self) -> Step | None:
        rows = self.store.query(
            "SELECT step FROM run_journal WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
            (self.run_id,),
        )
        return Step(rows[0][0]) if rows else None

    def count(self, step: Step) -> int:
        (n,) = self.store.query(
            "SELECT COUNT(*) FROM run_journal WHERE run_id = ? AND step = ?",
            (self.run_id, step.value),
        )[0]
        return int(n)

    def _maybe_crash(self, step: Step) -> None:
        wanted = os.environ.get(FAULT_ENV, "")
        if not wanted:
            return
        name, _, occurrence = wanted.partition(":")
        if name != step.value:
            return
        if occurrence and self.count(step) != int(occurrence):
            return
        os.kill(os.getpid(), signal.SIGKILL)


def unfinished_runs(store: StateStore) -> list[str]:
    """Apply runs whose journal does not end in a terminal step, oldest first."""
    rows = store.query(
        """SELECT j.run_id, j.step FROM run_journal j
           JOIN (SELECT run_id, MAX(seq) AS seq FROM run_journal GROUP BY run_id) last
             ON j.run_id = last.run_id AND j.seq = last.seq
           JOIN runs r ON r.id = j.run_id
           ORDER BY r.rowid"""
    )
    return [run_id for run_id, step in rows if Step(step) not in TERMINAL]
