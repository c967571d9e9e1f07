"""``dnf check-update`` / ``yum check-update`` output.

Three columns, ``name.arch  [epoch:]version-release  repository``; a long name wraps
the rest onto the next line, so the parser reads the columns as a stream of words. The
list ends where ``Obsoleting Packages`` begins (those are also in the list above it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SKIPPED_PREFIXES = (
    "Last metadata expiration check",
    "Security:",
    "Loaded plugins",
    "Loading mirror",
)
_VERSION = re.compile(r"^(?:\d+:)?[^\s:-][^\s:]*-[^\s:-]+$")
_NO_CACHE = re.compile(r"Cache-only enabled but no cache for '([^']+)'")


@dataclass(frozen=True)
class CheckUpdateEntry:
    name: str
    arch: str
    evr: str
    repo: str


def parse_check_update(text: str) -> tuple[list[CheckUpdateEntry], list[str]]:
    """The entries, and a note for every group of words that is not one."""
    words: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(_SKIPPED_PREFIXES):
            continue
        if stripped.startswith("Obsoleting Packages"):
            break
        words.extend(stripped.split())
    entries, problems = [], []
    for i in range(0, len(words) - len(words) % 3, 3):
        nevra, evr, repo = words[i : i + 3]
        name, dot, arch = nevra.rpartition(".")
        if not dot or not name or not _VERSION.match(evr):
            problems.append(f"unexpected check-update entry: {' '.join(words[i : i + 3])}")
            continue
        entries.append(CheckUpdateEntry(name, arch, evr, repo))
    if len(words) % 3:
        problems.append(
            f"check-update output ends mid-entry: {' '.join(words[-(len(words) % 3) :])}"
        )
    return entries, problems


def repos_without_cache(stderr: str) -> list[str]:
    """Repositories dnf skipped because it has never fetched their metadata."""
    return list(dict.fromkeys(_NO_CACHE.findall(stderr)))
