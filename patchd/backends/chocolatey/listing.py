"""Parsers for Chocolatey's ``--limit-output`` (``-r``) lines: fields separated by ``|``.

``choco outdated -r`` prints ``name|installed|available|pinned``; ``choco list -r``
(Chocolatey 2) and ``choco list --local-only -r`` (Chocolatey 1) print ``name|version``;
``choco search NAME --exact --all-versions -r`` prints ``name|version`` per version.
Anything else on standard output (warnings) is not a record and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from patchd.backends.native import check_count


@dataclass(frozen=True)
class OutdatedPackage:
    """One line of ``choco outdated -r``."""

    name: str
    installed: str
    available: str
    pinned: bool


def _records(text: str, fields: int) -> list[list[str]]:
    found = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == fields and all(parts[:2]):
            found.append(parts)
    check_count(len(found), "choco")
    return found


def parse_outdated(text: str) -> list[OutdatedPackage]:
    """Packages with a newer version. Chocolatey 0.10 also listed up-to-date ones
    (installed equal to available); those are left out."""
    return [
        OutdatedPackage(name, installed, available, pinned.strip().lower() == "true")
        for name, installed, available, pinned in _records(text, 4)
        if installed != available
    ]


def parse_versions(text: str) -> list[tuple[str, str]]:
    """``(name, version)`` pairs of ``choco list -r`` or ``choco search -r``."""
    return [(name, version) for name, version in _records(text, 2)]
