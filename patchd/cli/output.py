"""Writing to the terminal: JSON documents on stdout, tables, colour only where it belongs.

Standard output carries results (one JSON document with ``--json``); logs and progress
go to standard error. Colour only on a terminal, never with ``NO_COLOR`` set. patchd
asks a question only when a person can answer it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from patchd.errors import UsageError

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def colour_enabled(stream: TextIO) -> bool:
    """True when ``stream`` is a terminal and neither ``NO_COLOR`` nor ``TERM=dumb`` is set."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


class Style:
    """Wraps text in ANSI colours when enabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def write_json(document: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """Write one JSON document; it must say its ``schema_version``."""
    if "schema_version" not in document:
        raise ValueError("a JSON document must carry schema_version")
    out = stream or sys.stdout
    # Indented for a person; compact (and C-encoded, several times faster) for a program.
    indent = 2 if out.isatty() else None
    out.write(json.dumps(document, indent=indent, ensure_ascii=False))
    out.write("\n")
    out.flush()


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    style: Style,
    indent: int = 2,
    row_styles: Sequence[Sequence[str]] | None = None,
) -> str:
    """Rows as aligned columns under bold headers; ``row_styles`` colour whole rows."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    pad = " " * indent

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [pad + style(line(headers), "bold")]
    for i, row in enumerate(rows):
        # Aligned as plain text first: colour codes would count as width.
        lines.append(pad + style(line(row), *(row_styles[i] if row_styles else ())))
    return "\n".join(lines)


def confirm(question: str) -> bool:
    """Ask a yes/no question on the terminal.

    Raises :class:`UsageError` when nobody can answer (no terminal): callers offer a
    ``--yes`` option instead.
    """
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(
            "refusing to change packages without confirmation: standard input is not a terminal",
            hint="pass --yes to confirm",
        )
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")
