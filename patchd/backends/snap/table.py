"""snap's column tables (``snap list``, ``snap refresh --list``), read by their header.

snap prints aligned columns whose values never contain spaces (``Name Version Rev
Tracking Publisher Notes``; ``snap refresh --list`` has gained a ``Size`` column over
the years, so columns are found by name, not position). Publishers carry a ``✓`` or
``*`` mark of verification, notes are comma-separated words (``held``, ``disabled``,
``classic``) or ``-``. A line without a table ("All snaps up to date.") yields no rows.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ROWS = 10_000


@dataclass(frozen=True)
class SnapRow:
    """One row: a snap at one revision."""

    name: str
    version: str
    revision: str
    notes: frozenset[str]


def parse_table(text: str) -> list[SnapRow]:
    """Rows of a snap table; the header must name at least Name, Version and Rev."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    header_at = next((i for i, words in enumerate(lines) if words[:1] == ["Name"]), None)
    if header_at is None:
        return []
    header = lines[header_at]
    if not {"Name", "Version", "Rev"} <= set(header):
        return []
    rows = []
    for words in lines[header_at + 1 : header_at + 1 + MAX_ROWS]:
        if len(words) != len(header):
            continue
        cell = dict(zip(header, words, strict=True))
        notes = cell.get("Notes", "-")
        rows.append(
            SnapRow(
                cell["Name"],
                cell["Version"],
                cell["Rev"],
                frozenset() if notes == "-" else frozenset(notes.split(",")),
            )
        )
    return rows


def parse_version(text: str) -> dict[str, str]:
    """``snap version``: ``snap``, ``snapd``, ``series``, … → their values."""
    found = {}
    for line in text.splitlines()[:50]:
        key, _, value = line.strip().partition(" ")
        if key and value.strip():
            found[key] = value.strip()
    return found
