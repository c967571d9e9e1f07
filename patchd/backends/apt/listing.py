"""Parsing of ``apt list --upgradable`` (run with ``LC_ALL=C``).

Each upgradable package is one line::

    openssl/stable-security,stable 3.0.15-1~deb12u1 amd64 [upgradable from: 3.0.14-1~deb12u2]

that is: name, ``/``, the comma-separated suites carrying the candidate, the candidate
version, the architecture, and the installed version. Other lines ("Listing...",
warnings) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9+.\-]*)(?::[a-z0-9\-]+)?"
    r"/(?P<suites>\S*)\s+(?P<version>\S+)\s+(?P<arch>\S+)"
    r"\s+\[upgradable from: (?P<installed>[^\]\s]+)\]\s*$"
)


@dataclass(frozen=True)
class UpgradableEntry:
    """One line of ``apt list --upgradable``."""

    name: str
    suites: tuple[str, ...]
    version: str
    arch: str
    installed_version: str


def parse_upgradable(text: str) -> list[UpgradableEntry]:
    """Every upgradable package listed in ``text``."""
    entries = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        entries.append(
            UpgradableEntry(
                name=match["name"],
                suites=tuple(s for s in match["suites"].split(",") if s and s != "now"),
                version=match["version"],
                arch=match["arch"],
                installed_version=match["installed"],
            )
        )
    return entries
