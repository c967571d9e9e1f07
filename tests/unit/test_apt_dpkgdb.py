"""Tests for patchd.backends.apt.dpkgdb: dpkg's status file and journal, read directly.

The crafted status file is checked against ``dpkg-query`` where dpkg is installed, so it says
what dpkg would say about the same file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from patchd.backends.apt.dpkgdb import DpkgDatabase, DpkgEntry
from patchd.errors import BackendError
from patchd.models import InstalledPackage

DATA = Path(__file__).resolve().parent.parent / "data" / "apt"


def package(
    name: str, status: str, version: str | None = "1.0-1", arch: str = "amd64", *extra: str
) -> str:
    lines = [
        f"Package: {name}",
        f"Status: {status}",
        "Priority: optional",
        "Maintainer: Tests <tests@patchd.invalid>",
        f"Architecture: {arch}",
        *extra,
        *([f"Version: {version}"] if version is not None else []),
        "Description: a package",
        " with a longer description",
    ]
    return "\n".join(lines) + "\n"


STATUS = "\n".join(
    [
        package("acme", "install ok installed", "1:2.0-1", "amd64", "Source: acme-src (1:2.0-0)"),
        package("libacme1", "install ok installed", "2.0-1", "amd64", "Multi-Arch: same"),
        package("libacme1", "install ok installed", "2.0-1", "i386", "Multi-Arch: same"),
        package("pinned", "hold ok installed", "3.1-2"),
        package("removed", "deinstall ok config-files", "0.9-1"),
        package("gone", "purge ok not-installed", None),
        package("halfconf", "install ok half-configured", "1.1-1"),
        package("unpacked", "install ok unpacked", "1.2-1"),
        package("broken", "install reinstreq half-installed", "1.3-1"),
        package(
            "waiting", "install ok triggers-pending", "1.4-1", "amd64", "Triggers-Pending: ldconfig"
        ),
    ]
)
MALFORMED = "Package: nostatus\nVersion: 1\n\nPackage: badstatus\nStatus: install installed\n\n"


def admin_dir(tmp_path: Path, status: str = STATUS) -> Path:
    admin = tmp_path / "dpkg"
    (admin / "updates").mkdir(parents=True)
    (admin / "info").mkdir()
    (admin / "status").write_text(status, encoding="utf-8")
    return admin


def dpkg_query(admin: Path, fmt: str) -> list[str]:
    if shutil.which("dpkg-query") is None:
        pytest.skip("dpkg-query is not installed")
    out = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f", fmt + "\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return sorted(out.splitlines())


@pytest.fixture
def db(tmp_path: Path) -> DpkgDatabase:
    return DpkgDatabase(admin_dir(tmp_path))


def test_entries_agree_with_dpkg_query(db: DpkgDatabase) -> None:
    # dpkg-query -W leaves out packages that are not installed and have no configuration.
    ours = sorted(
        f"{e.name} {e.arch} {e.version} {e.want} {e.flag} {e.state} {e.source}"
        for e in db.entries()
        if e.state != "not-installed"
    )
    fmt = "${Package} ${Architecture} ${Version} ${db:Status-Want} ${db:Status-Eflag} ${db:Status-Status} ${source:Package}"
    assert ours == dpkg_query(db.admin_dir, fmt)


def test_real_status_sample_agrees_with_dpkg_query(tmp_path: Path) -> None:
    db = DpkgDatabase(admin_dir(tmp_path, (DATA / "dpkg-status.txt").read_text(encoding="utf-8")))
    ours = sorted(f"{e.name} {e.arch} {e.version} {e.source}" for e in db.entries())
    assert ours == dpkg_query(
        db.admin_dir, "${Package} ${Architecture} ${Version} ${source:Package}"
    )
    assert {e.name: e.source for e in db.entries()}["libcap2"] == "libcap2"


def test_entry_fields(db: DpkgDatabase) -> None:
    by_name = {(e.name, e.arch): e for e in db.entries()}
    assert by_name[("acme", "amd64")] == DpkgEntry(
        "acme", "amd64", "1:2.0-1", "install", "ok", "installed", "acme-src"
    )


def test_stanzas_without_a_valid_status_are_skipped(tmp_path: Path) -> None:
    db = DpkgDatabase(admin_dir(tmp_path, MALFORMED + package("acme", "install ok installed")))
    assert [e.name for e in db.entries()] == ["acme"]


@pytest.mark.parametrize(
    ("name", "present", "unfinished"),
    [
        ("acme", True, False),
        ("pinned", True, False),
        ("removed", False, False),
        ("gone", False, False),
        ("halfconf", True, True),
        ("unpacked", True, True),
        ("broken", True, True),
        ("waiting", True, True),
    ],
    ids=str,
)
def test_present_and_unfinished(
    db: DpkgDatabase, name: str, present: bool, unfinished: bool
) -> None:
    (entry,) = [e for e in db.entries() if e.name == name]
    assert (entry.present, entry.unfinished) == (present, unfinished)


def test_installed_and_versions(db: DpkgDatabase) -> None:
    present = [
        "acme",
        "libacme1",
        "libacme1",
        "pinned",
        "halfconf",
        "unpacked",
        "broken",
        "waiting",
    ]
    assert [p.name for p in db.installed()] == present
    assert db.installed()[0] == InstalledPackage("acme", "1:2.0-1", "amd64", "apt", "installed")
    versions = db.versions()
    assert versions[("libacme1", "i386")] == versions[("libacme1", "amd64")] == "2.0-1"
    assert ("removed", "amd64") not in versions


def test_held(db: DpkgDatabase) -> None:
    assert db.held() == {"pinned"}


def test_interrupted_lists_unfinished_packages(db: DpkgDatabase) -> None:
    assert db.interrupted() == [
        "halfconf:amd64 is half-configured",
        "unpacked:amd64 is unpacked",
        "broken:amd64 is half-installed (reinstall required)",
        "waiting:amd64 is triggers-pending",
    ]


def test_interrupted_counts_journal_entries(tmp_path: Path) -> None:
    admin = admin_dir(tmp_path, package("acme", "install ok installed"))
    for name in ("0000", "0001", "tmp.i"):
        (admin / "updates" / name).write_text("Package: acme\n")
    assert DpkgDatabase(admin).interrupted() == [
        f"2 unapplied journal entries in {admin / 'updates'}"
    ]


@pytest.mark.parametrize("updates", ["empty", "missing"])
def test_a_clean_database_is_not_interrupted(tmp_path: Path, updates: str) -> None:
    admin = admin_dir(tmp_path, package("acme", "install ok installed"))
    if updates == "missing":
        (admin / "updates").rmdir()
    assert DpkgDatabase(admin).interrupted() == []


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("acme", "1:2.0-1"),
        ("libacme1", "2.0-1"),
        ("pinned", "3.1-2"),
        ("removed", None),
        ("gone", None),
        ("halfconf", None),
        ("missing", None),
        ("acm", None),
        ("libacme", None),
    ],
    ids=str,
)
def test_version_of(db: DpkgDatabase, name: str, version: str | None) -> None:
    assert db.version_of(name) == version


def test_version_of_the_last_stanza_without_a_final_newline(tmp_path: Path) -> None:
    status = (
        package("first", "install ok installed", "1")
        + "\n"
        + package("last", "install ok installed", "2")
    )
    db = DpkgDatabase(admin_dir(tmp_path, status.rstrip("\n")))
    assert (db.version_of("first"), db.version_of("last")) == ("1", "2")


@pytest.mark.parametrize("method", ["entries", "version_of"])
def test_unreadable_database_raises(tmp_path: Path, method: str) -> None:
    db = DpkgDatabase(tmp_path / "nowhere")
    with pytest.raises(BackendError, match="cannot read the dpkg database"):
        db.entries() if method == "entries" else db.version_of("acme")


def test_parse_is_reused_while_the_file_is_unchanged(db: DpkgDatabase) -> None:
    assert db.entries() is db.entries()


def test_replaced_file_is_read_again(db: DpkgDatabase) -> None:
    first = db.entries()
    new = db.admin_dir / "status-new"
    new.write_text(package("acme", "install ok installed", "1:3.0-1"), encoding="utf-8")
    os.replace(new, db.status_path)  # what dpkg does
    assert [e.version for e in db.entries()] == ["1:3.0-1"]
    assert db.entries() is not first
    assert db.version_of("acme") == "1:3.0-1"
