"""A patch run, step by journalled step: snapshot, install, verify, check health, then
commit or roll back by itself — and the same steps resumed after a crash.

Every step is written to the run's journal (:mod:`patchd.runs.journal`) before the run
relies on it, so a run cut short by a power cut or ``kill -9`` is finished or rolled back
on the next start, exactly once (:func:`recover_unfinished`). The verdict on each package
always comes from the package database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchd.backends.base import ChangeResult, Outcome, TransactionResult
from patchd.errors import PatchdError
from patchd.models import PackageChange, Update
from patchd.paths import PACKAGES_DIR, run_dir
from patchd.policy.loader import LoadedPolicy
from patchd.policy.model import SnapshotSettings
from patchd.runs.journal import RunJournal, Step, unfinished_runs
from patchd.runs.quarantine import quarantine
from patchd.runs.recorder import RunRecorder, run_status
from patchd.session import Session
from patchd.state.store import RunRecord
from patchd.target import Target

if TYPE_CHECKING:
    from patchd import health

log = logging.getLogger(__name__)

CurrentState = dict[tuple[str, str, str], tuple[str, str]]


def current_state(session: Session) -> CurrentState:
    """(backend, name, arch) → (version, dpkg-style status) of every present package."""
    return {
        (p.backend, p.name, p.arch): (p.version, p.status)
        for backend in session.backends
        for p in backend.installed_packages()
    }


def undo_changes(run: RunRecord, current: CurrentState) -> tuple[list[PackageChange], list[str]]:
    """What returning ``run``'s packages to their recorded versions changes now.

    A package goes back if the run changed it (fully, or half-way where an install
    failed) and nobody has changed it since; the others are named in the notes.
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
        c = item.change
        changes.append(PackageChange(c.backend, c.name, c.arch, version, c.from_version))
    return changes, notes


class PatchRun:
    """One apply run of ``session``, journalled; :meth:`execute` or :meth:`resume` it."""

    def __init__(
        self,
        session: Session,
        run_id: str,
        *,
        policy: LoadedPolicy | None,
        should_stop: Callable[[], bool] = lambda: False,
        limits: Mapping[str, datetime] | None = None,
        reboot: Callable[[Target, int, str], object] | None = None,
        boot_time: Callable[[], float] | None = None,
    ) -> None:
        self.session = session
        self.reboot = reboot or _warn_and_reboot
        self.boot_time = boot_time or _boot_time
        self.run_id = run_id
        self.policy = policy
        self.should_stop = should_stop
        self.limits = dict(limits or {})  # update id -> the end of the window allowing it
        self.journal = RunJournal(session.store, run_id)
        self.recorder = RunRecorder(session, run_id)

    @classmethod
    def plan(
        cls,
        session: Session,
        updates: Sequence[Update],
        *,
        policy: LoadedPolicy | None,
        should_stop: Callable[[], bool] = lambda: False,
        limits: Mapping[str, datetime] | None = None,
    ) -> PatchRun:
        """Record a new run and its planned changes (the journal's first step)."""
        run_id = session.store.create_run(
            "apply", [(u.change(), u) for u in updates], session.clock()
        )
        run = cls(session, run_id, policy=policy, should_stop=should_stop, limits=limits)
        run._step(Step.PLANNED, updates=[u.id for u in updates],
                  policy=policy.sha256 if policy else None)  # fmt: skip
        return run

    # -- the steps ---------------------------------------------------------------------

    def execute(self, updates: Sequence[Update]) -> RunRecord:
        """Snapshot, install, verify, check health; commit, or roll back by itself."""
        log.info("run %s: %d update(s)", self.run_id, len(updates))
        with self.recorder.finishing():
            try:
                self._snapshot()
            except PatchdError:
                self._abort(
                    "no change was made: the snapshots the policy requires could not be taken"
                )
                raise
            started = self._install(updates)
            if not started:
                self._abort("stopped before any change: the run is left for later")
                return self.record()
            self._verify()
            if self._reboot_if_due():
                return self.record()
            self._conclude(self._check_health())
        return self.record()

    def resume(self) -> RunRecord:
        """Finish a run a crash interrupted, from its last durable step."""
        last = self.journal.last()
        log.warning("run %s was interrupted after %s: finishing it", self.run_id, last)
        self.recorder.notes.append(f"resumed after an interruption (last step: {last})")
        with self.recorder.finishing():
            if last in (None, Step.PLANNED, Step.SNAPSHOT_TAKEN):
                self._abort("patchd stopped before changing anything; nothing was changed")
            elif last in (Step.TRANSACTION_BEGUN, Step.TRANSACTION_ENDED):
                self._repair()
                if self._rejudge():
                    self._verify()
                    self._conclude(self._check_health())
                else:
                    self._abort("interrupted before the package manager changed anything")
            elif last is Step.VERIFIED:
                self._conclude(self._check_health())
            elif last is Step.REBOOT_PENDING:
                pending = self.journal.steps()[-1][1]
                if self.boot_time() > float(pending.get("boot_time", 0)):
                    self.recorder.notes.append("rebooted: checking health now")
                    self._conclude(self._check_health())
                else:
                    self.recorder.final_status = "rebooting"  # the reboot has not happened yet
            elif last is Step.HEALTH_CHECKED:
                detail = self.journal.steps()[-1][1]
                if detail.get("passed", False):
                    self._commit()
                else:
                    self._roll_back(str(detail.get("reason", "health checks failed")))
            elif last is Step.ROLLBACK_BEGUN:
                self._roll_back(str(self.journal.steps()[-1][1].get("reason", "resumed")))
        return self.record()

    def record(self) -> RunRecord:
        return self.session.store.get_run(self.run_id)

    def _step(self, step: Step, **detail: Any) -> None:
        self.journal.append(step, self.session.clock(), detail)

    def _snapshot(self) -> None:
        from patchd.snapshots import select_providers  # only runs that change packages need these
        from patchd.snapshots.base import SnapshotContext

        settings = self.policy.policy.snapshots if self.policy else SnapshotSettings()
        context = SnapshotContext(
            target=self.session.target,
            state_dir=self.session.state_dir,
            clock=self.session.clock,
            installed=lambda: [p for b in self.session.backends for p in b.installed_packages()],
        )
        plan = select_providers(settings, context)
        taken, notes = plan.take(f"patchd run {self.run_id}", self.run_id)
        self.recorder.notes.extend(notes)
        self._step(Step.SNAPSHOT_TAKEN, snapshots=[s.as_dict() for s in taken])
        self.recorder.notes.append("snapshots: " + ", ".join(f"{s.provider} {s.id}" for s in taken))
        plan.prune(settings.keep)

    def _install(self, updates: Sequence[Update]) -> bool:
        """Each backend's transactions, journalled; False if none was started.

        Updates installed because a window is open go in batches that each fit before the
        window closes (see :mod:`patchd.runs.budget`); what does not fit is left for the
        window's next opening. A stop request is honoured between transactions.
        """
        from patchd.runs.budget import budget_for

        checks = self.policy.policy.health_checks if self.policy else ()
        budget = budget_for(self.session.store, self.limits, checks)
        started = False
        for name, group in groupby(
            sorted(updates, key=lambda u: u.backend), key=lambda u: u.backend
        ):
            pending = list(group)
            while pending:
                if self.should_stop():
                    self.recorder.stop("patchd is stopping: the rest of the run is left for later")
                    return started
                batch = budget.next_batch(name, pending, self.session.clock())
                if not batch.updates:
                    self._leave(batch.left_over, batch.reason)
                    break
                self._transaction(name, batch.updates)
                started = True
                pending = batch.left_over
        return started

    def _transaction(self, name: str, batch: Sequence[Update]) -> None:
        store = self.session.store
        backend = self.session.backend(name)
        changes = [u.change() for u in batch]
        keep_dir = run_dir(self.session.state_dir, self.run_id) / PACKAGES_DIR
        sources = backend.prepare_rollback(changes, keep_dir, self.recorder.transcript)
        store.record_rollback_sources(self.run_id, sources)
        self.recorder.notes += [
            f"no rollback path for {s.change.name}: {s.detail}" for s in sources if not s.available
        ]
        self._step(Step.TRANSACTION_BEGUN, backend=name, updates=[u.id for u in batch])
        outcome = backend.apply(changes, self.recorder.transcript)
        self.recorder.record(outcome)
        self._step(Step.TRANSACTION_ENDED, backend=name,
                   results={r.change.name: r.outcome.value for r in outcome.results})  # fmt: skip
        if backend.looks_up_advisories:
            store.save_advisories(batch, backend.advisories(batch), self.session.clock())

    def _leave(self, updates: Sequence[Update], reason: str) -> None:
        """Record ``updates`` as not attempted in this run, and why."""
        log.info("run %s: %s", self.run_id, reason)
        self.recorder.notes.append(reason)
        self.recorder.record(
            TransactionResult(
                tuple(
                    ChangeResult(u.change(), Outcome.SKIPPED, u.installed_version, reason)
                    for u in updates
                )
            )
        )

    def _repair(self) -> None:
        for backend in self.session.backends:
            self.recorder.notes.extend(backend.repair(self.recorder.transcript))

    def _rejudge(self) -> bool:
        """After a crash: each planned change's verdict from the package database.

        Returns whether anything changed at all.
        """
        current = current_state(self.session)
        results = []
        for item in self.record().items:
            change = item.change
            version, status = current.get(change.key, (None, "not-installed"))
            if version == change.to_version and status == "installed":
                results.append(ChangeResult(change, Outcome.DONE, version))
            elif version == change.from_version and status == "installed":
                results.append(
                    ChangeResult(change, Outcome.SKIPPED, version, "not attempted before the crash")
                )
            else:
                results.append(ChangeResult(change, Outcome.FAILED, version,
                                            f"database records {version} ({status}) after the crash"))  # fmt: skip
        self.session.store.record_results(self.run_id, results, self.session.clock())
        self.recorder.results = results
        return any(r.outcome is not Outcome.SKIPPED for r in results)

    def _verify(self) -> None:
        results = self.recorder.results
        self._step(Step.VERIFIED, done=sum(r.outcome is Outcome.DONE for r in results),
                   failed=sum(r.outcome is Outcome.FAILED for r in results))  # fmt: skip

    def _reboot_if_due(self) -> bool:
        """Reboot now when the update needs it and the policy allows it here and now.

        The run then waits (``reboot-pending``) and is resumed after the boot, where its
        health checks run. A reboot that must wait for a window is noted; the agent does
        it when a window opens.
        """
        target = self.session.target
        if self.policy is None or not target.is_host:
            return False
        from patchd.reboots import RebootAction, plan_reboot

        state = self.session.reboot_state()
        decision = plan_reboot(self.policy.policy.reboot, in_window=_in_window(self.session, self.policy),
                               reboot_state=state)  # fmt: skip
        if decision.action is not RebootAction.NOT_NEEDED or state.restart.units:
            self.recorder.notes.append(decision.reason)
        if not decision.reboot_now:
            return False
        self._step(Step.REBOOT_PENDING, reason=decision.reason, boot_time=self.boot_time())
        self.recorder.final_status = "rebooting"
        self.reboot(target, decision.warn_minutes, f"patchd: rebooting to finish run {self.run_id}")
        return True

    def _check_health(self) -> health.HealthReport:
        from patchd.health import run_health_checks

        checks = self.policy.policy.health_checks if self.policy else ()
        report = run_health_checks(checks, target=self.session.target)
        failures = ", ".join(r.name for r in report.failures())
        self._step(Step.HEALTH_CHECKED, passed=report.passed, report=report.as_dict(),
                   reason=f"health checks failed: {failures}" if failures else "")  # fmt: skip
        return report

    def _conclude(self, report: health.HealthReport) -> None:
        if report.passed:
            self._commit()
            return
        failures = "; ".join(f"{r.name}: {r.detail}" for r in report.failures())
        if not self.record().items:  # a reboot of its own: no change of this run to undo
            self.recorder.notes.append(
                f"health checks failed after the reboot ({failures}); the runs that installed "
                "the updates can be rolled back with `patchd rollback RUN`"
            )
            self.recorder.final_status = "failed"
            self._step(Step.ABORTED, reason="health checks failed after the reboot")
            return
        self._roll_back(f"health checks failed after patching ({failures})")

    def _commit(self) -> None:
        self._step(Step.COMMITTED)

    def _abort(self, reason: str) -> None:
        self.recorder.notes.append(reason)
        self.recorder.final_status = "aborted"
        self._step(Step.ABORTED, reason=reason)

    def _roll_back(self, reason: str) -> None:
        """Undo the run's changes (from the kept packages), quarantine them, record why."""
        self._step(Step.ROLLBACK_BEGUN, reason=reason)
        log.warning("run %s: rolling back: %s", self.run_id, reason)
        run = self.record()
        changes, notes = undo_changes(run, current_state(self.session))
        self.recorder.notes.append(f"rolled back by itself: {reason}")
        self.recorder.notes.extend(notes)
        kept = {
            item.change.key: Path(item.rollback_file)
            for item in run.items
            if item.rollback_file and Path(item.rollback_file).is_file()
        }
        undone: list[ChangeResult] = []
        for name, group in groupby(
            sorted(changes, key=lambda c: c.backend), key=lambda c: c.backend
        ):
            batch = list(group)
            outcome = self.session.backend(name).rollback(
                batch,
                self.recorder.transcript,
                {c.key: kept[c.key] for c in batch if c.key in kept},
            )
            undone.extend(outcome.results)
            self.recorder.notes.extend(outcome.notes)
        failed = [r.change.name for r in undone if r.outcome is Outcome.FAILED]
        if failed:
            self.recorder.notes.append(f"could not roll back: {', '.join(failed)}")
        if self.policy is not None:
            ids = [item.update_id for item in run.items if item.update_id]
            quarantine(self.session.store, self.policy.sha256, update_ids=ids, run_id=self.run_id,
                       reason=reason, at=self.session.clock())  # fmt: skip
        self.recorder.final_status = "rolled-back" if not failed else "failed"
        self._step(Step.ROLLED_BACK, undone={r.change.name: r.outcome.value for r in undone})


_STATUS_AFTER = {Step.ROLLED_BACK: "rolled-back", Step.ABORTED: "aborted"}


def _warn_and_reboot(target: Target, warn_minutes: int, message: str) -> object:
    from patchd.reboots import warn_and_reboot

    return warn_and_reboot(target, warn_minutes, message)


def _boot_time() -> float:
    import psutil

    return float(psutil.boot_time())


def _window_openings(session: Session, policy: LoadedPolicy) -> tuple[bool, datetime | None]:
    """Whether the endpoint may change now (a window is open, or it has none), and when its
    next window opens (``None`` when it has none, or none within the planning horizon)."""
    from patchd.discovery.timezone import local_zone
    from patchd.policy.planner import facts_now
    from patchd.policy.selectors import matching_segments
    from patchd.policy.windows import openings

    facts = facts_now(session)
    segments = matching_segments(policy.policy, facts)
    names = [w for s in policy.policy.segments if s.name in segments for w in s.windows]
    if not names:
        return True, None
    now = session.clock()
    upcoming = openings(policy.schedule, names, now, local_zone=local_zone(session.target),
                        splay_key=facts.endpoint_key, count=1)  # fmt: skip
    if not upcoming:
        return False, None
    return upcoming[0].start <= now, upcoming[0].start


def _in_window(session: Session, policy: LoadedPolicy) -> bool:
    """True when the endpoint may change now: one of its windows is open, or it has none."""
    return _window_openings(session, policy)[0]


@dataclass(frozen=True)
class PendingReboot:
    """What the agent did about a reboot that earlier changes left pending."""

    run: RunRecord | None  # the run that is rebooting the endpoint, if it is
    reason: str
    retry_at: datetime | None = None  # when a window opens that allows it


def reboot_if_pending(
    session: Session,
    policy: LoadedPolicy | None,
    *,
    reboot: Callable[[Target, int, str], object] | None = None,
    boot_time: Callable[[], float] | None = None,
) -> PendingReboot:
    """Reboot now if the endpoint needs it and the policy allows it here and now.

    A run that needed a reboot outside a window ended without one; when a window opens
    the agent calls this. The reboot is journalled as a run of its own (with no package
    changes) that waits in ``reboot-pending`` and, after the boot, checks health like any
    run. ``retry_at`` says when to look again when the reboot must wait for a window.
    """
    target = session.target
    if policy is None or not target.is_host:
        return PendingReboot(None, "no policy in force (or not the host): patchd does not reboot")
    if not policy.policy.reboot.allowed:  # before looking: reading every process costs
        return PendingReboot(None, "the policy does not allow patchd to reboot")
    from patchd.reboots import RebootAction, plan_reboot

    state = session.reboot_state()
    if not state.required:
        return PendingReboot(None, "no reboot needed")
    in_window, next_opening = _window_openings(session, policy)
    decision = plan_reboot(policy.policy.reboot, in_window=in_window, reboot_state=state)
    if decision.action is RebootAction.WAIT_FOR_WINDOW:
        return PendingReboot(None, decision.reason, retry_at=next_opening)
    if not decision.reboot_now:
        return PendingReboot(None, decision.reason)
    run = PatchRun.plan(session, [], policy=policy)
    run.reboot = reboot or run.reboot
    run.boot_time = boot_time or run.boot_time
    log.warning("run %s: %s", run.run_id, decision.reason)
    with run.recorder.finishing():
        run.recorder.notes.append(f"reboot to finish earlier changes: {decision.reason}")
        run._step(Step.REBOOT_PENDING, reason=decision.reason, boot_time=run.boot_time())
        run.recorder.final_status = "rebooting"
        run.reboot(target, decision.warn_minutes, "patchd: rebooting to finish installing updates")
    return PendingReboot(run.record(), decision.reason)


def recover_unfinished(session: Session, policy: LoadedPolicy | None) -> list[RunRecord]:
    """Finish or roll back every run a crash left unfinished; return them, finished.

    Also closes the record of a run whose journal ended but whose status was not yet
    written when patchd stopped (the crash came between the two).
    """
    store = session.store
    for (run_id,) in store.query("SELECT id FROM runs WHERE status = 'running' AND kind = 'apply'"):
        last = RunJournal(store, run_id).last()
        if last in (Step.COMMITTED, Step.ROLLED_BACK, Step.ABORTED):
            known = {o.value for o in Outcome}
            results = [
                ChangeResult(i.change, Outcome(i.outcome), i.found_version)
                for i in store.get_run(run_id).items
                if i.outcome in known
            ]
            status = _STATUS_AFTER.get(last) or run_status(results)
            store.finish_run(run_id, status, ["closed after an interruption"], session.clock())
    return [PatchRun(session, run_id, policy=policy).resume() for run_id in unfinished_runs(store)]
