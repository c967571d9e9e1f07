"""The facts patchd works with: installed packages, available updates and their risk.

These are plain frozen values. Backends produce them, the state store records them,
the command line renders them; ``as_dict`` gives the stable JSON form that
``patchd scan --json`` and the signed reports carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Classification(StrEnum):
    """What kind of change an update is, from the package manager's own metadata."""

    SECURITY = "security"
    BUGFIX = "bugfix"
    ENHANCEMENT = "enhancement"
    OTHER = "other"


class Severity(StrEnum):
    """How urgent an update is; ``unknown`` when the source does not say."""

    CRITICAL = "critical"
    IMPORTANT = "important"
    MODERATE = "moderate"
    LOW = "low"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Higher is more urgent; ``unknown`` ranks lowest."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.UNKNOWN: 0,
    Severity.LOW: 1,
    Severity.MODERATE: 2,
    Severity.IMPORTANT: 3,
    Severity.CRITICAL: 4,
}


class UpdateState(StrEnum):
    """Whether the package manager would install an update now.

    ``held``: pinned by the administrator in the package manager (``apt-mark hold``).
    ``phased``: the distribution is rolling it out gradually and this machine is not in
    the current phase.
    """

    AVAILABLE = "available"
    HELD = "held"
    PHASED = "phased"


@dataclass(frozen=True)
class InstalledPackage:
    """A package as the native package database records it."""

    name: str
    version: str
    arch: str
    backend: str
    status: str = "installed"  # the database's own word for unfinished states

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "arch": self.arch,
            "backend": self.backend,
            "status": self.status,
        }


@dataclass(frozen=True)
class UpdateSource:
    """Where an update comes from: the repository's origin, label and suite."""

    origin: str = ""
    label: str = ""
    suite: str = ""
    codename: str = ""
    site: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "origin": self.origin,
            "label": self.label,
            "suite": self.suite,
            "codename": self.codename,
            "site": self.site,
        }

    def __str__(self) -> str:
        parts = [p for p in (self.origin, self.label) if p]
        where = "/".join(dict.fromkeys(parts)) or self.site or "local"
        return f"{where}:{self.suite}" if self.suite else where


@dataclass(frozen=True)
class Advisory:
    """Security facts about one update version: CVE ids and severity, and where they came from."""

    cves: tuple[str, ...]
    severity: Severity
    origin: str  # e.g. "changelog"


@dataclass(frozen=True)
class Update:
    """One package that has a newer version available, classified by risk."""

    backend: str
    name: str
    arch: str
    installed_version: str
    available_version: str
    classification: Classification
    severity: Severity = Severity.UNKNOWN
    cves: tuple[str, ...] = ()
    source: UpdateSource = field(default_factory=UpdateSource)
    reboot_required: bool = False
    state: UpdateState = UpdateState.AVAILABLE
    phased_percentage: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Stable identifier: ``backend:name:arch=version`` (what policies approve)."""
        return f"{self.backend}:{self.name}:{self.arch}={self.available_version}"

    @property
    def package_key(self) -> tuple[str, str, str]:
        """Identifies the package regardless of version."""
        return (self.backend, self.name, self.arch)

    def with_advisory(self, advisory: Advisory) -> Update:
        """This update with CVE ids and severity taken from ``advisory`` where it knows them."""
        cves = tuple(dict.fromkeys((*self.cves, *advisory.cves)))
        severity = advisory.severity if advisory.severity is not Severity.UNKNOWN else self.severity
        return replace(self, cves=cves, severity=severity)

    def change(self) -> PackageChange:
        """The package change that installs this update."""
        return PackageChange(
            self.backend, self.name, self.arch, self.installed_version, self.available_version
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "arch": self.arch,
            "installed_version": self.installed_version,
            "available_version": self.available_version,
            "backend": self.backend,
            "classification": self.classification.value,
            "severity": self.severity.value,
            "cves": list(self.cves),
            "source": self.source.as_dict(),
            "reboot_required": self.reboot_required,
            "state": self.state.value,
            "phased_percentage": self.phased_percentage,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class PackageChange:
    """One package moving from one version to another, as a run applies or undoes it."""

    backend: str
    name: str
    arch: str
    from_version: str
    to_version: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.backend, self.name, self.arch)

    def reversed(self) -> PackageChange:
        return PackageChange(self.backend, self.name, self.arch, self.to_version, self.from_version)
