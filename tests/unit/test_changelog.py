"""Tests for patchd.backends.apt.changelog: CVE ids and urgency from Debian changelogs.

``facts_since`` runs on zlib's real changelog (tests/data/apt) and on crafted ones;
``read_deb_changelog`` on real packages built with ``dpkg-deb --build``.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from patchd.backends.apt.changelog import (
    MAX_CVES,
    ChangelogFacts,
    facts_since,
    read_deb_changelog,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "apt"
ZLIB = (DATA / "changelog-zlib.txt").read_text(encoding="utf-8")
TRAILER = " -- Tests <tests@patchd.invalid>  Sun, 01 Nov 2026 00:00:00 +0000\n"


def entry(version: str, urgency: str, *changes: str, package: str = "acme") -> str:
    lines = "\n".join(f"  * {c}" for c in changes or ("No change.",))
    return f"{package} ({version}) unstable; urgency={urgency}\n\n{lines}\n\n{TRAILER}\n"


# --- facts_since on zlib's real changelog ------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ("1:1.2.11.dfsg-3", ChangelogFacts(("CVE-2022-37434", "CVE-2018-25032"), "medium")),
        ("1:1.2.11.dfsg-4", ChangelogFacts(("CVE-2022-37434",), "medium")),
        ("1:1.2.11.dfsg-4.1", ChangelogFacts((), "low")),
        ("1:1.2.13.dfsg-1", ChangelogFacts((), None)),
        ("1:1.2.13.dfsg-2", ChangelogFacts((), None)),
        # Without the epoch the installed version is older than every entry.
        ("1.2.13.dfsg-1", ChangelogFacts(("CVE-2022-37434", "CVE-2018-25032"), "medium")),
        ("2:0", ChangelogFacts((), None)),
    ],
    ids=[
        "three-entries-newer",
        "two-entries-newer",
        "one-entry-newer",
        "up-to-date",
        "newer-than-changelog",
        "epoch-zero-is-older",
        "higher-epoch-is-newer",
    ],
)
def test_real_zlib_changelog(installed: str, expected: ChangelogFacts) -> None:
    assert facts_since(ZLIB, installed) == expected


# --- crafted changelogs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("urgencies", "expected"),
    [
        (["low", "medium"], "medium"),
        (["low", "high", "medium"], "high"),
        (["medium", "emergency", "high"], "emergency"),
        (["emergency", "critical"], "critical"),
        (["HIGH", "low"], "high"),
        (["low", "bogus"], "low"),
        (["bogus"], None),
    ],
    ids=["medium", "high-in-the-middle", "emergency", "critical", "upper-case", "unknown-ignored", "only-unknown"],
)  # fmt: skip
def test_highest_urgency_of_newer_entries(urgencies: list[str], expected: str | None) -> None:
    newest_first = [entry(f"1.{n}-1", u) for n, u in reversed(list(enumerate(urgencies, start=1)))]
    text = "".join(newest_first) + entry("1.0-1", "critical")
    assert facts_since(text, "1.0-1").urgency == expected


def test_cves_are_deduplicated_in_order_of_appearance() -> None:
    text = (
        entry("1.3-1", "high", "Fix CVE-2024-0003 and CVE-2024-0001.", "Again CVE-2024-0003.")
        + entry("1.2-1", "medium", "Fix CVE-2024-0001 (regression of CVE-2024-0002).")
        + entry("1.1-1", "low", "Older CVE-2020-9999.")
    )
    assert facts_since(text, "1.1-1").cves == ("CVE-2024-0003", "CVE-2024-0001", "CVE-2024-0002")


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ("Fix CVE-2024-1234.", ("CVE-2024-1234",)),
        ("Fix CVE-2024-1234567 (seven digits).", ("CVE-2024-1234567",)),
        ("Fix CVE-2024-12345678 (eight digits).", ()),
        ("Fix CVE-2024-123 (three digits).", ()),
        ("Fix xCVE-2024-1234 and CVE-2024-1234x.", ()),
        ("debian/patches/CVE-2024-5678.patch: new.", ("CVE-2024-5678",)),
        ("Fix cve-2024-1234 (lower case).", ()),
    ],
    ids=["four-digits", "seven-digits", "eight-digits", "three-digits", "glued", "in-a-patch-name", "lower-case"],
)  # fmt: skip
def test_cve_pattern(change: str, found: tuple[str, ...]) -> None:
    assert facts_since(entry("2.0-1", "low", change) + entry("1.0-1", "low"), "1.0-1").cves == found


def test_cves_are_capped() -> None:
    ids = [f"CVE-2024-{n:05d}" for n in range(MAX_CVES + 5)]
    text = entry("2.0-1", "high", *ids) + entry("1.0-1", "low")
    assert facts_since(text, "1.0-1").cves == tuple(ids[:MAX_CVES])


def test_malformed_blocks_are_tolerated() -> None:
    text = (
        entry("2.0-1", "high", "Fix CVE-2024-0002.")
        + "this line is not a changelog heading\n  * Stray CVE-2099-0001.\n\n"
        + entry("!!bad", "emergency", "Bad version mentions CVE-2099-0002.")
        + entry("1.5-1", "low", "Fix CVE-2023-0001.")
        + entry("1.0-1", "critical", "Initial CVE-2020-0001.")
    )
    assert facts_since(text, "1.0-1") == ChangelogFacts(("CVE-2024-0002", "CVE-2023-0001"), "high")


@pytest.mark.parametrize(
    "text", ["", "garbage\n", entry("1.0-1", "high", "CVE-2024-0001")], ids=["empty", "garbage", "only-installed"]
)  # fmt: skip
def test_nothing_newer(text: str) -> None:
    assert facts_since(text, "1.0-1") == ChangelogFacts((), None)


# --- read_deb_changelog on real packages ----------------------------------------------------


def build_deb(
    tmp_path: Path, name: str, files: Mapping[str, bytes], compression: str = "xz"
) -> Path:
    """A real .deb with ``files`` (path → content), built by dpkg-deb."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    tree = tmp_path / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 2.0-1\nArchitecture: all\n"
        "Maintainer: Tests <tests@patchd.invalid>\nDescription: test package\n"
    )
    for path, content in files.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    deb = tmp_path / f"{name}_2.0-1_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return deb


CHANGELOG = entry("2.0-1", "high", "Fix CVE-2026-0001.") + entry("1.0-1", "low")
OTHER_FILES = {"/usr/share/acme/data": b"data\n", "/usr/share/doc/acme/copyright": b"(c)\n"}


@pytest.mark.parametrize(
    ("doc_file", "compression"),
    [
        ("changelog.Debian.gz", "xz"),
        ("changelog.Debian.gz", "gzip"),
        ("changelog.Debian.gz", "zstd"),
        ("changelog.gz", "xz"),
    ],
    ids=["debian-xz", "debian-gzip", "debian-zstd", "native-package"],
)
def test_changelog_is_read_from_a_real_deb(tmp_path: Path, doc_file: str, compression: str) -> None:
    files = {**OTHER_FILES, f"/usr/share/doc/acme/{doc_file}": gzip.compress(CHANGELOG.encode())}
    deb = build_deb(tmp_path, "acme", files, compression)
    text = read_deb_changelog(deb, "acme")
    assert text == CHANGELOG
    assert facts_since(text, "1.0-1") == ChangelogFacts(("CVE-2026-0001",), "high")


@pytest.mark.parametrize(
    "files",
    [
        OTHER_FILES,
        {
            **OTHER_FILES,
            "/usr/share/doc/other/changelog.Debian.gz": gzip.compress(CHANGELOG.encode()),
        },
    ],
    ids=["no-changelog", "another-packages-changelog"],
)
def test_deb_without_its_changelog(tmp_path: Path, files: dict[str, bytes]) -> None:
    assert read_deb_changelog(build_deb(tmp_path, "acme", files), "acme") is None


@pytest.mark.parametrize(
    "damage", ["truncated", "garbage", "empty", "missing", "not-gzip-inside"], ids=str
)
def test_broken_deb_gives_none(tmp_path: Path, damage: str) -> None:
    files = {
        **OTHER_FILES,
        "/usr/share/doc/acme/changelog.Debian.gz": gzip.compress(CHANGELOG.encode()),
    }
    if damage == "not-gzip-inside":
        files["/usr/share/doc/acme/changelog.Debian.gz"] = b"plain text, not gzip\n"
    deb = build_deb(tmp_path, "acme", files)
    if damage == "truncated":
        deb.write_bytes(deb.read_bytes()[: deb.stat().st_size // 2])
    elif damage == "garbage":
        deb.write_bytes(b"!<arch>\ngarbage" * 100)
    elif damage == "empty":
        deb.write_bytes(b"")
    elif damage == "missing":
        deb.unlink()
    assert read_deb_changelog(deb, "acme") is None
