"""Fitting a run into its maintenance window: transactions sized so the window is never overrun.

An update installed because a window is open must be finished, verified and
health-checked before that window closes. A run therefore installs in batches: before
each one it estimates how long the batch will take and starts it only if the batch,
plus a reserve for verifying and health checks, ends before the window does. What
does not fit is left, untouched, for the window's next opening — the run stops at a
safe step (between transactions), never inside one.

Estimates come from this endpoint's own history: the seconds per package of its last
transactions with the same backend, as the run journal recorded them, doubled for
safety. With no history a conservative default is used. Updates due for another reason
(an emergency, a passed deadline, an endpoint with no window) are not bound by a window
and always go first, in one transaction.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from patchd.models import Update
from patchd.policy.model import HealthCheck
from patchd.state.store import StateStore
from patchd.timeutil import format_time, parse_time

DEFAULT_SECONDS_PER_PACKAGE = 60.0  # no history yet: a slow download and install
MIN_SECONDS_PER_PACKAGE = 5.0
SAFETY_FACTOR = 2.0
HISTORY_TRANSACTIONS = 20
MAX_BATCH = 25  # window-bound updates per transaction: a stop is never far away
FIXED_RESERVE = timedelta(minutes=2)  # verifying, snapshots bookkeeping, the run's record
MAX_HEALTH_RESERVE = timedelta(hours=1)


@dataclass(frozen=True)
class Batch:
    """The next transaction's updates, and why the rest (if any) must wait."""

    updates: list[Update]
    left_over: list[Update]
    reason: str = ""


@dataclass(frozen=True)
class WindowBudget:
    """When each window-bound update must be done, and how long packages take here."""

    limits: Mapping[str, datetime]  # update id -> the end of the window allowing it
    seconds_per_package: Mapping[str, float]  # backend -> estimate
    reserve: timedelta

    def next_batch(self, backend: str, pending: Sequence[Update], now: datetime) -> Batch:
        """The updates of ``pending`` (one backend's) to install in the next transaction."""
        free = [u for u in pending if u.id not in self.limits]
        bound = sorted(
            (u for u in pending if u.id in self.limits),
            key=lambda u: (self.limits[u.id], -u.severity.rank, u.name),
        )
        if free:  # not bound by a window: all of them, now
            return Batch(free, bound)
        per_package = self.seconds_per_package.get(backend, DEFAULT_SECONDS_PER_PACKAGE)
        chosen: list[Update] = []
        for update in bound[:MAX_BATCH]:
            finish = now + timedelta(seconds=per_package * (len(chosen) + 1)) + self.reserve
            if finish > min(self.limits[u.id] for u in [*chosen, update]):
                break
            chosen.append(update)
        left = bound[len(chosen) :]
        if chosen or not left:
            return Batch(chosen, left)
        closes = min(self.limits[u.id] for u in left)
        return Batch(
            [],
            left,
            f"the window closes at {format_time(closes)}: {len(left)} {backend} update(s) "
            f"(about {per_package:.0f} s each, plus {int(self.reserve.total_seconds())} s to "
            "verify and check health) are left for its next opening",
        )


def budget_for(
    store: StateStore, limits: Mapping[str, datetime], health_checks: Sequence[HealthCheck]
) -> WindowBudget:
    """A budget from the endpoint's transaction history and the policy's health checks."""
    return WindowBudget(
        limits=dict(limits),
        seconds_per_package=_history(store) if limits else {},
        reserve=FIXED_RESERVE + health_reserve(health_checks),
    )


def health_reserve(checks: Sequence[HealthCheck]) -> timedelta:
    """The longest the health checks can take: every attempt timing out, every wait."""
    total = sum(((c.timeout + c.interval) * (c.retries + 1) for c in checks), timedelta(0))
    return min(total, MAX_HEALTH_RESERVE)


def _history(store: StateStore) -> dict[str, float]:
    """Backend -> estimated seconds per package, from the last transactions journalled."""
    rows = store.query(
        "SELECT run_id, step, detail, at FROM run_journal "
        "WHERE step IN ('transaction-begun', 'transaction-ended') "
        "ORDER BY rowid DESC LIMIT ?",  # newest first, in the order they were written
        (HISTORY_TRANSACTIONS * 2 * 8,),
    )
    ended: dict[tuple[str, str], datetime] = {}
    samples: dict[str, list[float]] = {}
    for run_id, step, detail, at in rows:
        facts = json.loads(detail)
        backend = str(facts.get("backend", ""))
        if step == "transaction-ended":
            ended[(run_id, backend)] = parse_time(at)
            continue
        finished = ended.pop((run_id, backend), None)
        count = len(facts.get("updates", ()))
        if finished is None or count == 0 or len(samples.get(backend, ())) >= HISTORY_TRANSACTIONS:
            continue
        seconds = (finished - parse_time(at)).total_seconds() / count
        samples.setdefault(backend, []).append(seconds)
    return {
        backend: max(MIN_SECONDS_PER_PACKAGE, statistics.median(values) * SAFETY_FACTOR)
        for backend, values in samples.items()
    }
