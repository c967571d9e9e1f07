"""The interface every package-manager backend implements, as a template.

The public methods here (:meth:`Backend.scan`, :meth:`Backend.apply`,
:meth:`Backend.rollback`, ...) own the flow: they check the backend is usable, log,
time, judge results from the package database, and turn stray exceptions into
:class:`BackendError`. Subclasses fill in the ``_steps``. A subclass that misses one
cannot be instantiated, so the gap shows at start-up, not half-way through a patch.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from patchd.errors import (
    BackendError,
    BackendUnavailable,
    CommandError,
    CommandTimeout,
    PatchdError,
)
from patchd.models import Advisory, InstalledPackage, PackageChange, Update
from patchd.platforms import OsProfile
from patchd.target import Target
from patchd.transcript import Transcript

log = logging.getLogger(__name__)

T = TypeVar("T")


class ProbeStatus(StrEnum):
    """Whether a backend can be used here."""

    PRESENT = "present"
    ABSENT = "absent"  # its tools are not installed: skipped quietly
    BROKEN = "broken"  # installed but not working: reported


@dataclass(frozen=True)
class Probe:
    """The result of looking for a backend's tools."""

    status: ProbeStatus
    detail: str = ""
    version: str | None = None


@dataclass(frozen=True)
class BackendContext:
    """Everything a backend needs to know about where it works."""

    target: Target
    profile: OsProfile
    work_dir: Path  # patchd's own scratch space for this backend (state dir)
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScanResult:
    """Available updates, and anything the scan could not make sense of."""

    updates: tuple[Update, ...]
    warnings: tuple[str, ...] = ()


class Outcome(StrEnum):
    """What happened to one package change, judged from the package database."""

    DONE = "done"  # the package is now at the target version
    FAILED = "failed"  # it is not
    SKIPPED = "skipped"  # not attempted (dry run, or nothing to do)


@dataclass(frozen=True)
class ChangeResult:
    """The verdict on one package change."""

    change: PackageChange
    outcome: Outcome
    found_version: str | None  # what the database records after the transaction
    detail: str = ""


@dataclass(frozen=True)
class TransactionResult:
    """The verdict on a whole transaction, with what the package manager reported."""

    results: tuple[ChangeResult, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.outcome is not Outcome.FAILED for r in self.results)


@dataclass(frozen=True)
class RollbackSource:
    """How a change can be undone: a version the repositories still carry, or a kept file."""

    change: PackageChange
    available: bool
    kept_file: Path | None = None
    detail: str = ""


class Backend(ABC):
    """A package manager, seen through one interface.

    Subclasses set :attr:`name` and implement the ``_`` methods. Every public method may
    raise :class:`BackendUnavailable` (the tools are absent or broken) or
    :class:`BackendError`; commands that fail raise the process gateway's errors.
    """

    name: ClassVar[str]
    # Whether :meth:`advisories` can add to what the listing says (apt: its changelogs).
    # A scan asks such a backend about the versions it has no cached answer for, and
    # caches what it finds; the other backends it does not ask.
    looks_up_advisories: ClassVar[bool] = False

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self._probe_result: Probe | None = None

    # -- public flow -----------------------------------------------------------------

    def probe(self) -> Probe:
        """Look for the backend's tools once; say whether they are absent or broken."""
        if self._probe_result is None:
            try:
                self._probe_result = self._probe()
            except PatchdError as e:
                self._probe_result = Probe(ProbeStatus.BROKEN, str(e))
            log.debug(
                "%s backend: %s %s",
                self.name,
                self._probe_result.status.value,
                self._probe_result.detail,
            )
        return self._probe_result

    def require(self) -> None:
        """Raise :class:`BackendUnavailable` unless the backend is present and working."""
        probe = self.probe()
        if probe.status is not ProbeStatus.PRESENT:
            raise BackendUnavailable(
                f"the {self.name} backend is {probe.status.value}: {probe.detail}",
                hint="check the package manager works on its own, and --root",
            )

    def installed_packages(self) -> list[InstalledPackage]:
        """Every package the native database records as present."""
        self.require()
        return self._guard("list installed packages", self._installed_packages)

    def start_scan(self) -> None:
        """Start listing updates in the background, so other work overlaps it.

        A later :meth:`scan` (without ``refresh``) collects the result. A listing already
        started is not started again.
        """
        self.require()
        self._guard("start listing updates", self._start_listing)

    def stop_scan(self) -> None:
        """Stop a listing :meth:`start_scan` started, when no scan will collect it."""
        self._stop_listing()

    def scan(self, *, refresh: bool = False, transcript: Transcript | None = None) -> ScanResult:
        """Updates available now; with ``refresh``, first update the repository metadata."""
        self.require()
        started = time.monotonic()
        if refresh:
            self._guard(
                "refresh repository metadata", lambda: self._refresh(transcript or Transcript())
            )
        result = self._guard("list updates", self._list_updates)
        log.debug(
            "%s: %d updates in %.2f s", self.name, len(result.updates), time.monotonic() - started
        )
        return result

    def pending_reboot_reasons(self) -> tuple[str, ...]:
        """Why the package manager itself says the system waits for a restart, if it does.

        Where the manager keeps that state of its own (Windows Update's servicing stack),
        a pending reboot shows up with the distribution's markers. Never raises: a manager
        that cannot be asked is logged and counted as saying nothing.
        """
        try:
            self.require()
            return self._guard("read the pending reboot state", self._pending_reboot_reasons)
        except PatchdError as e:
            log.warning("%s: pending reboot state not read: %s", self.name, e)
            return ()

    def advisories(self, updates: Sequence[Update]) -> dict[str, Advisory]:
        """Security facts the backend can find locally for ``updates``, by update id.

        Cheap sources only (files already on disk); an update it knows nothing about is
        left out. Never raises for one unreadable source: it is skipped.
        """
        self.require()
        return self._guard("read advisories", lambda: self._advisories(updates))

    def repair(self, transcript: Transcript) -> list[str]:
        """Finish or repair an interrupted package-manager run; say what was done."""
        self.require()
        return self._guard("repair an interrupted run", lambda: self._repair(transcript))

    def prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        """Before applying, secure a way back for each change (keep the old package)."""
        self._check_changes(changes)
        self.require()
        return self._guard(
            "prepare rollback", lambda: self._prepare_rollback(changes, keep_dir, transcript)
        )

    def apply(self, changes: Sequence[PackageChange], transcript: Transcript) -> TransactionResult:
        """Move each package to its ``to_version``; the verdict comes from the database."""
        return self._transact(changes, transcript, {}, downgrade=False)

    def rollback(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path] | None = None,
    ) -> TransactionResult:
        """Return each package to its ``to_version`` (an older one), from a kept file if given."""
        return self._transact(changes, transcript, kept_files or {}, downgrade=True)

    # -- the template ----------------------------------------------------------------

    def _transact(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> TransactionResult:
        self._check_changes(changes)
        self.require()
        if not changes:
            return TransactionResult(results=())
        # A rollback replaces unfinished packages itself; an upgrade needs a sound database.
        notes = [] if downgrade else list(self.repair(transcript))
        action = "downgrade" if downgrade else "upgrade"
        log.info("%s: %s %d package(s)", self.name, action, len(changes))
        failure: CommandError | None = None
        try:
            notes += self._guard(
                action, lambda: self._install(changes, transcript, kept_files, downgrade=downgrade)
            )
        except CommandTimeout:
            raise
        except CommandError as e:
            # The package manager's exit status is not the verdict; the database is.
            failure = e
            notes.append(
                f"{self.name} reported a failure (exit status {e.returncode}): {e.summary}"
            )
        reasons = self._failure_reasons(failure.output) if failure is not None else {}
        found = self._guard("read the package database", self._installed_state)
        results = []
        for change in changes:
            version, status = found.get((change.name, change.arch), (None, "not-installed"))
            if version == change.to_version and status == "installed":
                results.append(ChangeResult(change, Outcome.DONE, version))
                continue
            state = f"{version} ({status})" if version else "not installed"
            detail = f"database records {state}, expected {change.to_version} (installed)"
            reason = reasons.get(change.name) or (failure.summary if failure is not None else "")
            if reason:
                detail += f": {reason}"
            results.append(ChangeResult(change, Outcome.FAILED, version, detail))
        return TransactionResult(results=tuple(results), notes=tuple(notes))

    def _check_changes(self, changes: Sequence[PackageChange]) -> None:
        seen = set()
        for change in changes:
            if change.backend != self.name:
                raise BackendError(f"{change.name} belongs to {change.backend}, not {self.name}")
            if change.key in seen:
                raise BackendError(f"{change.name}:{change.arch} appears twice in one transaction")
            seen.add(change.key)

    def _guard(self, what: str, step: Callable[[], T]) -> T:
        try:
            return step()
        except PatchdError:
            raise
        except Exception as e:
            raise BackendError(f"{self.name}: could not {what}: {type(e).__name__}: {e}") from e

    def _installed_state(self) -> dict[tuple[str, str], tuple[str, str]]:
        return {(p.name, p.arch): (p.version, p.status) for p in self._installed_packages()}

    # -- steps for subclasses --------------------------------------------------------

    @abstractmethod
    def _probe(self) -> Probe:
        """Look for the tools: absent (not installed) or broken (installed, not working)."""

    @abstractmethod
    def _installed_packages(self) -> list[InstalledPackage]:
        """Read the native package database."""

    @abstractmethod
    def _list_updates(self) -> ScanResult:
        """List available updates from already-fetched metadata (no network)."""

    @abstractmethod
    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        """Run the package manager to reach the target versions; return notes."""

    def _start_listing(self) -> None:
        """Begin the slow part of :meth:`_list_updates` in the background. Default: nothing."""

    def _stop_listing(self) -> None:
        """Stop what :meth:`_start_listing` began, if it still runs. Default: nothing."""

    def _failure_reasons(self, output: str) -> dict[str, str]:
        """Package name → why the manager says it failed, from its output. Default: none."""
        return {}

    def _pending_reboot_reasons(self) -> tuple[str, ...]:
        """The manager's own reboot-pending signals. Default: it keeps none."""
        return ()

    def _advisories(self, updates: Sequence[Update]) -> dict[str, Advisory]:
        """Security facts from local sources. Default: the scan already carries them."""
        return {}

    def _refresh(self, transcript: Transcript) -> None:
        """Fetch fresh repository metadata. Default: the manager does it itself."""

    def _repair(self, transcript: Transcript) -> list[str]:
        """Detect and repair an interrupted run. Default: nothing to repair."""
        return []

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        """Secure a way back. Default: none, which the planner sees before applying."""
        return [RollbackSource(c, available=False, detail="no rollback path") for c in changes]
