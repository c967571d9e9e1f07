"""The agent: scan periodically, enforce the policy in force, reload it live, stop safely.

The service process waits on events — timers, the policy file watcher, signals — and
does every piece of work (start-up, a cycle, a policy reload) in a forked worker with a
database connection of its own. The service itself then keeps only what it needs
between tasks: a scan holds thousands of package records, parsing a policy builds its
schema, and a task that fails badly cannot take the service down. Where the platform
cannot fork (or with ``--once``) tasks run in the service's own process.

A cycle is: scan (refreshing repository metadata first, if configured), plan, and apply
what the plan says is due now — inside an open maintenance window, an emergency, a
passed deadline. With no policy in force, or an expired one, it only scans. The next
cycle is due at the next scan interval (with jitter) or when the plan says something
becomes due, whichever comes first.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import logging
import math
import os
import random
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from patchd import __version__
from patchd.agent.instance import InstanceLock
from patchd.agent.notify import Notifier, Watchdog
from patchd.agent.schedule import EventQueue
from patchd.config import AgentConfig, load_config
from patchd.errors import PatchdError
from patchd.filestate import FileState, state_of
from patchd.policy.evaluate import Decision
from patchd.policy.loader import LoadedPolicy
from patchd.policy.planner import plan_for
from patchd.policy.reload import PolicyReloader
from patchd.policy.watch import PolicyFileWatcher
from patchd.reporting.agent import REPORT, ensure_identity, queue_after_cycle, report_task
from patchd.runs.apply import apply_updates
from patchd.runs.patchrun import reboot_if_pending, recover_unfinished
from patchd.scan import scan
from patchd.session import Session
from patchd.signing.dsse import detached_signature_path
from patchd.target import Target
from patchd.timeutil import format_time, utcnow

log = logging.getLogger(__name__)

JITTER = 0.1  # scans spread by ±10 % of the interval, so a fleet does not scan in step
RETRY_AFTER_FAILURE = timedelta(minutes=5)
STEP_LIMIT_S = 4 * 3600.0  # the longest a task may keep the watchdog satisfied
MAX_WORKER_ANSWER_BYTES = 4096
CYCLE, FETCH, POLICY_FILE, RELOAD, STOP = "cycle", "fetch", "policy-file", "reload", "stop"
RECHECK = "policy-recheck"
# What every cycle's worker uses, imported once in the service (see _preload). Modules
# only a run that changes packages needs (snapshots, health checks, changelogs) are left
# to that run's worker: the idle service stays small.
PRELOADED = ("patchd.discovery.eol", "patchd.discovery.hardware", "patchd.discovery.machine")

Task = Callable[[Session], float | None]  # returns seconds until something is due, or None
# The policy file's and its signature's states (None: missing), or None: no policy file.
PolicyFileState = tuple[FileState | None, FileState | None] | None


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
        self._policy_seen: PolicyFileState = None  # the policy file as last read
        self._worker: int | None = None  # the pid of a running task's worker
        self._inline = False  # tasks in this process (``--once``, platforms without fork)

    # -- lifecycle -------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Serve until SIGTERM/SIGINT (or one cycle with ``once``); return the exit status."""
        lock = InstanceLock(self.state_dir)
        lock.acquire()
        try:
            self._inline = once or not hasattr(os, "fork")
            self._open()
            self._install_signal_handlers()
            self._policy_seen = self._policy_file_state()  # the start task reads it
            self._task(self._start_task, "start")
            self.notifier.ready(self._summary())
            self.watchdog.start()
            if once:
                ok = self._cycle()
                self._report()
                return 0 if ok else 1
            self.events.post(CYCLE)
            return self._serve()
        finally:
            self.notifier.stopping()
            self.watchdog.stop()
            self._close()
            lock.release()

    def _serve(self) -> int:
        log.info(
            "agent started (patchd %s, state %s, root %s)", __version__, self.state_dir, self.target
        )
        while not self.stopping.is_set():
            event = self.events.next()
            self.watchdog.beat()
            if event == STOP:
                break
            if event == CYCLE:
                self._cycle()
            elif event == REPORT:
                self._report()
            elif event == POLICY_FILE:
                self._read_policy(fetch=False)
            elif event == RECHECK:
                self._recheck_policy_file()
            elif event == FETCH:
                self._task(
                    lambda session: self._reload_task(session, file=False, fetch=True), "fetch"
                )
                self._schedule_fetch()
                self._schedule_cycle_soon()
            elif event == RELOAD:
                self.notifier.reloading()
                self._reload_config()
                self._read_policy(fetch=True)
                # systemd keeps the unit "reloading" (and `systemctl reload` waiting) until
                # READY=1 says the reload is over (sd_notify(3)).
                self.notifier.ready(self._summary())
                continue
            self.notifier.status(self._summary())
        log.info("agent stopped")
        return 0

    def _open(self) -> None:
        self._session = Session(self.config, self.target, self.state_dir, self._clock or utcnow)
        if self.config.policy.file is not None:
            self._watcher = PolicyFileWatcher(
                self.config.policy.file, lambda: self.events.post(POLICY_FILE)
            )
            self._watcher.start()
            self.events.after(RECHECK, self.config.policy.file_recheck_s)
        self._schedule_fetch()
        _preload(self.session)

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
            self.stopping.set()  # a running task stops at its next safe step
            if self._worker is not None:
                os.kill(self._worker, signal.SIGTERM)  # so does the worker running it
            self.events.post(STOP)

        def reload(signum: int, frame: FrameType | None) -> None:
            self.events.post(RELOAD)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if hasattr(signal, "SIGHUP"):  # not on Windows
            signal.signal(signal.SIGHUP, reload)
        if hasattr(signal, "SIGBREAK"):  # Windows: how the service host asks for a stop
            signal.signal(signal.SIGBREAK, stop)

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

    # -- tasks -------------------------------------------------------------------------

    def _start_task(self, session: Session) -> float:
        """At start: the configured trust root, the policy, then runs a crash left unfinished."""
        PolicyReloader(session.policy_gate, self.config.policy).install_trust_root()
        ensure_identity(session)  # the endpoint's reporting key, made on first start
        self._reload_task(session, file=True, fetch=True)
        active = session.policy_gate.active()
        for run in recover_unfinished(session, active.loaded if active else None):
            log.info("run %s, interrupted earlier, is now %s", run.id, run.status)
        return math.inf

    def _reload_task(self, session: Session, *, file: bool, fetch: bool) -> float:
        """Offer the policy file and/or the collectors' policies to the gate."""
        reloader = PolicyReloader(session.policy_gate, self.config.policy)
        # The reloader logs every outcome and never raises: a bad policy never stops the agent.
        if file and self.config.policy.file is not None:
            reloader.reload_file()
        if fetch and self.config.policy.urls:
            reloader.fetch_all()
        return math.inf

    def _cycle_task(self, session: Session) -> float | None:
        """Scan, plan, apply what is due; seconds until something else becomes due."""
        try:
            report = scan(session, refresh=self.config.agent.refresh)
            plan = plan_for(session, report)
            due = plan.install_now()
            if due and not self.stopping.is_set():
                run = apply_updates(
                    session,
                    due,
                    policy=plan.policy,
                    should_stop=self.stopping.is_set,
                    limits=plan.window_limits(),
                )
                log.info("run %s: %s", run.id, run.status)
            queue_after_cycle(session, report, plan)
            reboot_at = self._pending_reboot(session, plan.policy)
        except PatchdError as e:
            log.error("cycle failed: %s", e)
            return None
        finally:
            self._prune(session)  # whatever the cycle's outcome: a failing endpoint fills too
        upcoming = [
            d.not_before
            for d in plan.decisions
            if d.decision in (Decision.INSTALL_LATER, Decision.DEFERRED) and d.not_before
        ]
        if reboot_at is not None:
            upcoming.append(reboot_at)
        if not upcoming:
            return math.inf
        log.info("next change due at %s", format_time(min(upcoming)))
        return max(0.0, (min(upcoming) - plan.at).total_seconds())

    def _prune(self, session: Session) -> None:
        """Once a day, remove the history the retention settings no longer keep."""
        if self.stopping.is_set():
            return
        from patchd.runs.retention import prune_if_due

        try:
            prune_if_due(session.store, session.state_dir, self.config.retention, session.clock())
        except Exception as e:  # housekeeping never fails a cycle; it is tried again next cycle
            log.warning("history not pruned: %s", e)
            log.debug("history not pruned", exc_info=True)

    def _pending_reboot(self, session: Session, policy: LoadedPolicy | None) -> datetime | None:
        """Reboot for earlier changes if due now; else when a window will allow it."""
        if self.stopping.is_set():
            return None
        pending = reboot_if_pending(session, policy)
        if pending.run is not None:
            log.info("run %s: %s", pending.run.id, pending.run.status)
        elif pending.retry_at is not None:
            log.info("%s (next window %s)", pending.reason, format_time(pending.retry_at))
        return pending.retry_at

    def _cycle(self) -> bool:
        """One cycle; schedule the next. True when all went well."""
        due_in = self._task(self._cycle_task, "cycle")
        self.events.after(REPORT, 0)  # send the cycle's report (and any left from before)
        if due_in is None:
            self.events.after(CYCLE, RETRY_AFTER_FAILURE.total_seconds())
            return False
        spread = random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - jitter, not a secret
        wait = self.config.agent.scan_interval.total_seconds() * spread
        self.events.after(CYCLE, min(wait, due_in))
        return True

    def _report(self) -> None:
        """Send queued reports, making one if the policy's interval passed; set the timer."""
        due_in = self._task(lambda session: report_task(session, self.stopping.is_set), "report")
        if due_in is None:
            due_in = RETRY_AFTER_FAILURE.total_seconds()
        if math.isinf(due_in):
            self.events.cancel(REPORT)  # not enrolled: the next cycle tries again
        else:
            self.events.after(REPORT, due_in)

    def _task(self, work: Task, name: str) -> float | None:
        """Run ``work`` with a session of its own — in a forked worker where possible."""
        self.watchdog.busy(STEP_LIMIT_S)
        try:
            return work(self.session) if self._inline else self._in_worker(work, name)
        finally:
            self.watchdog.beat()
            if self.stopping.is_set():
                # The worker saw the stop request and ended at its next safe step: never
                # inside a package transaction (see docs/install.md).
                log.info("stop requested during the %s: it ended at a safe step", name)

    def _in_worker(self, work: Task, name: str) -> float | None:
        read_end, write_end = os.pipe()
        pid = fork_worker()
        if pid == 0:  # the worker: its own database connection, its own stop signal
            os.close(read_end)
            code = 2
            try:
                signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
                signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                with self.session.renewed() as session:
                    found = work(session)
                times = os.times()  # the worker's own, counted from the fork
                log.info(
                    "%s done: patchd used %.2f s of CPU, the package managers %.2f s",
                    name,
                    times.user + times.system,
                    times.children_user + times.children_system,
                )
                os.write(
                    write_end,
                    json.dumps({"due_in": None if found is None else str(found)}).encode(),
                )
                code = 0
            except BaseException:
                log.exception("the agent's %s worker failed", name)
            finally:
                os._exit(code)  # never run the service's cleanup in the worker
        os.close(write_end)
        self._worker = pid
        try:
            with os.fdopen(read_end, "rb") as pipe:
                answer = pipe.read(MAX_WORKER_ANSWER_BYTES)
            os.waitpid(pid, 0)
        finally:
            self._worker = None
        try:
            due_in = json.loads(answer)["due_in"]
        except (ValueError, KeyError, TypeError):
            return None
        return None if due_in is None else float(due_in)

    def _read_policy(self, *, fetch: bool) -> None:
        """Offer the policy file (and, with ``fetch``, the policy URLs) to the gate; plan again.

        What the file looked like just before it is read is kept: a later recheck reads
        it again only if it changed since.
        """
        self._policy_seen = self._policy_file_state()
        self._task(lambda session: self._reload_task(session, file=True, fetch=fetch), "reload")
        self._schedule_cycle_soon()

    def _recheck_policy_file(self) -> None:
        """Read the policy file if it changed without a file event saying so.

        The watcher sees changes in the file's directory as the kernel reports them; a
        directory swapped by a rename (configuration tools, ``..data`` symlink swaps), a
        network file system or a watch the kernel dropped reports nothing. The file's and
        its signatures' metadata, compared with what was last read, still tell.
        """
        if self.config.policy.file is None:  # a reload removed it: nothing to watch
            return
        if self._policy_file_state() != self._policy_seen:
            log.info("%s changed without a file event; reading it", self.config.policy.file)
            self._read_policy(fetch=False)
        self.events.after(RECHECK, self.config.policy.file_recheck_s)

    def _policy_file_state(self) -> PolicyFileState:
        path = self.config.policy.file
        if path is None:
            return None
        return (state_of(path), state_of(detached_signature_path(path)))

    def _schedule_fetch(self) -> None:
        if self.config.policy.urls:
            self.events.after(FETCH, self.config.policy.fetch_interval.total_seconds())

    def _schedule_cycle_soon(self) -> None:
        """A new policy may make something due at once: plan again without waiting."""
        self.events.after(CYCLE, 0)

    def _summary(self) -> str:
        status = self.session.policy_gate.status()
        if status["name"]:
            policy = f"policy {status['name']} v{status['version']} {status['state']}"
        else:
            policy = "no policy"
        due = self.events.due_in(CYCLE)
        return f"{policy}, next cycle in {int(due)} s" if due is not None else policy


def fork_worker() -> int:
    """``os.fork()``, with the service's objects left out of the worker's garbage collections.

    A worker shares the service's memory until it writes to a page. A collection in the
    worker would write to every object the service holds (each one's collector header),
    copying most of the service's memory page by page — a few milliseconds of every
    cycle, and the memory itself. Frozen before the fork (``gc.freeze``, which the Python
    documentation recommends for this), those objects are never visited by the worker's
    collector; the service takes them back into its own collections at once.
    """
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        raise
    if pid != 0:
        gc.unfreeze()
    return pid


def _preload(session: Session) -> None:
    """Import and read once, in the service, what every cycle's worker uses.

    A forked worker shares these modules, and the shipped end-of-life table, with the
    service instead of loading them again each cycle: the cycle's own CPU stays a small
    share of the package manager's.
    """
    for name in PRELOADED:
        importlib.import_module(name)
    from patchd.discovery.eol import load_table

    with contextlib.suppress(ValueError):  # a broken table is reported by each discovery
        load_table()  # cached for the process: ~7 ms of parsing and checking a cycle
    for backend in session.backends:  # probing imports each backend's modules
        backend.probe()
