"""``pacman -Qu``: installed packages that the synced repository databases have newer.

Each line is ``NAME OLD -> NEW``, with `` [ignored]`` when ``IgnorePkg`` or
``IgnoreGroup`` in pacman.conf holds the package back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"^(?P<name>\S+) (?P<old>\S+) -> (?P<new>\S+)(?P<ignored> \[ignored\])?$")
MAX_LINES = 100_000


@dataclass(frozen=True)
class UpgradableEntry:
    """One line of ``pacman -Qu``."""

    name: str
    installed_version: str
    version: str
    ignored: bool


def parse_upgradable(text: str) -> tuple[list[UpgradableEntry], list[str]]:
    """The entries, and the lines that were not understood (for a warning)."""
    entries: list[UpgradableEntry] = []
    unknown: list[str] = []
    for line in text.splitlines()[:MAX_LINES]:
        if not line.strip():
            continue
        m = _LINE.match(line.rstrip())
        if m is None:
            unknown.append(line.strip()[:200])
            continue
        entries.append(
            UpgradableEntry(m["name"], m["old"], m["new"], ignored=m["ignored"] is not None)
        )
    return entries, unknown
