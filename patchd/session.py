"""One invocation's view of the endpoint: configuration, target, backends and state.

Everything is looked up lazily and once, so a command pays only for what it uses
(``patchd status`` never starts a package manager).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from patchd import process
from patchd.backends import select_backends
from patchd.backends.base import Backend, BackendContext
from patchd.config import AgentConfig
from patchd.discovery.osinfo import OsInfo, read_os_info
from patchd.errors import PatchdError, UsageError
from patchd.platforms import OsProfile, profile_for
from patchd.target import Target
from patchd.timeutil import utcnow

if TYPE_CHECKING:
    from patchd.discovery.inventory import BackendStatus
    from patchd.discovery.reboot import RebootState
    from patchd.policy.gate import PolicyGate
    from patchd.state.store import StateStore

log = logging.getLogger(__name__)


class Session:
    """The endpoint as one command sees it. Close it (or use ``with``) when done."""

    def __init__(
        self,
        config: AgentConfig,
        target: Target,
        state_dir: Path,
        clock: Callable[[], datetime] = utcnow,
        *,
        probed: Sequence[Backend] = (),
    ) -> None:
        self.config = config
        self.target = target
        self.state_dir = state_dir
        self.clock = clock
        self._store: StateStore | None = None
        self._selected: tuple[list[Backend], list[str]] | None = None
        # Backends an earlier session found usable, in a worker forked from its process:
        # a scan starts their listings before anything else (see renewed()).
        self._probed = list(probed)

    def renewed(self) -> Session:
        """A new session of the same endpoint, for a worker forked from this one's process.

        Like any new session it reads the OS release and probes every backend afresh,
        and its backends are new objects. But a scan starts its listings earlier: first,
        before anything is read, through the backends this session found usable (in a
        forked worker, its own copies of them); then each new backend that starts exactly
        the same command takes it as it runs (:func:`patchd.process.started_ahead`: the
        commands an old backend started are offered to the new one of its name), and
        what none takes — a backend gone, a command that changed — is stopped. The
        package managers start a few milliseconds sooner and the probes run while they
        list. Called in this session's own process, its backends would hold commands
        another session owns: only the agent's workers use it.
        """
        probed = self._selected[0] if self._selected is not None else []
        return Session(self.config, self.target, self.state_dir, self.clock, probed=probed)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @cached_property
    def os_info(self) -> OsInfo:
        return read_os_info(self.target)

    @cached_property
    def profile(self) -> OsProfile:
        return profile_for(self.os_info.id, self.os_info.id_like)

    def _context_for(self, name: str) -> BackendContext:
        return BackendContext(
            target=self.target,
            profile=self.profile,
            work_dir=self.state_dir / "work",
            settings=self.config.backend_settings(name),
        )

    def _select(
        self, found: Callable[[Backend], None] | None = None
    ) -> tuple[list[Backend], list[str]]:
        """Probe the backends once: the usable ones, and a problem line for each broken one."""
        if self._selected is None:
            self._selected = select_backends(
                self.profile, self._context_for, self.config.backends or None, found
            )
        return self._selected

    def start_scans(self) -> None:
        """Start every usable backend's listing, each as soon as its probe finds it.

        The listings then run while the scan does the rest of its work; the first one
        starts before the other backends are probed. In a session :meth:`renewed` from
        another, they start before any probe.
        """
        ahead = self._start_ahead()  # by backend: each new one is offered its own
        started: list[Backend] = []

        def start(backend: Backend) -> None:
            if backend not in started:
                started.append(backend)  # first: a start that fails half-way is stopped too
            with process.started_ahead(ahead.pop(backend.name, ())):  # the rest: stopped
                backend.start_scan()  # a listing already started is not started again

        try:
            self._select(found=start)
            for backend in self.backends:  # probed earlier, or configured: start them now
                start(backend)
        except BaseException:
            _stop_scans(started)  # no scan will collect them
            raise
        finally:
            _stop_ahead(ahead)  # those of backends gone

    def _start_ahead(self) -> dict[str, list[process.RunningCommand]]:
        """Start the listings of the backends an earlier session found (see :meth:`renewed`)."""
        probed, self._probed = self._probed, []  # once: then they are this session's to take
        ahead: dict[str, list[process.RunningCommand]] = {}
        try:
            for backend in probed:
                # A start that fails is left to the new backend's probe to explain.
                with (
                    process.recording_starts() as ahead[backend.name],
                    contextlib.suppress(PatchdError),
                ):
                    backend.start_scan()
        except BaseException:
            _stop_ahead(ahead)
            raise
        return ahead

    def stop_scans(self) -> None:
        """Stop every listing started and not collected; nothing happens if there is none."""
        if self._selected is not None:
            _stop_scans(self._selected[0])

    @property
    def backends(self) -> list[Backend]:
        """The usable backends (broken ones are in :attr:`backend_problems`)."""
        return self._select()[0]

    @property
    def backend_problems(self) -> list[str]:
        return self._select()[1]

    def backend(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise UsageError(f"the {name} backend is not in use on {self.target}")

    def backend_statuses(self) -> list[BackendStatus]:
        from patchd.discovery.inventory import BackendStatus

        statuses = [
            BackendStatus(b.name, b.probe().status.value, b.probe().detail) for b in self.backends
        ]
        for problem in self.backend_problems:
            name, _, rest = problem.partition(": ")
            status, _, detail = rest.partition(": ")
            statuses.append(BackendStatus(name, status, detail))
        return statuses

    def manager_reboot_reasons(self) -> tuple[str, ...]:
        """Every usable backend's own reboot-pending signals (Windows Update's)."""
        return tuple(r for b in self.backends for r in b.pending_reboot_reasons())

    def reboot_state(self) -> RebootState:
        """Whether the target needs a reboot: discovery's signals and the managers' own."""
        from patchd.discovery.reboot import reboot_state, with_reasons

        found = reboot_state(self.target, self.profile, self.os_info.kernel)
        return with_reasons(found, self.manager_reboot_reasons())

    @cached_property
    def policy_gate(self) -> PolicyGate:
        """This endpoint's policy acceptance path and the policy in force."""
        from patchd.policy.gate import PolicyGate

        return PolicyGate(self.state_dir, self.store, self.clock)

    @property
    def store(self) -> StateStore:
        if self._store is None:
            from patchd.state.store import StateStore  # sqlite3: only for commands that record

            self._store = StateStore.open(self.state_dir)
        return self._store


def _stop_ahead(ahead: dict[str, list[process.RunningCommand]]) -> None:
    process.stop_all(*(command for commands in ahead.values() for command in commands))


def _stop_scans(backends: list[Backend]) -> None:
    for backend in backends:
        try:
            backend.stop_scan()
        except Exception:  # one that cannot be stopped must not keep the others running
            log.warning("%s: its listing could not be stopped", backend.name, exc_info=True)
