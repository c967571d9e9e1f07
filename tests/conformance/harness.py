"""What every backend's test fixture provides to the conformance suite.

Each backend whose tool runs here contributes one :class:`Harness`: it builds an
isolated root in which two packages are installed at an old version and a local
repository offers one *security* update (with CVE ids and a severity in the manager's
own metadata, where the manager has such metadata) and one *ordinary* update. A manager
that publishes no security metadata at all (flatpak) still takes part: its fixture says
``has_security_metadata=False``, and the suite then checks that patchd classifies
nothing as security and invents no CVE ids or severities. The old
versions stay reachable so a rollback has somewhere to go. ``versions()`` reads the
root's package database with the native tool, independently of patchd, so the suite
checks patchd against the package manager rather than against itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from patchd.backends.base import Backend


@dataclass(frozen=True)
class Expected:
    """One package of the fixture: its name and the versions before and after."""

    name: str
    old: str
    new: str
    arch: str | None = None  # None: whatever the backend reports


@dataclass
class Fixture:
    """A built root, the backend pointed at it, and what the suite should find there."""

    backend: Backend
    # An update the manager's metadata marks as security; without security metadata,
    # simply the update the apply and rollback tests move.
    security: Expected
    ordinary: Expected  # an update it does not
    versions: Callable[[], dict[str, str]]  # installed name -> version, read natively
    cves: tuple[str, ...] = ()  # CVE ids the security update carries (empty: none known)
    severity_known: bool = True  # the metadata gives the security update a severity
    has_security_metadata: bool = True  # False: the manager publishes none (flatpak)
    # The host's own package-database files (byte-identical afterwards) or directories
    # (the same entries afterwards); the suite checks they do not move.
    host_state: Sequence[Path] = field(default_factory=tuple)


@dataclass(frozen=True)
class Harness:
    """How to build a :class:`Fixture` for one backend."""

    name: str
    tools: tuple[str, ...]  # programs (or absolute paths) the fixture needs
    build: Callable[[Path], Fixture]  # the argument is an empty, per-test directory
    # A backend in the same place whose tool cannot be found (probe must say absent).
    absent: Callable[[Path], Backend]
