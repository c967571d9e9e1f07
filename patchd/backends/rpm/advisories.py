"""Which advisories concern an update, and what they say together (pure).

An advisory lists package versions that fix something; it concerns an update when it
lists the same package (an ``noarch`` entry matches any architecture, as in libsolv)
at a version newer than the installed one and not newer than the one offered. Several
advisories can concern one update (a security fix on top of a bug fix): the update is
then as urgent as the most urgent of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from patchd.backends.rpm.updateinfo import AdvisoryPackage, RepoAdvisory
from patchd.backends.rpm.versions import compare
from patchd.models import Classification, Severity

# updateinfo types (RHEL, Fedora) and patch categories (SUSE), to patchd's classes.
CLASSIFICATION_BY_TYPE: Mapping[str, Classification] = {
    "security": Classification.SECURITY,
    "bugfix": Classification.BUGFIX,
    "recommended": Classification.BUGFIX,
    "enhancement": Classification.ENHANCEMENT,
    "newpackage": Classification.ENHANCEMENT,
    "feature": Classification.ENHANCEMENT,
    "optional": Classification.ENHANCEMENT,
}
_CLASS_RANK = {
    Classification.OTHER: 0,
    Classification.ENHANCEMENT: 1,
    Classification.BUGFIX: 2,
    Classification.SECURITY: 3,
}


def severity_of(text: str) -> Severity:
    """``Critical``/``Important``/``Moderate``/``Low`` in any case; anything else is unknown."""
    try:
        return Severity(text.strip().lower())
    except ValueError:
        return Severity.UNKNOWN


@dataclass(frozen=True)
class AdvisoryFacts:
    """What one advisory says, as the package manager reports it."""

    id: str
    kind: str  # updateinfo type or patch category
    severity: Severity
    cves: tuple[str, ...] = ()
    reboot: bool = False
    interactive: bool = False  # zypper: the patch needs a decision (a licence, a reboot)


@dataclass(frozen=True)
class UpdateFacts:
    """The advisories of one update, combined."""

    classification: Classification
    severity: Severity
    cves: tuple[str, ...]
    reboot: bool
    advisory_ids: tuple[str, ...]
    interactive: bool = False


NO_ADVISORY = UpdateFacts(Classification.OTHER, Severity.UNKNOWN, (), False, ())


class AdvisoryIndex:
    """Advisories by the names of the packages they list."""

    def __init__(self, advisories: Iterable[RepoAdvisory]) -> None:
        self._by_name: dict[str, list[tuple[RepoAdvisory, AdvisoryPackage]]] = {}
        for advisory in advisories:
            for package in advisory.packages:
                self._by_name.setdefault(package.name, []).append((advisory, package))

    def concerning(
        self, name: str, arch: str, installed: str, available: str
    ) -> list[tuple[RepoAdvisory, AdvisoryPackage]]:
        """Advisories listing ``name`` at a version in (``installed``, ``available``]."""
        found = []
        for advisory, package in self._by_name.get(name, ()):
            if package.arch != arch and "noarch" not in (package.arch, arch):
                continue
            try:
                if compare(installed, package.evr) < 0 <= compare(available, package.evr):
                    found.append((advisory, package))
            except ValueError:
                continue  # a malformed version in the metadata concerns nothing
        return found


def facts_from_updateinfo(
    matches: Sequence[tuple[RepoAdvisory, AdvisoryPackage]],
) -> list[AdvisoryFacts]:
    """The facts of updateinfo advisories as they stand (what dnf reports)."""
    return [
        AdvisoryFacts(
            id=advisory.id,
            kind=advisory.type,
            severity=severity_of(advisory.severity),
            cves=advisory.cves,
            reboot=package.reboot_suggested,
        )
        for advisory, package in matches
    ]


def combine(facts: Sequence[AdvisoryFacts]) -> UpdateFacts:
    """One update's facts from all advisories concerning it: the most urgent wins."""
    if not facts:
        return NO_ADVISORY
    classes = [CLASSIFICATION_BY_TYPE.get(f.kind, Classification.OTHER) for f in facts]
    return UpdateFacts(
        classification=max(classes, key=_CLASS_RANK.__getitem__),
        severity=max((f.severity for f in facts), key=lambda s: s.rank),
        cves=tuple(dict.fromkeys(c for f in facts for c in f.cves)),
        reboot=any(f.reboot for f in facts),
        advisory_ids=tuple(dict.fromkeys(f.id for f in facts)),
        interactive=any(f.interactive for f in facts),
    )
