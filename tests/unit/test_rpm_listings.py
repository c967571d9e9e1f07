"""dnf/yum check-update and zypper list-updates, on real captured output (tests/data/rpm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.dnf.listing import CheckUpdateEntry, parse_check_update, repos_without_cache
from patchd.backends.rpm.failures import failure_reasons, rpm_filename
from patchd.backends.zypper.listing import ZypperOutputError, parse_list_updates
from patchd.models import Severity

DATA = Path(__file__).parent.parent / "data" / "rpm"


def test_dnf_check_update_as_captured() -> None:
    entries, problems = parse_check_update((DATA / "dnf-4.14.0-check-update.txt").read_text())
    assert problems == []
    assert entries[0] == CheckUpdateEntry("epochal", "noarch", "1:1.1-1", "updates")
    assert [e.name for e in entries] == ["epochal", "fragile", "gadget", "hello", "plain", "world"]


def test_yum_wraps_a_long_name_onto_two_lines() -> None:
    text = (DATA / "yum-rhel6-check-update-wrapped.txt").read_text()
    entries, problems = parse_check_update(text)
    assert problems == []
    assert entries == [
        CheckUpdateEntry(
            "java-1.7.0-openjdk-devel", "x86_64", "1:1.7.0.99-2.6.5.0.el6_7", "rhel-6-server-rpms"
        )
    ]


def test_fedora_check_update_with_trailing_padding() -> None:
    entries, problems = parse_check_update((DATA / "dnf4-fedora40-check-update.txt").read_text())
    assert problems == []
    assert [(e.name, e.evr) for e in entries] == [
        ("brave-browser", "1.71.121-1"),
        ("code", "1.95.0-1730153639.el8"),
        ("dkms", "3.1.1-1.fc40"),
    ]


def test_obsoletes_section_ends_the_list_and_noise_is_reported() -> None:
    text = (
        "hello.noarch 1.1-1 updates\n"
        "garbage-without-arch 1.0 x\n"
        "Obsoleting Packages\n"
        "new.noarch 2-1 updates\n    old.noarch 1-1 @System\n"
    )
    entries, problems = parse_check_update(text)
    assert [e.name for e in entries] == ["hello"]
    assert problems == ["unexpected check-update entry: garbage-without-arch 1.0 x"]


def test_repositories_without_cache_are_named() -> None:
    stderr = "Cache-only enabled but no cache for 'updates'\nCache-only enabled but no cache for 'base'\n"
    assert repos_without_cache(stderr) == ["updates", "base"]


def test_zypper_packages_and_patches_as_captured() -> None:
    listed = parse_list_updates((DATA / "zypper-1.14.42-list-updates.xml").read_text())
    packages = {p.name: p for p in listed.packages}
    assert (packages["epochal"].evr, packages["epochal"].installed_evr) == ("1:1.1-1", "1:1.0-1")
    assert packages["epochal"].repo == "updates"
    patches = {p.facts.id: p for p in listed.patches}
    critical = patches["RLSA-2026:0002"]
    assert critical.facts.kind == "security"
    assert critical.facts.severity is Severity.CRITICAL
    assert critical.facts.cves == ("CVE-2026-20003",)
    assert critical.facts.reboot
    assert critical.facts.interactive
    assert patches["RLBA-2026:0003"].facts.cves == ()  # a bugzilla issue
    assert listed.messages == ()  # info messages are not warnings


@pytest.mark.parametrize(
    "hostile",
    [
        '<!DOCTYPE s [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><stream>&b;</stream>',
        "<stream><update-status>",
    ],
    ids=["entity-expansion", "truncated"],
)
def test_zypper_output_that_cannot_be_trusted_is_refused(hostile: str) -> None:
    with pytest.raises(ZypperOutputError):
        parse_list_updates(hostile)


def test_zypper_error_messages_become_warnings() -> None:
    text = '<stream><message type="error">Repository x is invalid.</message></stream>'
    assert parse_list_updates(text).messages == ("Repository x is invalid.",)


def test_rpm_failures_name_the_package() -> None:
    output = (
        "error: %prein(fragile-1.1-1.noarch) scriptlet failed, exit status 1\n"
        "error: fragile-1.1-1.noarch: install failed\n"
        "Installation of other-pkg-2.0-3.x86_64 failed:\n"
    )
    assert failure_reasons(output) == {
        "fragile": "%prein scriptlet failed, exit status 1",
        "other-pkg": "rpm could not install it",
    }


def test_rpm_file_names_leave_out_the_epoch() -> None:
    assert rpm_filename("epochal", "1:1.0-1", "noarch") == "epochal-1.0-1.noarch.rpm"
    assert rpm_filename("hello", "1.0-1", "x86_64") == "hello-1.0-1.x86_64.rpm"
