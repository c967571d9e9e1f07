"""The pacman backend's parsers, on output captured from the real pacman (tests/data/pacman)."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.pacman.listing import UpgradableEntry, parse_upgradable
from patchd.backends.pacman.localdb import read_installed
from patchd.backends.pacman.syncinfo import SyncPackage, parse_sync_info
from patchd.errors import BackendError
from patchd.models import InstalledPackage

DATA = Path(__file__).resolve().parent.parent / "data" / "pacman"


def test_upgradable_lines_with_an_ignored_package() -> None:
    entries, unknown = parse_upgradable((DATA / "Qu.stdout").read_text())
    assert unknown == []
    assert entries[0] == UpgradableEntry("clash", "1.0-1", "2.0-1", ignored=False)
    assert UpgradableEntry("pinned", "1.0-1", "1.1-1", ignored=True) in entries
    assert [e.name for e in entries] == ["clash", "fragile", "hello", "linux", "pinned", "world"]


def test_lines_that_are_not_updates_are_set_aside_not_guessed() -> None:
    entries, unknown = parse_upgradable("hello 1.0-1 -> 1.1-1\nwarning: something new\n\n")
    assert [e.name for e in entries] == ["hello"]
    assert unknown == ["warning: something new"]


def test_sync_info_gives_repository_name_version_and_arch_of_each_found_package() -> None:
    found = parse_sync_info((DATA / "Si.stdout").read_text())
    assert found == [
        SyncPackage("core", "hello", "1.1-1", "any"),
        SyncPackage("core", "linux", "6.1.2-1", "x86_64"),
    ]


def test_the_local_database_read_directly(tmp_path: Path) -> None:
    local = tmp_path / "local"
    (local / "linux-6.1.1-1").mkdir(parents=True)
    (local / "linux-6.1.1-1" / "desc").write_bytes((DATA / "local-desc").read_bytes())
    (local / "ALPM_DB_VERSION").write_text("9\n")
    assert read_installed(local) == [InstalledPackage("linux", "6.1.1-1", "x86_64", "pacman")]


@pytest.mark.parametrize(
    "desc",
    [None, "%NAME%\nhello\n\n", "%VERSION%\n1.0-1\n\n%NAME%\n\n"],
    ids=["no-desc", "no-version", "empty-name"],
)
def test_a_damaged_entry_is_an_error_naming_it(tmp_path: Path, desc: str | None) -> None:
    local = tmp_path / "local"
    (local / "hello-1.0-1").mkdir(parents=True)
    if desc is not None:
        (local / "hello-1.0-1" / "desc").write_text(desc)
    with pytest.raises(BackendError, match=r"hello-1.0-1 is damaged .*pacman -Dk"):
        read_installed(local)


def test_a_missing_database_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=f"cannot read pacman's local database {tmp_path}/nope"):
        read_installed(tmp_path / "nope")
