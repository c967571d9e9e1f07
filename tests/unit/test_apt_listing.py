"""Tests for patchd.backends.apt.listing: ``apt list --upgradable`` as apt 2.6 prints it."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.apt.listing import UpgradableEntry, parse_upgradable

DATA = Path(__file__).resolve().parent.parent / "data" / "apt"


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_every_upgradable_line_of_the_real_sample_is_read() -> None:
    text = sample("apt-list-upgradable.txt")
    entries = parse_upgradable(text)
    assert len(entries) == text.count("[upgradable from: ") == 21
    assert [e.name for e in entries] == [
        line.split("/", 1)[0] for line in text.splitlines() if "[upgradable from: " in line
    ]


@pytest.mark.parametrize(
    "expected",
    [
        UpgradableEntry("base-files", ("oldstable",), "12.4+deb12u15", "amd64", "12.4+deb12u11"),
        UpgradableEntry(
            "krb5-locales",
            ("oldstable", "oldstable-security"),
            "1.20.1-2+deb12u5",
            "all",
            "1.20.1-2+deb12u3",
        ),
        UpgradableEntry(
            "libnss3",
            ("oldstable-security",),
            "2:3.87.1-1+deb12u4",
            "amd64",
            "2:3.87.1-1+deb12u2",
        ),
        UpgradableEntry(
            "libgdk-pixbuf2.0-common",
            ("oldstable", "oldstable-security"),
            "2.42.10+dfsg-1+deb12u4",
            "all",
            "2.42.10+dfsg-1+deb12u2",
        ),
        UpgradableEntry(
            "ca-certificates",
            ("oldstable-security",),
            "20250419~deb12u2",
            "all",
            "20230311+deb12u1",
        ),
        UpgradableEntry(
            "libevent-2.1-7",
            ("oldstable-security",),
            "2.1.12-stable-8+deb12u1",
            "amd64",
            "2.1.12-stable-8",
        ),
    ],
    ids=lambda e: e.name,
)
def test_real_sample_entry(expected: UpgradableEntry) -> None:
    by_name = {e.name: e for e in parse_upgradable(sample("apt-list-upgradable.txt"))}
    assert by_name[expected.name] == expected


def test_real_multiarch_sample_gives_each_architecture() -> None:
    # apt 2.6 prints a foreign-architecture package without ":i386", with i386 as its arch;
    # two repositories with the same suite make "stable,stable".
    entries = parse_upgradable(sample("apt-list-upgradable-multiarch.txt"))
    assert entries == [
        UpgradableEntry("acme", ("stable", "stable"), "2.0", "amd64", "1.0"),
        UpgradableEntry("libfoo1", ("stable", "stable"), "1:2.0-1", "amd64", "1:1.0-1"),
        UpgradableEntry("libfoo1", ("stable", "stable"), "1:2.0-1", "i386", "1:1.0-1"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "libc6:i386/stable-security 2.36-9+deb12u9 i386 [upgradable from: 2.36-9+deb12u7]",
            UpgradableEntry(
                "libc6", ("stable-security",), "2.36-9+deb12u9", "i386", "2.36-9+deb12u7"
            ),
        ),
        (
            "acme/stable,now 2.0 amd64 [upgradable from: 1.0]",
            UpgradableEntry("acme", ("stable",), "2.0", "amd64", "1.0"),
        ),
        (
            "  g++-12/stable 12.2.0-14 amd64 [upgradable from: 12.2.0-13]  ",
            UpgradableEntry("g++-12", ("stable",), "12.2.0-14", "amd64", "12.2.0-13"),
        ),
    ],
    ids=["arch-qualified-name", "now-suite-dropped", "surrounding-whitespace"],
)
def test_crafted_line(line: str, expected: UpgradableEntry) -> None:
    assert parse_upgradable(line) == [expected]


@pytest.mark.parametrize(
    "line",
    [
        "Listing...",
        "Listing... Done",
        "WARNING: apt does not have a stable CLI interface. Use with caution in scripts.",
        "",
        "N: There is 1 additional version. Please use the '-a' switch to see it",
        "bash/now 5.2.15-2+b8 amd64 [installed,local]",
        "bash/stable 5.2.15-2+b8 amd64 [installed,upgradable to: 5.2.15-2+b13]",
        "garbage",
        "Acme/stable 2.0 amd64 [upgradable from: 1.0]",
        "acme/stable 2.0 amd64 [upgradable from: 1.0] trailing",
        "acme/stable 2.0 [upgradable from: 1.0]",
    ],
    ids=[
        "listing",
        "listing-done",
        "warning",
        "blank",
        "notice",
        "installed-line",
        "upgradable-to-line",
        "garbage",
        "uppercase-name",
        "trailing-text",
        "missing-arch",
    ],
)
def test_other_lines_are_ignored(line: str) -> None:
    text = f"{line}\nzlib1g/stable 1:1.2.13 amd64 [upgradable from: 1:1.2.12]\n"
    assert [e.name for e in parse_upgradable(text)] == ["zlib1g"]
