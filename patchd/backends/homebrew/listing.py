"""Parsers for what ``brew`` prints: ``outdated --json=v2`` and ``list --versions``.

Pure functions of the text, so the tests run them on output captured from real Homebrew
installations (``tests/data/homebrew/``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from patchd.backends.native import check_count
from patchd.errors import BackendError

FORMULA = "formula"
CASK = "cask"
_DIGITS = re.compile(r"(\d+)")
# "audacity (!) 2.1.2": "(!)" marks a cask whose files have gone missing.
_LISTED = re.compile(r"^(?P<name>\S+)(?P<missing> \(!\))? (?P<versions>\S.*)$")


@dataclass(frozen=True)
class Outdated:
    """One formula or cask ``brew outdated`` says has a newer version."""

    name: str
    kind: str  # FORMULA or CASK
    installed: tuple[str, ...]
    current: str
    pinned: bool
    pinned_version: str | None = None

    @property
    def installed_version(self) -> str:
        """The newest installed version (Homebrew keeps older kegs until cleanup)."""
        return max(self.installed, key=version_key) if self.installed else ""


@dataclass(frozen=True)
class Listed:
    """One line of ``brew list --versions``: a formula or cask and its installed versions."""

    name: str
    versions: tuple[str, ...]
    missing: bool  # the cask's files are gone though Homebrew still records it

    @property
    def version(self) -> str:
        return max(self.versions, key=version_key)


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """A sort key that orders the numbers in a version numerically (``1.10`` after ``1.9``).

    Only used to pick the newest of several kept versions; it is not Homebrew's full
    ordering, which is why no comparator is registered for Homebrew.
    """
    return tuple(
        (int(part), "") if part.isdigit() else (-1, part) for part in _DIGITS.split(version) if part
    )


def parse_outdated(text: str) -> list[Outdated]:
    """The entries of ``brew outdated --json=v2`` (formulae, then casks).

    Homebrew 2.x printed a cask's ``installed_versions`` as one string (several versions
    joined by ``", "``); later versions print a list. Both are accepted. An entry whose
    installed and current versions are equal (a ``latest`` cask) is left out: there is
    nothing to move to.
    """
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BackendError(f"brew outdated printed something that is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise BackendError("brew outdated --json=v2 printed no object")
    found: list[Outdated] = []
    for key, kind in (("formulae", FORMULA), ("casks", CASK)):
        entries = data.get(key) or []
        if not isinstance(entries, list):
            raise BackendError(f"brew outdated --json=v2: {key!r} is not a list")
        check_count(len(entries), "brew outdated")
        found.extend(_outdated(entry, kind) for entry in entries)
    return [o for o in found if o.current not in o.installed]


def _outdated(entry: Any, kind: str) -> Outdated:
    try:
        installed = entry["installed_versions"]
        if isinstance(installed, str):
            installed = [v for v in installed.split(", ") if v]
        pinned_version = entry.get("pinned_version")
        return Outdated(
            name=str(entry["name"]),
            kind=kind,
            installed=tuple(str(v) for v in installed),
            current=str(entry["current_version"]),
            pinned=bool(entry.get("pinned", False)),
            pinned_version=str(pinned_version) if pinned_version else None,
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise BackendError(f"brew outdated --json=v2: an entry lacks {e}: {entry!r:.200}") from e


def parse_list_versions(text: str) -> list[Listed]:
    """The lines of ``brew list --versions`` (``name version [version ...]``)."""
    found = []
    for line in text.splitlines():
        match = _LISTED.match(line.strip())
        if match is None:
            continue
        found.append(
            Listed(match["name"], tuple(match["versions"].split()), match["missing"] is not None)
        )
    check_count(len(found), "brew list --versions")
    return found
