"""The repositories apt knows, from the Release files it keeps in its lists directory.

``apt list --upgradable`` names only a candidate's suites (``bookworm-security``); the
Release file of each suite gives its origin and label (``Debian-Security``), which is how
Debian marks its security archive. Only the header of each file is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from patchd.backends.apt.stanzas import first_stanza
from patchd.models import UpdateSource

RELEASE_HEADER_BYTES = 16 * 1024  # the fields patchd reads come before the checksum lists
MAX_RELEASE_FILES = 4096
_PGP_HEADER = "-----BEGIN PGP SIGNED MESSAGE-----"
_RELEASE_SUFFIXES = ("_InRelease", "_Release")


@dataclass(frozen=True)
class ReleaseInfo:
    """The identifying fields of one repository's Release file."""

    origin: str
    label: str
    suite: str
    codename: str
    version: str
    site: str  # host and path of the repository, as apt names its list files
    list_prefix: str = ""  # the list files of this repository start with this

    def as_source(self) -> UpdateSource:
        return UpdateSource(
            origin=self.origin,
            label=self.label,
            suite=self.suite,
            codename=self.codename,
            site=self.site,
        )


def parse_release_header(text: str, site: str = "", list_prefix: str = "") -> ReleaseInfo:
    """Parse the head of a Release or InRelease file (clear-signed or not)."""
    if text.startswith(_PGP_HEADER):
        # Armor headers ("Hash: SHA512") end at the first blank line; the fields follow.
        _, _, text = text.partition("\n\n")
    fields = first_stanza(text)
    return ReleaseInfo(
        origin=fields.get("Origin", ""),
        label=fields.get("Label", ""),
        suite=fields.get("Suite", ""),
        codename=fields.get("Codename", ""),
        version=fields.get("Version", ""),
        site=site,
        list_prefix=list_prefix,
    )


def read_releases(lists_dir: Path) -> list[ReleaseInfo]:
    """Every repository apt has fetched, from ``*_Release`` and ``*_InRelease`` files."""
    try:
        # Filtered before the cap: a busy lists directory holds ~10 index files per release.
        names = sorted(p.name for p in lists_dir.iterdir() if p.name.endswith(_RELEASE_SUFFIXES))
    except OSError:
        return []
    releases = []
    for name in names[:MAX_RELEASE_FILES]:
        try:
            with (lists_dir / name).open("rb") as f:
                head = f.read(RELEASE_HEADER_BYTES).decode("utf-8", "replace")
        except OSError:
            continue
        prefix = name.rsplit("_", 1)[0]
        # apt's file names turn "/" into "_" and quote a real "_" as %5f: undo both.
        site = unquote(prefix.split("_dists_", 1)[0].replace("_", "/"))
        releases.append(parse_release_header(head, site=site, list_prefix=prefix))
    return releases


class ReleaseIndex:
    """Looks repositories up by the suite (archive) names ``apt list`` prints."""

    def __init__(self, releases: Iterable[ReleaseInfo]) -> None:
        self._by_suite: dict[str, list[ReleaseInfo]] = {}
        for release in releases:
            for key in {release.suite, release.codename} - {""}:
                self._by_suite.setdefault(key, []).append(release)

    def lookup(self, suite: str) -> list[ReleaseInfo]:
        """Every repository whose Suite (or Codename) is ``suite``."""
        return list(self._by_suite.get(suite, ()))

    def for_suites(self, suites: Sequence[str]) -> list[ReleaseInfo]:
        """Every repository matching any of ``suites``, each once."""
        return list(dict.fromkeys(r for s in suites for r in self.lookup(s)))

    def ambiguous(self, suites: Sequence[str]) -> bool:
        """True when one of ``suites`` names repositories of different origins or labels."""
        return any(len({(r.origin, r.label) for r in self.lookup(s)}) > 1 for s in suites)
