"""``apk list --upgradable``: the updates apk would install, from its cached indexes.

Each line is ``NAME-NEWVERSION ARCH {ORIGIN} (LICENSE) [upgradable from: NAME-OLDVERSION]``
(apk-tools 2.10 to 3.0 print the same). It is preferred to ``apk version -l '<'``
because it carries the architecture and the origin (the source package Alpine's
security database is keyed by) on the same line, and it is one command either way.
Lines apk writes about its indexes (``WARNING: ...``, ``fetch ...``) are not entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINES = 200_000

_LINE = re.compile(
    r"^(?P<new>\S+) (?P<arch>\S+) \{(?P<origin>[^}]*)\} \((?P<license>[^)]*)\) "
    r"\[upgradable from: (?P<old>\S+)\]$"
)


@dataclass(frozen=True)
class UpgradableEntry:
    """One package apk would upgrade, and to what."""

    name: str
    arch: str
    origin: str
    installed_version: str
    version: str


def split_name_version(text: str) -> tuple[str, str] | None:
    """``name-1.2-r3`` → (``name``, ``1.2-r3``) by apk's own rule (``apk_pkg_parse_name``).

    From the end, the version starts after the first ``-`` followed by a digit; at most
    one other ``-`` (the one of ``-rN``) may be passed on the way.
    """
    dashes = 0
    for i in range(len(text) - 2, -1, -1):
        if text[i] != "-":
            continue
        if text[i + 1].isdigit():
            return (text[:i], text[i + 1 :]) if i > 0 else None
        dashes += 1
        if dashes >= 2:
            return None
    return None


def parse_upgradable(text: str) -> tuple[list[UpgradableEntry], list[str]]:
    """Entries of ``apk list --upgradable`` output, and the lines that were not entries."""
    entries: list[UpgradableEntry] = []
    others: list[str] = []
    for raw in text.splitlines()[:MAX_LINES]:
        line = raw.rstrip()
        match = _LINE.match(line)
        new = split_name_version(match["new"]) if match else None
        old = split_name_version(match["old"]) if match else None
        if match is None or new is None or old is None or new[0] != old[0]:
            if line:
                others.append(line)
            continue
        entries.append(UpgradableEntry(new[0], match["arch"], match["origin"], old[1], new[1]))
    return entries, others
