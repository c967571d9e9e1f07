"""Parser for the tables ``winget upgrade`` and ``winget list`` print.

Released winget has no machine-readable output for these commands (JSON output is an
open proposal, microsoft/winget-cli#184, #6346), so patchd reads the table: a header
line, a line of dashes, then one row per package, columns padded to fixed positions.
Columns are found by where the header's words start, which does not depend on the
display language; a name too long for its column ends in "…". Rows end at the first
line that does not fit the columns (winget's "N upgrades available." footer, or the
second table of packages that "require explicit targeting"). Spinner and progress
output before the table (overwritten with carriage returns) is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchd.backends.native import check_count

_RULE = re.compile(r"^-{10,}$")
ELLIPSIS = "\u2026"
# The English header words; other languages are mapped by column position.
_KNOWN = {
    "name": "name",
    "id": "id",
    "version": "version",
    "available": "available",
    "source": "source",
}
_POSITIONS = ("name", "id", "version", "available", "source")
SOURCES = ("winget", "msstore")


@dataclass(frozen=True)
class WingetRow:
    """One package row of a winget table."""

    name: str
    id: str
    version: str  # "Unknown", or "< 1.2" when winget knows only an upper bound
    available: str
    source: str

    @property
    def truncated_id(self) -> bool:
        """winget cut the identifier short: it cannot be used to target the package."""
        return self.id.endswith(ELLIPSIS)


def parse_table(text: str) -> list[WingetRow]:
    """The rows of the first table in ``text``; no table (nothing to list) is no rows."""
    lines = [last_write(line) for line in text.split("\n")]
    rule = next((i for i, line in enumerate(lines) if i > 0 and _RULE.match(line)), None)
    if rule is None:
        return []
    header = lines[rule - 1]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    names = _column_names(header, starts)
    rows = []
    for line in lines[rule + 1 :]:
        cells = _cells(line, starts)
        if cells is None:
            break
        row = dict(zip(names, cells, strict=True))
        rows.append(
            WingetRow(
                name=row.get("name", ""),
                id=row.get("id", ""),
                version=row.get("version", ""),
                available=row.get("available", ""),
                source=row.get("source", ""),
            )
        )
    check_count(len(rows), "winget table")
    return _fix_source_column(rows, names)


def last_write(line: str) -> str:
    """What a terminal would show of ``line``: the text after its last carriage return.

    The line ending's own CR (winget writes CRLF) does not count.
    """
    return line.rstrip("\r").rsplit("\r", 1)[-1].rstrip()


def _column_names(header: str, starts: list[int]) -> list[str]:
    words = [header[s:e].strip().lower() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    if all(w in _KNOWN for w in words):
        return [_KNOWN[w] for w in words]
    return list(_POSITIONS[: len(words)])


def _cells(line: str, starts: list[int]) -> list[str] | None:
    """The cells of a row, or None when ``line`` is not a row of this table."""
    if len(starts) < 3 or len(line) <= starts[2]:
        return None
    for start in starts[1:]:
        if start < len(line) and line[start - 1] != " ":
            return None  # text runs across a column boundary: prose, not a row
    bounds = zip(starts, [*starts[1:], None], strict=True)
    cells = [line[s:e].strip() for s, e in bounds]
    name, package_id, version = cells[:3]
    if not name or not package_id or " " in package_id or not version:
        return None
    return cells


def _fix_source_column(rows: list[WingetRow], names: list[str]) -> list[WingetRow]:
    """In another language, a 4-column ``winget list`` has Source, not Available, 4th."""
    if len(names) != 4 or names[3] != "available":
        return rows
    if rows and all(r.available in SOURCES for r in rows):
        return [WingetRow(r.name, r.id, r.version, "", r.available) for r in rows]
    return rows
