"""Which repositories carry a candidate, from ``apt-cache policy`` (run with ``LC_ALL=C``).

``apt list`` names only suites, and two repositories may share a suite name (a vendor's
``stable`` and Debian's). When that happens patchd asks ``apt-cache policy`` for the
affected packages: each version lists the repositories carrying it, which map to the
list files (and so the Release files) apt keeps for them::

    acme-agent:
      Installed: 1.0
      Candidate: 2.0
      Version table:
         2.0 500 (phased 30%)
            500 http://deb.example.com/debian stable/main amd64 Packages
     *** 1.0 500
            100 /var/lib/dpkg/status
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION_LINE = re.compile(
    r"^ (?:\*\*\*| {3}) (?P<version>\S+) (?P<priority>-?\d+)(?: \(phased (?P<phased>\d+)%\))?$"
)
# The priority is printed "%4i" after 7 spaces: "          1", "        500", "       1001".
_SOURCE_LINE = re.compile(r"^ {7} {0,3}-?\d+ (?P<uri>\S+) (?P<dist>\S+)(?: \S+)? Packages$")
# apt's URItoFileName quotes these (strutl.cc QuoteString) before turning "/" into "_".
_QUOTED = set('\\|{}[]<>"^~_=!@#$%&*')


@dataclass(frozen=True)
class CandidateOrigins:
    """The repositories carrying one package's candidate version."""

    version: str
    list_prefixes: tuple[str, ...]
    phased_percentage: int | None


def list_prefix(uri: str, dist: str) -> str:
    """The prefix of the list files apt keeps for repository ``uri`` and distribution ``dist``.

    ``http://deb.debian.org/debian`` + ``bookworm/main`` → ``deb.debian.org_debian_dists_bookworm``;
    a flat ``file:/srv/repo`` + ``./`` → ``_srv_repo_.``.
    """
    rest = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*:(//)?", "", uri)
    host, slash, rest = rest.partition("/")
    if "@" in host:
        host = host.split("@", 1)[1]  # credentials never appear in file names
    # apt drops an IPv6 address's brackets ("[::1]:8080" → "::1:8080").
    base = (host.replace("[", "").replace("]", "") + slash + rest).rstrip("/") + "/"
    # ``dist`` ends with the component ("bookworm/main", "buster/updates/main").
    path = base + dist if dist.endswith("/") else base + "dists/" + dist.rsplit("/", 1)[0] + "/"
    quoted = "".join(
        f"%{b:02x}" if chr(b) in _QUOTED or b <= 0x20 or b >= 0x7F else chr(b)
        for b in path.encode("utf-8", "surrogateescape")
    )
    return quoted.replace("/", "_").rstrip("_")


def parse_policy(text: str) -> dict[str, CandidateOrigins]:
    """Package name → the repositories carrying its candidate, from ``apt-cache policy`` output."""
    versions: dict[str, tuple[str, int | None]] = {}
    prefixes: dict[str, list[str]] = {}
    package: str | None = None
    candidate: str | None = None
    in_candidate = False
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            package, candidate, in_candidate = line[:-1], None, False
        elif line.startswith("  Candidate: "):
            candidate = line.split(": ", 1)[1].strip()
        elif match := _VERSION_LINE.match(line):
            in_candidate = package is not None and match["version"] == candidate
            if in_candidate and package is not None:
                versions[package] = (
                    match["version"],
                    int(match["phased"]) if match["phased"] else None,
                )
                prefixes[package] = []
        elif in_candidate and package is not None and (match := _SOURCE_LINE.match(line)):
            prefixes[package].append(list_prefix(match["uri"], match["dist"]))
    return {
        name: CandidateOrigins(version, tuple(prefixes[name]), phased)
        for name, (version, phased) in versions.items()
    }
