"""Tests for patchd.backends.apt.releases: Release headers from real list files, and the index.

The files under tests/data/apt/lists carry the names apt gave them (see its README), so a
copy of that directory is a lists directory as apt leaves it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from patchd.backends.apt.releases import (
    MAX_RELEASE_FILES,
    ReleaseIndex,
    ReleaseInfo,
    parse_release_header,
    read_releases,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "apt"
LISTS = DATA / "lists"
SECURITY = "deb.debian.org_debian-security_dists_bookworm-security"
UPDATES = "deb.debian.org_debian_dists_bookworm-updates"
MAIN = "deb.debian.org_debian_dists_bookworm"
BUSTER = "_tmp_aptexp_repos_dists%5fr_dists_buster_updates"
FLAT = "_tmp_aptexp_repos_x%5fy_repo_."


# list file → what read_releases makes of it
REAL_FILES = {
    f"{SECURITY}_InRelease": ReleaseInfo(
        "Debian", "Debian-Security", "oldstable-security", "bookworm-security", "12",
        "deb.debian.org/debian-security", SECURITY,
    ),
    f"{UPDATES}_InRelease": ReleaseInfo(
        "Debian", "Debian", "oldstable-updates", "bookworm-updates", "12-updates",
        "deb.debian.org/debian", UPDATES,
    ),
    f"{MAIN}_InRelease": ReleaseInfo(
        "Debian", "Debian", "oldstable", "bookworm", "12.15", "deb.debian.org/debian", MAIN
    ),
    f"{BUSTER}_Release": ReleaseInfo(
        "Debian", "Debian-Security", "oldoldstable", "buster", "", "/tmp/aptexp/repos/dists_r", BUSTER
    ),
    f"{FLAT}_Release": ReleaseInfo("Acme", "", "stable", "", "", "/tmp/aptexp/repos/x_y/repo/.", FLAT),
}  # fmt: skip
REAL_IDS = [
    "inrelease-security",
    "inrelease-updates",
    "inrelease-main",
    "release-dists",
    "release-flat",
]


def info(origin: str, label: str, suite: str, codename: str = "", site: str = "") -> ReleaseInfo:
    return ReleaseInfo(origin, label, suite, codename, "", site, site)


@pytest.mark.parametrize(("name", "release"), REAL_FILES.items(), ids=REAL_IDS)
def test_real_header(name: str, release: ReleaseInfo) -> None:
    text = (LISTS / name).read_text(encoding="utf-8")
    assert parse_release_header(text) == dataclasses.replace(release, site="", list_prefix="")


def test_clear_signed_armor_headers_are_not_fields() -> None:
    text = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\nComment: Origin: Evil\n\n"
        "Origin: Ubuntu\nLabel: Ubuntu\nSuite: noble-security\nCodename: noble\nVersion: 24.04\n"
        "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
    )
    found = parse_release_header(text, site="s", list_prefix="p")
    assert found == ReleaseInfo("Ubuntu", "Ubuntu", "noble-security", "noble", "24.04", "s", "p")


def test_missing_fields_are_empty() -> None:
    assert parse_release_header("Date: today\n") == ReleaseInfo("", "", "", "", "", "", "")


def test_as_source_keeps_identity_and_site() -> None:
    release = ReleaseInfo(
        "Debian", "Debian-Security", "stable-security", "trixie-security", "13", "s"
    )
    source = release.as_source()
    assert (source.origin, source.label, source.suite, source.codename, source.site) == (
        "Debian",
        "Debian-Security",
        "stable-security",
        "trixie-security",
        "s",
    )


# --- read_releases ----------------------------------------------------------------------


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    """The real samples plus what else apt keeps in its lists directory, and junk."""
    lists = tmp_path / "lists"
    shutil.copytree(LISTS, lists)
    (lists / "partial").mkdir()
    (lists / "auxfiles").mkdir()
    (lists / "lock").write_bytes(b"")
    (lists / f"{MAIN}_main_binary-amd64_Packages.lz4").write_bytes(b"\x04\x22\x4d\x18junk")
    (lists / f"{MAIN}_InRelease.bak").write_text("Origin: Junk\n")
    (lists / "partial" / "x_dists_y_InRelease").write_text("Origin: Partial\n")
    (lists / "dir_dists_z_InRelease").mkdir()  # unreadable as a file
    return lists


def test_read_releases_reads_both_kinds_and_skips_the_rest(lists_dir: Path) -> None:
    assert sorted(read_releases(lists_dir), key=lambda r: r.list_prefix) == sorted(
        REAL_FILES.values(), key=lambda r: r.list_prefix
    )


def test_read_releases_without_a_directory(tmp_path: Path) -> None:
    assert read_releases(tmp_path / "missing") == []


def test_read_releases_reads_only_the_header(tmp_path: Path) -> None:
    checksums = "".join(f" {i:064x} {i:8d} main/file-{i}\n" for i in range(20_000))
    (tmp_path / "h_dists_s_Release").write_text(f"Origin: O\nSuite: s\nSHA256:\n{checksums}")
    (release,) = read_releases(tmp_path)
    assert (release.origin, release.suite) == ("O", "s")


def test_cap_counts_release_files_not_directory_entries(tmp_path: Path) -> None:
    # A busy lists directory holds many index files per release; they sort before these.
    for i in range(MAX_RELEASE_FILES + 1):
        (tmp_path / f"a{i:05d}_dists_x_main_binary-amd64_Packages").touch()
    shutil.copy(LISTS / f"{SECURITY}_InRelease", tmp_path)
    assert [r.label for r in read_releases(tmp_path)] == ["Debian-Security"]


# --- the index --------------------------------------------------------------------------

REAL = read_releases(LISTS)
BY_PREFIX = {r.list_prefix: r for r in REAL}


@pytest.mark.parametrize(
    ("suite", "prefixes"),
    [
        ("oldstable", [MAIN]),
        ("bookworm", [MAIN]),
        ("oldstable-security", [SECURITY]),
        ("bookworm-security", [SECURITY]),
        ("bookworm-updates", [UPDATES]),
        ("stable", [FLAT]),
        ("buster", [BUSTER]),
        ("trixie", []),
        ("", []),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_lookup_by_suite_or_codename(suite: str, prefixes: list[str]) -> None:
    assert [r.list_prefix for r in ReleaseIndex(REAL).lookup(suite)] == prefixes


def test_lookup_returns_a_copy() -> None:
    index = ReleaseIndex(REAL)
    index.lookup("bookworm").clear()
    assert index.lookup("bookworm") == [BY_PREFIX[MAIN]]


def test_for_suites_lists_each_repository_once() -> None:
    index = ReleaseIndex(REAL)
    found = index.for_suites(["oldstable", "bookworm", "oldstable-security", "nowhere"])
    assert found == [BY_PREFIX[MAIN], BY_PREFIX[SECURITY]]


@pytest.mark.parametrize(
    ("releases", "suites", "ambiguous"),
    [
        (REAL, ["oldstable", "oldstable-security"], False),
        ([info("Debian", "Debian", "stable"), info("Acme", "Acme", "stable")], ["stable"], True),
        ([info("Debian", "Debian", "stable"), info("Debian", "Debian-Security", "stable")], ["stable"], True),
        ([info("Debian", "Debian", "stable", site="a"), info("Debian", "Debian", "stable", site="b")], ["stable"], False),
        ([info("Debian", "Debian", "stable"), info("Acme", "Acme", "stable")], ["trixie"], False),
        ([info("Debian", "Debian", "trixie"), info("Acme", "Acme", "x", codename="trixie")], ["trixie"], True),
        ([], ["stable"], False),
    ],
    ids=[
        "real-distinct-suites",
        "vendor-and-third-party",
        "same-origin-other-label",
        "two-mirrors",
        "other-suite-asked",
        "codename-collides-with-suite",
        "no-releases",
    ],
)  # fmt: skip
def test_ambiguous(releases: list[ReleaseInfo], suites: list[str], ambiguous: bool) -> None:
    assert ReleaseIndex(releases).ambiguous(suites) is ambiguous
