"""Tests for patchd.backends.apt.phased: Phased-Update-Percentage from apt's Packages files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from patchd.backends.apt.phased import MAX_STANZA_BYTES, phased_percentages

UPDATES = "archive.ubuntu.com_ubuntu_dists_noble-updates"
SECURITY = "security.ubuntu.com_ubuntu_dists_noble-security"
SYSTEMD = ("systemd", "255.4-1ubuntu8.6")
WANTED = {("libssl3t64", "3.0.13-0ubuntu3.5"), SYSTEMD}


def stanza(package: str, version: str, *extra: str) -> str:
    lines = [
        f"Package: {package}",
        "Architecture: amd64",
        f"Version: {version}",
        "Priority: optional",
        "Maintainer: Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
        f"Filename: pool/main/{package[0]}/{package}/{package}_{version}_amd64.deb",
        "Description: a package",
        " with a long description",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def systemd(*extra: str) -> str:
    """The wanted systemd candidate's stanza."""
    return stanza(*SYSTEMD, *extra)


def packages(*stanzas: str) -> str:
    return "\n".join(stanzas)


def write_list(lists: Path, prefix: str, text: str, suffix: str = "") -> Path:
    path = lists / f"{prefix}_main_binary-amd64_Packages{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def lists(tmp_path: Path) -> Path:
    path = tmp_path / "lists"
    path.mkdir()
    return path


def read(lists: Path, prefixes: tuple[str, ...] = (UPDATES,)) -> dict[tuple[str, str], int]:
    return phased_percentages(lists, prefixes, WANTED, decompress=None)


def test_uncompressed_index(lists: Path) -> None:
    write_list(
        lists,
        UPDATES,
        packages(
            stanza("zlib1g", "1:1.3.dfsg-3.1ubuntu2.1"),
            stanza("libssl3t64", "3.0.13-0ubuntu3.5", "Phased-Update-Percentage: 30"),
            systemd("Phased-Update-Percentage: 90", "Task: minimal"),
        ),
    )
    assert read(lists) == {
        ("libssl3t64", "3.0.13-0ubuntu3.5"): 30,
        SYSTEMD: 90,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (systemd(), {}),
        (stanza("udev", "255.4-1ubuntu8.6", "Phased-Update-Percentage: 10"), {}),
        (stanza("systemd", "255.4-1ubuntu8.5", "Phased-Update-Percentage: 10"), {}),
        (systemd("Phased-Update-Percentage: -5"), {SYSTEMD: 0}),
        (systemd("Phased-Update-Percentage: 150"), {SYSTEMD: 100}),
        (systemd("Phased-Update-Percentage: thirty"), {}),
        (systemd("Phased-Update-Percentage: 30%"), {}),
        (systemd("Phased-Update-Percentage: 0"), {SYSTEMD: 0}),
        (systemd("Phased-Update-Percentage: 40").rstrip("\n"), {SYSTEMD: 40}),
        ("", {}),
    ],
    ids=[
        "not-phased",
        "unwanted-package",
        "unwanted-version",
        "clamped-to-0",
        "clamped-to-100",
        "malformed-word",
        "malformed-percent-sign",
        "zero",
        "no-final-newline",
        "empty-file",
    ],
)
def test_index_contents(lists: Path, text: str, expected: dict[tuple[str, str], int]) -> None:
    write_list(lists, UPDATES, text)
    assert read(lists) == expected


def test_only_the_named_repositories_are_read(lists: Path) -> None:
    write_list(lists, SECURITY, systemd("Phased-Update-Percentage: 10"))
    write_list(lists, UPDATES + "x", systemd("Phased-Update-Percentage: 20"))
    assert read(lists, (UPDATES,)) == {}
    assert read(lists, (SECURITY,)) == {SYSTEMD: 10}


def test_missing_lists_directory(tmp_path: Path) -> None:
    assert read(tmp_path / "missing") == {}


def test_compressed_index_is_skipped_without_a_decompressor(lists: Path) -> None:
    # Plain text under a compressed name: read as-is, it would match.
    write_list(lists, UPDATES, systemd("Phased-Update-Percentage: 10"), ".lz4")
    assert read(lists) == {}


def test_compressed_index_is_read_through_the_decompressor(lists: Path) -> None:
    text = systemd("Phased-Update-Percentage: 10")
    path = lists / f"{UPDATES}_main_binary-amd64_Packages.gz"
    path.write_bytes(gzip.compress(text.encode()))
    other = lists / f"{SECURITY}_main_binary-amd64_Packages.gz"
    other.write_bytes(gzip.compress(text.encode()))
    asked: list[Path] = []

    def decompress(p: Path) -> bytes:
        asked.append(p)
        return gzip.decompress(p.read_bytes())

    found = phased_percentages(lists, [UPDATES], WANTED, decompress=decompress)
    assert found == {SYSTEMD: 10}
    assert asked == [path]


def test_uncompressed_index_does_not_go_through_the_decompressor(lists: Path) -> None:
    write_list(lists, UPDATES, systemd("Phased-Update-Percentage: 10"))

    def decompress(p: Path) -> bytes:
        raise AssertionError(f"asked to decompress {p}")

    found = phased_percentages(lists, [UPDATES], WANTED, decompress=decompress)
    assert found == {SYSTEMD: 10}


def test_a_stanza_larger_than_the_window_is_not_mistaken_for_the_first_one(lists: Path) -> None:
    huge = "Description: huge\n" + " x\n" * (MAX_STANZA_BYTES // 3 + 10)
    write_list(
        lists,
        UPDATES,
        packages(
            systemd(),
            f"Package: huge\nVersion: 1\n{huge}Phased-Update-Percentage: 10\n",
        ),
    )
    assert read(lists) == {}
