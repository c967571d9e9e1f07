"""Parser for ``softwareupdate --list`` (macOS 10.15 and later).

Each update is two lines::

    * Label: macOS Tahoe 26.7.1-25H300
    \tTitle: macOS Tahoe 26.7.1, Version: 26.7.1, Size: 1843200KiB, Recommended: YES, Action: restart,

The label is what ``--install`` takes. Older macOS (before 10.15) printed
``   macOS..., 10.14.6, 2048K [recommended] [restart]`` instead; that format is not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchd.backends.native import check_count
from patchd.errors import BackendError

_LABEL = re.compile(r"^\s*[*-]\s*Label:\s*(?P<label>.+?)\s*$")
_FIELD = re.compile(r"(?P<key>Title|Version|Size|Recommended|Action):\s*(?P<value>[^,]*)")
_SIZE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>KiB|KB|K)?$")
NO_UPDATES = "No new software available."
# Apple names its security-only releases so (Security Update 2024-001, Rapid Security
# Response, Background Security Improvement); the listing has no other security flag.
_SECURITY_TITLES = re.compile(r"\bSecurity (Update|Response|Improvement)\b", re.IGNORECASE)


@dataclass(frozen=True)
class SoftwareUpdate:
    """One entry of ``softwareupdate --list``."""

    label: str
    title: str
    version: str
    size_bytes: int | None
    recommended: bool
    action: str  # "restart", "shut down", or "" when none is needed

    @property
    def needs_restart(self) -> bool:
        return self.action in ("restart", "shut down")

    @property
    def security_named(self) -> bool:
        """Apple titles it as a security release."""
        return _SECURITY_TITLES.search(self.title) is not None


def parse_list(text: str) -> list[SoftwareUpdate]:
    """The updates in ``softwareupdate --list`` output (stdout and stderr together).

    ``No new software available.`` is no update; a ``Label:`` line without its
    ``Title:`` line is malformed output and raises :class:`BackendError` rather than
    being read as something else.
    """
    lines = text.splitlines()
    found = []
    for index, line in enumerate(lines):
        match = _LABEL.match(line)
        if match is None:
            continue
        detail = lines[index + 1] if index + 1 < len(lines) else ""
        fields = {m["key"]: m["value"].strip() for m in _FIELD.finditer(detail)}
        if "Title" not in fields:
            raise BackendError(
                f"softwareupdate listed {match['label']!r} without its Title line",
                hint="run `softwareupdate --list` by hand and report its output",
            )
        found.append(
            SoftwareUpdate(
                label=match["label"],
                title=fields["Title"],
                version=fields.get("Version", ""),
                size_bytes=_size(fields.get("Size", "")),
                recommended=fields.get("Recommended", "").upper() == "YES",
                action=fields.get("Action", "").lower(),
            )
        )
    check_count(len(found), "softwareupdate --list")
    return found


def _size(text: str) -> int | None:
    match = _SIZE.match(text.strip())
    return int(match["n"]) * 1024 if match else None
