"""The RPM packages and repositories the dnf and zypper tests share.

``base`` carries every package at its first version (and stays a source, so a
rollback can downgrade from it); ``updates`` carries the newer versions with an
updateinfo.xml: a security advisory with CVE ids and a severity, a critical one whose
package suggests a reboot, a bug-fix and an enhancement advisory. ``plain`` has an
update no advisory mentions; ``fragile``'s new version has a ``%pre`` scriptlet that
fails, so its install cannot complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.rpmrepo import (
    SHELL_PACKAGE,
    AdvisoryPackage,
    AdvisorySpec,
    RepoSpec,
    RpmSpec,
    build_rpm,
    publish_repo,
)

SECURITY_ID = "RLSA-2026:0001"
SECURITY_CVES = ("CVE-2026-20001", "CVE-2026-20002")
CRITICAL_ID = "RLSA-2026:0002"
CRITICAL_CVES = ("CVE-2026-20003",)
BUGFIX_ID = "RLBA-2026:0003"
ENHANCEMENT_ID = "RLEA-2026:0004"
FRAGILE_ID = "RLSA-2026:0005"

BASE = (
    RpmSpec(SHELL_PACKAGE, "1.0"),
    RpmSpec("hello", "1.0"),
    RpmSpec("world", "1.0"),
    RpmSpec("gadget", "1.0"),
    RpmSpec("plain", "1.0"),
    RpmSpec("fragile", "1.0"),
    RpmSpec("epochal", "1.0", epoch=1),
)
UPDATES = (
    RpmSpec("hello", "1.1"),
    RpmSpec("world", "2.0"),
    RpmSpec("gadget", "1.5"),
    RpmSpec("plain", "1.1"),
    RpmSpec("fragile", "1.1", pre="echo 'fragile: refusing to install' >&2\nexit 1"),
    RpmSpec("epochal", "1.1", epoch=1),
)
ADVISORIES = (
    AdvisorySpec(
        SECURITY_ID,
        "security",
        "Important",
        (AdvisoryPackage("hello", "1.1"),),
        cves=SECURITY_CVES,
        title="Important: hello security update",
    ),
    AdvisorySpec(
        CRITICAL_ID,
        "security",
        "Critical",
        (AdvisoryPackage("epochal", "1.1", epoch=1, reboot_suggested=True),),
        cves=CRITICAL_CVES,
        title="Critical: epochal security update",
    ),
    AdvisorySpec(BUGFIX_ID, "bugfix", "", (AdvisoryPackage("world", "2.0"),), bugs=("4242",)),
    AdvisorySpec(ENHANCEMENT_ID, "enhancement", "", (AdvisoryPackage("gadget", "1.5"),)),
    AdvisorySpec(
        FRAGILE_ID,
        "security",
        "Moderate",
        (AdvisoryPackage("fragile", "1.1"),),
        cves=("CVE-2026-20005",),
    ),
)
REPOS = (RepoSpec("base", BASE), RepoSpec("updates", UPDATES, ADVISORIES))

# What a scan must report: package -> (classification, severity, cves, reboot).
EXPECTED = {
    "hello": ("security", "important", SECURITY_CVES, False),
    "epochal": ("security", "critical", CRITICAL_CVES, True),
    "world": ("bugfix", "unknown", (), False),
    "gadget": ("enhancement", "unknown", (), False),
    "plain": ("other", "unknown", (), False),
    "fragile": ("security", "moderate", ("CVE-2026-20005",), False),
}


@dataclass(frozen=True)
class RpmCatalogue:
    """Built packages and published repositories."""

    repos: Mapping[str, Path]
    rpms: Mapping[tuple[str, str], Path]  # (name, evr) -> file

    def base_names(self) -> list[str]:
        return [s.name for s in BASE]

    def old_versions(self) -> dict[str, str]:
        return {s.name: s.evr for s in BASE}

    def new_versions(self) -> dict[str, str]:
        return {s.name: s.evr for s in UPDATES}


def build_rpm_catalogue(work: Path) -> RpmCatalogue:
    """Build every package and publish both repositories under ``work`` (~10 s)."""
    rpms: dict[tuple[str, str], Path] = {}
    repos = {}
    for repo in REPOS:
        built = [build_rpm(s, work / "rpms", work / "build") for s in repo.packages]
        rpms.update({(s.name, s.evr): p for s, p in zip(repo.packages, built, strict=True)})
        repos[repo.name] = publish_repo(repo, built, work / "repos")
    return RpmCatalogue(repos=repos, rpms=rpms)


_BUILT: dict[str, RpmCatalogue] = {}
RPM_TOOLS = ("rpm", "rpmbuild", "createrepo_c", "modifyrepo_c", "/bin/busybox")


def shared_catalogue(work: Path) -> RpmCatalogue:
    """The catalogue, built once per test session (under ``work`` the first time)."""
    if "catalogue" not in _BUILT:
        _BUILT["catalogue"] = build_rpm_catalogue(work)
    return _BUILT["catalogue"]


def base_specs() -> list[str]:
    """``name-evr`` of every base package, as dnf takes them."""
    return [f"{s.name}-{s.evr}" for s in BASE]


def zypper_base_specs() -> list[str]:
    """``name=evr`` of every base package, as zypper takes them."""
    return [f"{s.name}={s.evr}" for s in BASE]
