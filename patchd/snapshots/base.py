"""The interface every snapshot provider implements, as a template.

The public methods of :class:`SnapshotProvider` own the flow: they check the provider
can snapshot the target, validate names, log, and turn stray exceptions into
:class:`SnapshotError`; subclasses fill in ``_probe``, ``_create``, ``_restore``,
``_delete`` and ``_list``. A provider only ever lists, prunes or deletes patchd's own
snapshots (recognised by name and metadata), never an administrator's.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, TypeVar

from patchd import process
from patchd.backends.base import ProbeStatus
from patchd.errors import PatchdError, ToolNotFoundError
from patchd.models import InstalledPackage, PackageChange
from patchd.process import CommandResult
from patchd.target import Target
from patchd.timeutil import format_time, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")
NAME_PREFIX = "patchd-"  # every snapshot patchd takes is named patchd-<run id>
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # safe in any tool's names
MAX_LABEL_CHARS = 200
MAX_SNAPSHOTS_LISTED = 1000  # per provider and target; more is a runaway, not retention
COMMAND_TIMEOUT_S = 600.0  # a snapshot or rollback of a large volume can take minutes
PROBE_TIMEOUT_S = 30.0  # a hung tool must not hold up the choice of providers


class SnapshotError(PatchdError):
    """A snapshot provider could not do what was asked."""


class SnapshotUnavailable(SnapshotError):
    """The provider is absent, broken, or cannot snapshot this target's root."""


class SnapshotRequired(SnapshotError):
    """The policy requires a filesystem snapshot and no provider can take one.

    Raised before anything changes, so the patch run does not start.
    """


class CommandRunner(Protocol):
    """How a provider runs programs: :func:`patchd.process.run` (tests replay captures)."""

    def __call__(
        self, argv: Sequence[str], *, timeout_s: float, ok_codes: Sequence[int] = ...
    ) -> CommandResult: ...


@dataclass(frozen=True)
class SnapshotContext:
    """Where providers work: the target, patchd's state directory, the time and the tools."""

    target: Target
    state_dir: Path
    clock: Callable[[], datetime] = utcnow
    # The package backend's reader of installed packages (package-state needs it).
    installed: Callable[[], list[InstalledPackage]] | None = None
    run: CommandRunner = process.run
    platform: str = sys.platform
    timeout_s: float = COMMAND_TIMEOUT_S


@dataclass(frozen=True)
class SnapshotProbe:
    """Whether a provider's tools are there, and whether they can snapshot the target root."""

    status: ProbeStatus
    detail: str = ""
    covers_target: bool = False
    version: str | None = None

    @property
    def usable(self) -> bool:
        return self.status is ProbeStatus.PRESENT and self.covers_target

    def __str__(self) -> str:
        """``present, covers the target: ...`` or ``absent: zfs is not installed``."""
        if self.status is not ProbeStatus.PRESENT:
            return f"{self.status.value}: {self.detail}"
        covers = "covers the target" if self.covers_target else "does not cover the target"
        return f"present, {covers}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Snapshot:
    """One snapshot patchd took: which provider, its native id, when, and for which run."""

    provider: str
    id: str
    created_at: datetime
    label: str
    run_id: str
    details: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "id": self.id,
            "created_at": format_time(self.created_at),
            "label": self.label,
            "run_id": self.run_id,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class RestoreOutcome:
    """What a restore did.

    ``reboot_required``: the restored state takes effect at the next boot. ``manual``:
    patchd could not restore by itself; ``detail`` says what an administrator must do.
    ``package_changes``: package-state restores leave the downgrades to the caller.
    """

    snapshot: Snapshot
    reboot_required: bool
    detail: str
    manual: bool = False
    package_changes: tuple[PackageChange, ...] = ()


class SnapshotProvider(ABC):
    """A way of taking snapshots of the target, seen through one interface.

    Subclasses set :attr:`name` (and :attr:`filesystem`) and implement the ``_`` steps.
    Every public method but :meth:`probe` raises :class:`SnapshotUnavailable` unless the
    probe says the provider can snapshot the target, and :class:`SnapshotError` (or the
    process gateway's errors) when a step fails.
    """

    name: ClassVar[str]
    filesystem: ClassVar[bool] = True  # False only for package-state

    def __init__(self, context: SnapshotContext) -> None:
        self.context = context
        self._probe_result: SnapshotProbe | None = None
        self._probing = False

    # -- public flow -----------------------------------------------------------------

    def probe(self) -> SnapshotProbe:
        """Look once: absent (tools missing), broken (failing), or present and covering or not."""
        if self._probe_result is None:
            self._probing = True
            try:
                self._probe_result = self._probe()
            except ToolNotFoundError as e:
                self._probe_result = SnapshotProbe(ProbeStatus.ABSENT, str(e.message))
            except PatchdError as e:
                self._probe_result = SnapshotProbe(ProbeStatus.BROKEN, str(e))
            except Exception as e:
                self._probe_result = SnapshotProbe(ProbeStatus.BROKEN, f"{type(e).__name__}: {e}")
            finally:
                self._probing = False
            log.debug("%s snapshots: %s", self.name, self._probe_result)
        return self._probe_result

    def require(self) -> None:
        """Raise :class:`SnapshotUnavailable` unless this provider can snapshot the target."""
        if not self.probe().usable:
            raise SnapshotUnavailable(
                f"{self.name} snapshots of {self.context.target} are unavailable: {self.probe()}"
            )

    def create(self, label: str, run_id: str) -> Snapshot:
        """Take a snapshot for run ``run_id``; raises :class:`SnapshotError` on bad names."""
        if not RUN_ID_PATTERN.match(run_id):
            raise SnapshotError(f"run id {run_id!r} cannot name a snapshot")
        if len(label) > MAX_LABEL_CHARS or not label.isprintable():
            raise SnapshotError(f"snapshot label must be printable, at most {MAX_LABEL_CHARS}")
        self.require()
        started = time.monotonic()
        snapshot = self._guard("create a snapshot", lambda: self._create(label, run_id))
        log.info("%s snapshot %s in %.1f s", self.name, snapshot.id, time.monotonic() - started)
        return snapshot

    def restore(self, snapshot: Snapshot) -> RestoreOutcome:
        """Return the target to ``snapshot``; see each provider for what that means.

        Raises :class:`SnapshotError` unless ``snapshot`` is one of :meth:`list`'s: the
        provider acts on what it lists now, never on details the caller carries.
        """
        known = self._listed(snapshot)
        outcome = self._guard("restore a snapshot", lambda: self._restore(known))
        log.info("%s: restored %s: %s", self.name, known.id, outcome.detail)
        return outcome

    def delete(self, snapshot: Snapshot) -> None:
        """Delete one of patchd's snapshots (:class:`SnapshotError` for anyone else's)."""
        self._remove(self._listed(snapshot))

    def list(self) -> builtins.list[Snapshot]:
        """patchd's own snapshots of the target, oldest first (others' are never listed)."""
        self.require()
        found = self._guard("list snapshots", self._list)
        if len(found) > MAX_SNAPSHOTS_LISTED:
            raise SnapshotError(f"{self.name}: more than {MAX_SNAPSHOTS_LISTED} snapshots")
        mine = [s for s in found if s.provider == self.name]
        return sorted(mine, key=lambda s: s.created_at)  # stable: ties keep native order

    def prune(self, keep: int) -> builtins.list[Snapshot]:
        """Delete patchd's oldest snapshots beyond the newest ``keep``; return those deleted.

        Tries every one; raises :class:`SnapshotError` naming those it could not delete.
        """
        if keep < 1:
            raise SnapshotError(f"retention must keep at least 1 snapshot, not {keep}")
        doomed = self.list()[:-keep]
        deleted, failures = [], []
        for snapshot in doomed:
            try:
                self._remove(snapshot)
                deleted.append(snapshot)
            except PatchdError as e:
                failures.append(f"{snapshot.id}: {e}")
        if failures:
            raise SnapshotError(f"{self.name}: could not prune " + "; ".join(failures))
        return deleted

    # -- helpers for subclasses ------------------------------------------------------

    def run(self, argv: Sequence[str], *, ok_codes: Sequence[int] = (0,)) -> CommandResult:
        """Run a tool with the context's runner and timeout (``PROBE_TIMEOUT_S`` in probes)."""
        timeout_s = self.context.timeout_s
        if self._probing:
            timeout_s = min(timeout_s, PROBE_TIMEOUT_S)
        return self.context.run(argv, timeout_s=timeout_s, ok_codes=ok_codes)

    def _listed(self, snapshot: Snapshot) -> Snapshot:
        if snapshot.provider == self.name:
            for known in self.list():
                if known.id == snapshot.id:
                    return known
        raise SnapshotError(
            f"{snapshot.provider} snapshot {snapshot.id} is not one of patchd's {self.name} "
            f"snapshots of {self.context.target}"
        )

    def _remove(self, snapshot: Snapshot) -> None:
        self._guard("delete a snapshot", lambda: self._delete(snapshot))
        log.info("%s: deleted snapshot %s", self.name, snapshot.id)

    def _guard(self, what: str, step: Callable[[], T]) -> T:
        try:
            return step()
        except PatchdError:
            raise
        except Exception as e:
            raise SnapshotError(f"{self.name}: could not {what}: {type(e).__name__}: {e}") from e

    # -- steps for subclasses --------------------------------------------------------

    @abstractmethod
    def _probe(self) -> SnapshotProbe:
        """Find the tools and whether they cover the target root (may raise to say broken)."""

    @abstractmethod
    def _create(self, label: str, run_id: str) -> Snapshot:
        """Take the snapshot (name and label are validated)."""

    @abstractmethod
    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        """Put the target back as ``snapshot`` recorded it."""

    @abstractmethod
    def _delete(self, snapshot: Snapshot) -> None:
        """Delete ``snapshot``."""

    @abstractmethod
    def _list(self) -> builtins.list[Snapshot]:
        """patchd's snapshots of the target, in the provider's creation order."""


def resolved_root(target: Target) -> Path:
    """The target root with symlinks resolved, as mount tables and tools name it."""
    return Path(os.path.realpath(target.root))
