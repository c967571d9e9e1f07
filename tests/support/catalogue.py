"""The packages and repositories the apt tests and the demo use.

Five repositories stand for what a Debian endpoint sees: the release itself, its
security archive (labelled ``Debian-Security``), stable updates, backports, and a
third-party vendor that reuses the suite name ``stable``. One more carries an update
the distribution is still phasing in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.debian import ChangelogEntry, DebSpec, RepoSpec, build_deb, publish_repo

HELLO_CONF = "# hello configuration\ngreeting=hello\n"
SECURITY_CVES = ("CVE-2026-10001", "CVE-2026-10002")

BASE = [
    DebSpec(
        "hello",
        "1.0",
        conffiles={"/etc/hello.conf": HELLO_CONF},
        changelog=(ChangelogEntry("1.0"),),
    ),
    DebSpec("world", "1.0"),
    DebSpec("gadget", "1.0"),
    DebSpec("acme-agent", "1.0"),
    DebSpec("pinned", "1.0"),
    DebSpec("phasey", "1.0"),
    DebSpec("fragile", "1.0"),
    DebSpec("epochal", "1:1.0"),
]

SECURITY = [
    DebSpec(
        "hello",
        "1.1",
        conffiles={"/etc/hello.conf": HELLO_CONF.replace("hello\n", "hello, safely\n")},
        changelog=(
            ChangelogEntry(
                "1.1",
                (
                    f"Fix buffer overflow ({SECURITY_CVES[0]}).",
                    f"Fix path traversal ({SECURITY_CVES[1]}).",
                ),
                urgency="high",
            ),
            ChangelogEntry("1.0"),
        ),
    ),
    DebSpec("pinned", "1.1"),
    # Its configuration script fails: the install cannot complete.
    DebSpec("fragile", "1.1", postinst="#!/bin/sh\necho 'fragile: cannot configure' >&2\nexit 1\n"),
    DebSpec("epochal", "1:1.1"),
]
UPDATES = [DebSpec("world", "2.0")]
BACKPORTS = [DebSpec("gadget", "1.5")]
VENDOR = [DebSpec("acme-agent", "2.0")]
PHASING = [DebSpec("phasey", "1.1")]

REPOS: dict[str, tuple[RepoSpec, list[DebSpec]]] = {
    "base": (RepoSpec("base"), BASE),
    "security": (
        RepoSpec(
            "security",
            label="Debian-Security",
            suite="stable-security",
            codename="bookworm-security",
        ),
        SECURITY,
    ),
    "updates": (RepoSpec("updates", suite="stable-updates", codename="bookworm-updates"), UPDATES),
    "backports": (
        RepoSpec(
            "backports",
            origin="Debian Backports",
            label="Debian Backports",
            suite="stable-backports",
            codename="bookworm-backports",
        ),
        BACKPORTS,
    ),
    "vendor": (
        RepoSpec(
            "vendor", origin="Acme", label="Acme", suite="stable", codename="acme", version=""
        ),
        VENDOR,
    ),
    "phasing": (
        RepoSpec(
            "phasing",
            origin="Ubuntu",
            label="Ubuntu",
            suite="jammy-updates",
            codename="jammy-updates",
            version="22.04",
            extra_fields={("phasey", "1.1"): {"Phased-Update-Percentage": "30"}},
        ),
        PHASING,
    ),
}

# What the scan must report for each package (classification, suite of the source).
EXPECTED = {
    "hello": ("security", "stable-security"),
    "pinned": ("security", "stable-security"),
    "fragile": ("security", "stable-security"),
    "epochal": ("security", "stable-security"),
    "world": ("bugfix", "stable-updates"),
    "gadget": ("enhancement", "stable-backports"),
    "acme-agent": ("other", "stable"),
    "phasey": ("bugfix", "jammy-updates"),
}


@dataclass(frozen=True)
class Catalogue:
    """Built packages and published repositories."""

    repos: Mapping[str, Path]
    debs: Mapping[tuple[str, str], Path]

    def uris(self, *names: str) -> list[str]:
        return [f"file:{self.repos[n]}" for n in (names or tuple(self.repos))]

    def base_specs(self) -> list[str]:
        return [f"{s.name}={s.version}" for s in BASE]


def build_catalogue(work: Path) -> Catalogue:
    """Build every package and publish every repository under ``work``."""
    debs: dict[tuple[str, str], Path] = {}
    repos = {}
    for name, (repo_spec, specs) in REPOS.items():
        built = [build_deb(s, work / "debs", work / "build") for s in specs]
        debs.update({(s.name, s.version): d for s, d in zip(specs, built, strict=True)})
        repos[name] = publish_repo(repo_spec, work / "repos", built)
    return Catalogue(repos=repos, debs=debs)
