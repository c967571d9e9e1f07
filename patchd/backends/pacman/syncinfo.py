"""``pacman -Si``: which synced repositories carry a package, at which version.

Output is blocks of ``Field : value`` lines separated by blank lines, one block per
repository that has the package, in pacman.conf's order; ``LC_ALL=C`` keeps the field
names in English. Long values wrap onto lines that start with spaces.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_BLOCKS = 100_000


@dataclass(frozen=True)
class SyncPackage:
    """A package as one repository database has it."""

    repository: str
    name: str
    version: str
    arch: str


def parse_sync_info(text: str) -> list[SyncPackage]:
    """Every block of ``pacman -Si`` output that names a repository, name and version."""
    found: list[SyncPackage] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        if {"Repository", "Name", "Version"} <= fields.keys() and len(found) < MAX_BLOCKS:
            found.append(
                SyncPackage(
                    fields["Repository"],
                    fields["Name"],
                    fields["Version"],
                    fields.get("Architecture", ""),
                )
            )
        fields.clear()

    for line in text.splitlines():
        if not line.strip():
            flush()
            continue
        if line[0].isspace():
            continue  # the continuation of a wrapped value
        key, sep, value = line.partition(" : ")
        if sep:
            fields[key.strip()] = value.strip()
    flush()
    return found
