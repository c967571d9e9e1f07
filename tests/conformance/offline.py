"""What each backend's offline fixture provides to :mod:`tests.conformance.test_offline`.

For package managers that cannot run here, the interface's promises that do not need
the real tool are still checked: a recording fake of the process gateway answers the
manager's commands in their captured formats, and a small mutable "database" stands in
for the manager's own, so the suite can make the manager claim success without
installing anything and check that the backend believes the database, not the exit
status. Adding a backend is one :class:`OfflineHarness` and one entry in the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from patchd.backends.base import Backend
from tests.backends.fakeprocess import CannedCommands
from tests.conformance.harness import Expected


@dataclass
class OfflineFixture:
    """A backend whose manager is a recording fake, and the state behind the fake."""

    backend: Backend
    commands: CannedCommands
    update: Expected  # an update the canned listing offers
    versions: Callable[[], dict[str, str]]  # name -> version in the fake database
    # True: the manager's install command moves the database to the new version;
    # False: it exits 0 and changes nothing (the lie the backend must not believe).
    manager_installs: Callable[[bool], None]
    # What prepare_rollback must say for ``update``; True: after an apply, the manager's
    # way back (answered by the fake) returns the database to ``update.old``.
    rollback_available: bool


@dataclass(frozen=True)
class OfflineHarness:
    name: str  # the registered backend
    build: Callable[[Path, pytest.MonkeyPatch], OfflineFixture]
    variant: str = ""  # which tool behind the backend, where one backend drives several

    @property
    def test_id(self) -> str:
        return f"{self.name}-{self.variant}" if self.variant else self.name
