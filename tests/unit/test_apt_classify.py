"""Tests for patchd.backends.apt.classify: the archive decides, through the OS profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from patchd.backends.apt.classify import URGENCY_SEVERITY, classify_update, needs_reboot
from patchd.backends.apt.listing import parse_upgradable
from patchd.backends.apt.releases import ReleaseIndex, ReleaseInfo, read_releases
from patchd.models import Classification, Severity, UpdateSource
from patchd.platforms import DEBIAN, UBUNTU, OsProfile

DATA = Path(__file__).resolve().parent.parent / "data" / "apt"


def release(origin: str, label: str, suite: str, codename: str = "") -> ReleaseInfo:
    return ReleaseInfo(origin, label, suite, codename, "", f"site-of-{suite}", "")


DEBIAN_MAIN = release("Debian", "Debian", "stable", "trixie")
DEBIAN_OLD = release("Debian", "Debian", "oldstable", "bookworm")
DEBIAN_SECURITY = release("Debian", "Debian-Security", "stable-security", "trixie-security")
DEBIAN_UPDATES = release("Debian", "Debian", "stable-updates", "trixie-updates")
DEBIAN_PROPOSED = release("Debian", "Debian", "proposed-updates", "trixie-proposed-updates")
DEBIAN_BACKPORTS = release(
    "Debian Backports", "Debian Backports", "stable-backports", "trixie-backports"
)
DEBIAN_SLOPPY = release(
    "Debian Backports",
    "Debian Backports",
    "oldstable-backports-sloppy",
    "bookworm-backports-sloppy",
)
DOCKER = release("Docker", "Docker CE", "trixie", "trixie")
UBUNTU_MAIN = release("Ubuntu", "Ubuntu", "jammy", "jammy")
UBUNTU_SECURITY = release("Ubuntu", "Ubuntu", "jammy-security", "jammy")
UBUNTU_UPDATES = release("Ubuntu", "Ubuntu", "jammy-updates", "jammy")
UBUNTU_PROPOSED = release("Ubuntu", "Ubuntu", "jammy-proposed", "jammy")
UBUNTU_BACKPORTS = release("Ubuntu", "Ubuntu", "jammy-backports", "jammy")
UBUNTU_ESM_INFRA = release("UbuntuESM", "UbuntuESM", "jammy-infra-security", "jammy")
UBUNTU_ESM_APPS = release("UbuntuESMApps", "UbuntuESMApps", "jammy-apps-updates", "jammy")
PPA = release("LP-PPA-deadsnakes", "Deadsnakes", "jammy", "jammy")


@dataclass(frozen=True)
class Case:
    id: str
    profile: OsProfile
    releases: tuple[ReleaseInfo, ...]
    expected: Classification
    source: ReleaseInfo  # the repository named as the source


CASES = [
    Case("debian-security-label", DEBIAN, (DEBIAN_SECURITY,), Classification.SECURITY, DEBIAN_SECURITY),
    Case(
        "debian-security-label-any-suite",
        DEBIAN,
        (release("Debian", "Debian-Security", "odd"),),
        Classification.SECURITY,
        release("Debian", "Debian-Security", "odd"),
    ),
    Case(
        "debian-security-suite-without-label",
        DEBIAN,
        (release("Debian", "Debian", "bookworm-security"),),
        Classification.SECURITY,
        release("Debian", "Debian", "bookworm-security"),
    ),
    Case("debian-updates", DEBIAN, (DEBIAN_UPDATES,), Classification.BUGFIX, DEBIAN_UPDATES),
    Case("debian-proposed-updates", DEBIAN, (DEBIAN_PROPOSED,), Classification.BUGFIX, DEBIAN_PROPOSED),
    Case("debian-backports", DEBIAN, (DEBIAN_BACKPORTS,), Classification.ENHANCEMENT, DEBIAN_BACKPORTS),
    Case("debian-backports-sloppy", DEBIAN, (DEBIAN_SLOPPY,), Classification.ENHANCEMENT, DEBIAN_SLOPPY),
    Case("debian-point-release-stable", DEBIAN, (DEBIAN_MAIN,), Classification.BUGFIX, DEBIAN_MAIN),
    Case("debian-point-release-oldstable", DEBIAN, (DEBIAN_OLD,), Classification.BUGFIX, DEBIAN_OLD),
    Case("debian-third-party", DEBIAN, (DOCKER,), Classification.OTHER, DOCKER),
    Case(
        "security-wins-over-point-release",
        DEBIAN,
        (DEBIAN_MAIN, DEBIAN_SECURITY),
        Classification.SECURITY,
        DEBIAN_SECURITY,
    ),
    Case(
        "security-wins-over-updates",
        DEBIAN,
        (DEBIAN_UPDATES, DEBIAN_SECURITY),
        Classification.SECURITY,
        DEBIAN_SECURITY,
    ),
    Case(
        "updates-win-over-point-release",
        DEBIAN,
        (DEBIAN_MAIN, DEBIAN_UPDATES),
        Classification.BUGFIX,
        DEBIAN_UPDATES,
    ),
    Case("vendor-wins-over-third-party", DEBIAN, (DOCKER, DEBIAN_MAIN), Classification.BUGFIX, DEBIAN_MAIN),
    Case("ubuntu-security-pocket", UBUNTU, (UBUNTU_SECURITY,), Classification.SECURITY, UBUNTU_SECURITY),
    Case("ubuntu-esm-infra-security", UBUNTU, (UBUNTU_ESM_INFRA,), Classification.SECURITY, UBUNTU_ESM_INFRA),
    Case("ubuntu-esm-apps-updates", UBUNTU, (UBUNTU_ESM_APPS,), Classification.BUGFIX, UBUNTU_ESM_APPS),
    Case("ubuntu-updates", UBUNTU, (UBUNTU_UPDATES,), Classification.BUGFIX, UBUNTU_UPDATES),
    Case("ubuntu-proposed", UBUNTU, (UBUNTU_PROPOSED,), Classification.BUGFIX, UBUNTU_PROPOSED),
    Case("ubuntu-backports", UBUNTU, (UBUNTU_BACKPORTS,), Classification.ENHANCEMENT, UBUNTU_BACKPORTS),
    Case("ubuntu-release-pocket", UBUNTU, (UBUNTU_MAIN,), Classification.BUGFIX, UBUNTU_MAIN),
    Case("ubuntu-ppa", UBUNTU, (PPA,), Classification.OTHER, PPA),
    Case(
        "ubuntu-security-wins-over-updates",
        UBUNTU,
        (UBUNTU_UPDATES, UBUNTU_SECURITY),
        Classification.SECURITY,
        UBUNTU_SECURITY,
    ),
    Case(
        "ubuntu-ignores-the-debian-security-label",
        UBUNTU,
        (release("Acme", "Debian-Security", "stable"),),
        Classification.OTHER,
        release("Acme", "Debian-Security", "stable"),
    ),
    Case("debian-is-third-party-on-ubuntu", UBUNTU, (DEBIAN_MAIN,), Classification.OTHER, DEBIAN_MAIN),
    Case(
        "third-party-claiming-a-security-suite-is-not-trusted",
        DEBIAN,
        (release("Acme", "Acme", "bookworm-security"),),
        Classification.OTHER,
        release("Acme", "Acme", "bookworm-security"),
    ),
    Case(
        "third-party-claiming-the-debian-security-label-is-not-trusted",
        DEBIAN,
        (release("Acme", "Debian-Security", "stable"),),
        Classification.OTHER,
        release("Acme", "Debian-Security", "stable"),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_classify_update(case: Case) -> None:
    suites = [r.suite for r in case.releases]
    classification, source = classify_update(case.releases, suites, case.profile)
    assert classification is case.expected
    assert source == case.source.as_source()


@pytest.mark.parametrize("profile", [DEBIAN, UBUNTU], ids=["debian", "ubuntu"])
def test_no_release_info_is_other_and_keeps_the_suites(profile: OsProfile) -> None:
    classification, source = classify_update([], ["stable", "stable-security"], profile)
    assert classification is Classification.OTHER
    assert source == UpdateSource(suite="stable,stable-security")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("base-files", Classification.BUGFIX),
        ("jq", Classification.SECURITY),
        ("krb5-locales", Classification.SECURITY),
        ("zlib1g", Classification.SECURITY),
        ("systemd", Classification.BUGFIX),
    ],
    ids=str,
)
def test_real_listing_with_real_release_files(name: str, expected: Classification) -> None:
    """The host's ``apt list --upgradable`` and its Release files, put together as the backend does."""
    index = ReleaseIndex(read_releases(DATA / "lists"))
    entries = parse_upgradable((DATA / "apt-list-upgradable.txt").read_text(encoding="utf-8"))
    (entry,) = [e for e in entries if e.name == name]
    classification, _ = classify_update(index.for_suites(entry.suites), entry.suites, DEBIAN)
    assert classification is expected


@pytest.mark.parametrize(
    ("name", "profile", "expected"),
    [
        ("linux-image-6.1.0-28-amd64", DEBIAN, True),
        ("linux-image-amd64", DEBIAN, True),
        ("linux-image-generic", UBUNTU, True),
        ("linux-headers-amd64", DEBIAN, False),
        ("linux-libc-dev", DEBIAN, False),
        ("libc6", DEBIAN, True),
        ("libc6", UBUNTU, True),
        ("libc6-dev", DEBIAN, False),
        ("systemd", DEBIAN, True),
        ("systemd-timesyncd", DEBIAN, False),
        ("dbus", DEBIAN, True),
        ("intel-microcode", DEBIAN, True),
        ("openssl", DEBIAN, False),
        ("zlib1g", UBUNTU, False),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_needs_reboot(name: str, profile: OsProfile, expected: bool) -> None:
    assert needs_reboot(name, profile) is expected


@pytest.mark.parametrize(
    ("urgency", "severity"),
    [
        ("critical", Severity.CRITICAL),
        ("emergency", Severity.CRITICAL),
        ("high", Severity.IMPORTANT),
        ("medium", Severity.MODERATE),
        ("low", Severity.LOW),
    ],
    ids=str,
)
def test_urgency_severity(urgency: str, severity: Severity) -> None:
    assert URGENCY_SEVERITY[urgency] is severity


def test_urgency_severity_covers_debian_policy_only() -> None:
    # Debian Policy 5.6.17: low, medium, high, emergency, critical.
    assert set(URGENCY_SEVERITY) == {"low", "medium", "high", "emergency", "critical"}
