"""The agent: scan periodically, enforce the policy in force, reload it live, stop safely.

One thread does the work (SQLite connections belong to their thread); the policy file
watcher and signal handlers only post events to it. A cycle is: scan (refreshing
repository metadata first, if configured), plan, and apply what the plan says is due now
— inside an open maintenance window, an emergency, a passed deadline. With no policy in
force, or an expired one, it only scans. The next cycle is due at the next scan interval
(with jitter) or when the plan says something becomes due, whichever comes first.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from patchd.agent.instance import InstanceLock
from patchd.agent.notify import Notifier, Watchdog
from patchd.agent.schedule import EventQueue
from patchd.config import AgentConfig, load_config
from patchd.errors import PatchdError
from patchd.policy.evaluate import Decision, Plan
from patchd.policy.planner import plan_for
from patchd.policy.reload import PolicyReloader
from patchd.policy.watch import PolicyFileWatcher
from patchd.runs.apply import apply_updates
from patchd.scan import scan
from patchd.session import Session
from patchd.target import Target
from patchd.timeutil import format_time

log = logging.getLogger(__name__)

JITTER = 0.1  # scans spread by ±10 % of the interval, so a fleet does not scan in step
RETRY_AFTER_FAILURE = timedelta(minutes=5)
STEP_LIMIT_S = 4 * 3600.0  # the longest a cycle may keep the watchdog satisfied
CYCLE, FETCH, POLICY_FILE, RELOAD, STOP = "cycle", "fetch", "policy-file", "reload", "stop"


class Agent:
    """The long-running service. :meth:`run` returns the process exit status."""

    def __init__(
        self,
        config_path: Path | None,
        config: AgentConfig,
        target: Target,
        state_dir: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.target = target
        self.state_dir = state_dir
        self.events = EventQueue()
        self.notifier = notifier or Notifier()
        self.watchdog = Watchdog(self.notifier)
        self.stopping = threading.Event()
        self._clock = clock
        self._session: Session | None = None
        self._watcher: PolicyFileWatcher | None = None

    # -- lifecycle -------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Serve until SIGTERM/SIGINT (or one cycle with ``once``); return the exit status."""
        lock = InstanceLock(self.state_dir)
        lock.acquire()
        try:
            self._open()
            self._install_signal_handlers()
            self._reload_policy(fetch=True)
            self._recover()
            self.notifier.ready(self._summary())
            self.watchdog.start()
            if once:
                return 0 if self._cycle() else 1
            self.events.post(CYCLE)
            return self._serve()
        finally:
            self.notifier.stopping()
            self.watchdog.stop()
            self._close()
            lock.release()

    def _serve(self) -> int:
        log.info("agent started (state %s, root %s)", self.state_dir, self.target)
        while not self.stopping.is_set():
            event = self.events.next()
            self.watchdog.beat()
            if event == STOP:
                break
            if event == CYCLE:
                self._cycle()
            elif event == POLICY_FILE:
                self._reload_policy(fetch=False)
                self._schedule_cycle_soon()
            elif event == FETCH:
                self._reload_policy(fetch=True, file=False)
                self._schedule_cycle_soon()
            elif event == RELOAD:
                self.notifier.reloading()
                self._reload_config()
                self._reload_policy(fetch=True)
                self._schedule_cycle_soon()
            self.notifier.status(self._summary())
        log.info("agent stopped")
        return 0

    def _open(self) -> None:
        kwargs = {"clock": self._clock} if self._clock else {}
        self._session = Session(self.config, self.target, self.state_dir, **kwargs)
        settings = self.config.policy
        if settings.file is not None:
            self._watcher = PolicyFileWatcher(settings.file, lambda: self.events.post(POLICY_FILE))
            self._watcher.start()
        if settings.urls:
            self.events.after(FETCH, settings.fetch_interval.total_seconds())
        PolicyReloader(self.session.policy_gate, settings).install_trust_root()

    def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def session(self) -> Session:
        assert self._session is not None
        return self._session

    def _install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()  # a running cycle stops at its next safe step
            self.events.post(STOP)

        def reload(signum: int, frame: FrameType | None) -> None:
            self.events.post(RELOAD)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    # -- policy and configuration ------------------------------------------------------

    def _reload_policy(self, *, fetch: bool, file: bool = True) -> None:
        reloader = PolicyReloader(self.session.policy_gate, self.config.policy)
        # The reloader logs every outcome and never raises: a bad policy never stops the agent.
        if file and self.config.policy.file is not None:
            reloader.reload_file()
        if fetch and self.config.policy.urls:
            reloader.fetch_all()
            self.events.after(FETCH, self.config.policy.fetch_interval.total_seconds())

    def _reload_config(self) -> None:
        try:
            config = load_config(self.config_path)
        except PatchdError as e:
            log.error("configuration not reloaded, the previous one stays in force: %s", e)
            return
        if config == self.config:
            return
        log.info("configuration reloaded")
        self._close()
        self.config = config
        self._open()

    # -- the cycle ---------------------------------------------------------------------

    def _recover(self) -> None:
        """Before anything else: finish or roll back runs a crash left unfinished."""
        from patchd.runs.patchrun import recover_unfinished

        self.watchdog.busy(STEP_LIMIT_S)
        try:
            active = self.session.policy_gate.active()
            for run in recover_unfinished(self.session, active.loaded if active else None):
                log.info("run %s, interrupted earlier, is now %s", run.id, run.status)
        except PatchdError as e:
            log.error("could not finish an interrupted run: %s", e)

    def _cycle(self) -> bool:
        """One scan, plan and (when due) apply; schedule the next. True when all went well."""
        self.watchdog.busy(STEP_LIMIT_S)
        session = self.session
        try:
            self.notifier.status("scanning")
            report = scan(session, refresh=self.config.agent.refresh)
            plan = plan_for(session, report)
            due = plan.install_now()
            if due and not self.stopping.is_set():
                self.notifier.status(f"applying {len(due)} update(s)")
                run = apply_updates(
                    session, due, policy=plan.policy, should_stop=self.stopping.is_set
                )
                log.info("run %s: %s", run.id, run.status)
            self._schedule_next(plan)
            return True
        except PatchdError as e:
            log.error("cycle failed: %s", e)
            self.events.after(CYCLE, RETRY_AFTER_FAILURE.total_seconds())
            return False
        finally:
            self.watchdog.beat()

    def _schedule_next(self, plan: Plan) -> None:
        interval = self.config.agent.scan_interval.total_seconds()
        wait = interval * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - not security
        upcoming = [
            d.not_before
            for d in plan.decisions
            if d.decision in (Decision.INSTALL_LATER, Decision.DEFERRED) and d.not_before
        ]
        if upcoming:
            wait = min(wait, max(0.0, (min(upcoming) - plan.at).total_seconds()))
            log.info("next change due at %s", format_time(min(upcoming)))
        self.events.after(CYCLE, wait)

    def _schedule_cycle_soon(self) -> None:
        """A new policy may make something due at once: plan again without waiting."""
        self.events.after(CYCLE, 0)

    def _summary(self) -> str:
        status = self.session.policy_gate.status()
        policy = (
            f"policy {status['name']} v{status['version']} {status['state']}"
            if status["name"]
            else "no policy"
        )
        due = self.events.due_in(CYCLE)
        nxt = f", next cycle in {int(due)} s" if due is not None else ""
        return f"{policy}{nxt}"
