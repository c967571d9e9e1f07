"""Which advisories concern an update, and what they say together."""

from __future__ import annotations

from patchd.backends.rpm.advisories import (
    AdvisoryFacts,
    AdvisoryIndex,
    combine,
    facts_from_updateinfo,
    severity_of,
)
from patchd.backends.rpm.updateinfo import AdvisoryPackage, RepoAdvisory
from patchd.models import Classification, Severity


def _advisory(
    id_: str, kind: str, evr: str, arch: str = "x86_64", severity: str = ""
) -> RepoAdvisory:
    return RepoAdvisory(
        id_, kind, severity, (f"CVE-{id_}",), (AdvisoryPackage("openssl", arch, evr),)
    )


INDEX = AdvisoryIndex(
    [
        _advisory("old", "security", "1:3.0.1-1", severity="Important"),  # already installed
        _advisory("mid", "bugfix", "1:3.0.5-1"),
        _advisory("new", "security", "1:3.0.7-1", severity="Critical"),
        _advisory("later", "security", "1:3.0.9-1", severity="Low"),  # beyond what is offered
        _advisory("other-arch", "security", "1:3.0.7-1", arch="aarch64"),
        _advisory("noarch", "enhancement", "1:3.0.6-1", arch="noarch"),
    ]
)


def test_advisories_between_installed_and_offered_concern_the_update() -> None:
    found = INDEX.concerning("openssl", "x86_64", "1:3.0.1-1", "1:3.0.7-1")
    assert sorted(a.id for a, _ in found) == ["mid", "new", "noarch"]


def test_the_most_urgent_advisory_decides() -> None:
    facts = combine(
        facts_from_updateinfo(INDEX.concerning("openssl", "x86_64", "1:3.0.1-1", "1:3.0.7-1"))
    )
    assert facts.classification is Classification.SECURITY
    assert facts.severity is Severity.CRITICAL
    assert set(facts.cves) == {"CVE-mid", "CVE-new", "CVE-noarch"}


def test_an_update_no_advisory_mentions_is_other() -> None:
    facts = combine(facts_from_updateinfo(INDEX.concerning("zlib", "x86_64", "1-1", "2-1")))
    assert (facts.classification, facts.severity, facts.cves) == (
        Classification.OTHER,
        Severity.UNKNOWN,
        (),
    )


def test_suse_categories_and_flags() -> None:
    facts = combine(
        [
            AdvisoryFacts("p1", "recommended", Severity.MODERATE),
            AdvisoryFacts("p2", "optional", Severity.LOW, reboot=True, interactive=True),
        ]
    )
    assert facts.classification is Classification.BUGFIX
    assert facts.severity is Severity.MODERATE
    assert facts.reboot
    assert facts.interactive
    assert facts.advisory_ids == ("p1", "p2")


def test_severity_words() -> None:
    assert severity_of("Important") is Severity.IMPORTANT
    assert severity_of(" critical ") is Severity.CRITICAL
    assert severity_of("None") is Severity.UNKNOWN
    assert severity_of("") is Severity.UNKNOWN
