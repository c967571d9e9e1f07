"""How an apt update is classified: from the archive it comes from, never from its name.

Debian publishes security fixes in an archive labelled ``Debian-Security``; Ubuntu in
``-security`` pockets. Stable-release updates, backports and third-party repositories
are told apart by their suites and origins, as the OS profile lists them.
"""

from __future__ import annotations

from collections.abc import Sequence

from patchd.backends.apt.releases import ReleaseInfo
from patchd.models import Classification, Severity, UpdateSource
from patchd.platforms import OsProfile

# Debian changelog urgencies (Debian Policy 5.6.17) as severities: the maintainer's own
# word on how soon an upload should reach users.
URGENCY_SEVERITY = {
    "critical": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "high": Severity.IMPORTANT,
    "medium": Severity.MODERATE,
    "low": Severity.LOW,
}


def is_security_release(release: ReleaseInfo, profile: OsProfile) -> bool:
    """True for a repository the OS vendor uses for security fixes.

    Only the vendor's own origins count: a third-party repository calling a suite
    ``-security`` does not get its updates treated as the distribution's security fixes.
    """
    if release.origin not in profile.stable_origins:
        return False
    if release.label and release.label in profile.security_labels:
        return True
    names = (release.suite, release.codename)
    return any(n.endswith(suffix) for n in names if n for suffix in profile.security_suite_suffixes)


def _suite_kind(release: ReleaseInfo, profile: OsProfile) -> Classification | None:
    names = [n for n in (release.suite, release.codename) if n]
    for suffixes, kind in (
        (profile.enhancement_suite_suffixes, Classification.ENHANCEMENT),
        (profile.bugfix_suite_suffixes, Classification.BUGFIX),
    ):
        if any(n.endswith(s) for n in names for s in suffixes):
            return kind
    return None


def classify_update(
    releases: Sequence[ReleaseInfo], suites: Sequence[str], profile: OsProfile
) -> tuple[Classification, UpdateSource]:
    """Classify a candidate carried by ``releases`` (listed in ``suites``); say where it comes from.

    Security wins if any repository carrying the candidate is a security archive (a
    point release often carries the same version as the security archive).
    """
    if not releases:
        return Classification.OTHER, UpdateSource(suite=",".join(suites))
    security = [r for r in releases if is_security_release(r, profile)]
    if security:
        return Classification.SECURITY, security[0].as_source()
    for release in releases:
        kind = _suite_kind(release, profile)
        if kind is not None:
            return kind, release.as_source()
    vendor = [r for r in releases if r.origin in profile.stable_origins]
    if vendor:
        # The vendor's stable archive only takes fixes between releases (point releases).
        return Classification.BUGFIX, vendor[0].as_source()
    return Classification.OTHER, releases[0].as_source()


def needs_reboot(name: str, profile: OsProfile) -> bool:
    """True when updating package ``name`` needs a reboot to take effect."""
    return name in profile.reboot_packages or any(
        name.startswith(prefix) for prefix in profile.kernel_packages
    )
