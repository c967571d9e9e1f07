"""Security facts from a package's own Debian changelog: CVE ids and upload urgency.

Debian's archive indexes carry no CVE ids; the changelog of each upload does
("Fix CVE-2024-1234"), with the maintainer's urgency. patchd reads the changelog from
the candidate's ``.deb`` once apt has downloaded it, and keeps only the entries newer
than the installed version.
"""

from __future__ import annotations

import gzip
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from patchd import process

CVE_PATTERN = re.compile(r"\bCVE-\d{4}-\d{4,7}\b")
MAX_CHANGELOG_BYTES = 8 * 1024 * 1024  # uncompressed; glibc's is ~1 MiB
MAX_CVES = 1000
DPKG_DEB_TIMEOUT_S = 120.0
_URGENCY_ORDER = ("low", "medium", "high", "emergency", "critical")


@dataclass(frozen=True)
class ChangelogFacts:
    """What the changelog entries newer than the installed version say."""

    cves: tuple[str, ...]
    urgency: str | None  # the highest urgency among those entries


def facts_since(changelog_text: str, installed_version: str) -> ChangelogFacts:
    """CVE ids and the highest urgency of entries newer than ``installed_version``."""
    from debian.changelog import Changelog  # python-debian: heavy import, needed only here
    from debian.debian_support import Version

    changelog = Changelog(changelog_text, max_blocks=None, strict=False)
    try:
        installed = Version(installed_version)
    except ValueError:
        return ChangelogFacts(cves=(), urgency=None)
    cves: dict[str, None] = {}
    urgency_rank = -1
    for block in changelog:
        try:
            if block.version is None or block.version <= installed:
                break  # entries are newest first
        except ValueError:
            continue
        for line in block.changes():
            for cve in CVE_PATTERN.findall(line):
                if len(cves) < MAX_CVES:
                    cves[cve] = None
        urgency = (block.urgency or "").lower()
        if urgency in _URGENCY_ORDER:
            urgency_rank = max(urgency_rank, _URGENCY_ORDER.index(urgency))
    return ChangelogFacts(
        cves=tuple(cves),
        urgency=_URGENCY_ORDER[urgency_rank] if urgency_rank >= 0 else None,
    )


def read_deb_changelog(deb: Path, package: str) -> str | None:
    """The Debian changelog shipped in ``deb``, or ``None`` if it has none.

    Streams the package's file archive through ``dpkg-deb --fsys-tarfile`` (which
    handles every compression dpkg supports) and stops at the changelog.
    """
    wanted = {
        f"./usr/share/doc/{package}/changelog.Debian.gz",
        f"./usr/share/doc/{package}/changelog.gz",
    }
    with process.stream_stdout(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], timeout_s=DPKG_DEB_TIMEOUT_S
    ) as command:
        try:
            with tarfile.open(fileobj=command.stdout, mode="r|") as archive:
                for member in archive:
                    if member.name in wanted and member.isfile():
                        f = archive.extractfile(member)
                        if f is None:
                            return None
                        with gzip.open(f) as changelog:
                            data = changelog.read(MAX_CHANGELOG_BYTES)
                        return data.decode("utf-8", "replace")
        except (tarfile.TarError, OSError, EOFError):
            return None
    return None
