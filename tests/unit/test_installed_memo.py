"""Unit tests for patchd.backends.installedmemo: the fingerprint and the memo file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from patchd.backends.installedmemo import (
    SETTLE_S,
    InstalledMemo,
    settled_fingerprint,
)
from patchd.models import InstalledPackage


def _old_file(path: Path, text: str = "x") -> os.stat_result:
    path.write_text(text)
    return os.stat(path)


def test_a_file_changed_within_the_settling_time_gives_no_fingerprint(tmp_path: Path) -> None:
    st = _old_file(tmp_path / "db")
    changed_at = max(st.st_mtime, st.st_ctime)

    assert settled_fingerprint([("db", st)], now=changed_at + SETTLE_S / 2) is None
    assert settled_fingerprint([("db", st)], now=changed_at + SETTLE_S * 2) is not None


def test_the_fingerprint_follows_size_inode_and_times(tmp_path: Path) -> None:
    path = tmp_path / "db"
    before = _old_file(path, "one")
    later = max(before.st_mtime, before.st_ctime) + 3600
    os.replace(_write(tmp_path / "new", "two"), path)  # a new inode, as rpm and dpkg write
    after = os.stat(path)

    assert settled_fingerprint([("db", before)], now=later) != settled_fingerprint(
        [("db", after)], now=later
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _stat(mtime_s: int, ctime_s: int) -> os.stat_result:
    """A file's ``stat`` with the given times (1 inode, 10 bytes)."""
    times = {
        "st_mtime": float(mtime_s),
        "st_ctime": float(ctime_s),
        "st_mtime_ns": mtime_s * 10**9,
        "st_ctime_ns": ctime_s * 10**9,
    }
    return os.stat_result((0o100644, 1, 2, 1, 0, 0, 10, mtime_s, mtime_s, ctime_s), times)


def test_a_file_whose_ctime_moves_on_read_is_judged_without_it() -> None:
    read_before, read_again = _stat(1000, 1000), _stat(1000, 2000)  # only the ctime moved
    later = 10_000.0

    assert settled_fingerprint([("db-wal", read_before)], now=later) != settled_fingerprint(
        [("db-wal", read_again)], now=later
    )
    judged = {"db-wal"}
    assert settled_fingerprint(
        [("db-wal", read_before)], ctime_moves_on_read=judged, now=later
    ) == settled_fingerprint([("db-wal", read_again)], ctime_moves_on_read=judged, now=later)
    # ... and its recent ctime does not keep it from settling.
    assert settled_fingerprint(
        [("db-wal", _stat(1000, 9999))], ctime_moves_on_read=judged, now=later
    )


def test_keep_then_recall_gives_the_same_packages(tmp_path: Path) -> None:
    memo = InstalledMemo(tmp_path / "work" / "installed.json", "pacman")
    packages = [
        InstalledPackage("hello", "1.0-1", "x86_64", "pacman"),
        InstalledPackage("half", "2:3.4-5", "any", "pacman", "half-installed"),
    ]

    memo.keep("f1", packages)

    assert memo.recall("f1") == packages
    assert memo.recall("f2") is None
    assert memo.recall(None) is None


@pytest.mark.parametrize("field", ["na\tme", "1.0\n-1"], ids=["tab-in-name", "newline-in-version"])
def test_a_package_the_format_cannot_hold_is_not_remembered(tmp_path: Path, field: str) -> None:
    memo = InstalledMemo(tmp_path / "installed.json", "pacman")
    memo.keep("f1", [InstalledPackage("hello", "1.0-1", "any", "pacman")])

    memo.keep("f2", [InstalledPackage(field, field, "any", "pacman")])

    assert not memo.path.exists()  # the old memo is gone too: it no longer describes the db
    assert memo.recall("f2") is None


def test_forget_removes_the_memo_and_tolerates_its_absence(tmp_path: Path) -> None:
    memo = InstalledMemo(tmp_path / "installed.json", "dnf")
    memo.keep("f1", [InstalledPackage("hello", "1.0-1", "noarch", "dnf")])

    memo.forget()
    memo.forget()

    assert not memo.path.exists()
    assert memo.recall("f1") is None


def test_a_memo_of_another_backend_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    InstalledMemo(path, "dnf").keep("f1", [InstalledPackage("hello", "1.0-1", "noarch", "dnf")])

    assert InstalledMemo(path, "zypper").recall("f1") is None


@pytest.mark.parametrize(("started_ago_s", "remembered"), [(0.0, True), (SETTLE_S * 2, False)])
def test_an_rpm_query_taken_over_as_it_ran_is_remembered_only_if_it_started_after_the_settling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started_ago_s: float, remembered: bool
) -> None:
    """A query started ahead (process.started_ahead) may have read the database before the
    fingerprint was taken; the fingerprint vouches only for the last SETTLE_S seconds."""
    import time
    from types import SimpleNamespace
    from typing import Any

    from patchd.backends.rpm import rpmdb

    packages = [InstalledPackage("bash", "5.2-1", "x86_64", "dnf")]
    query = SimpleNamespace(started_at=time.monotonic() - started_ago_s)
    database: Any = SimpleNamespace(
        target=SimpleNamespace(path=lambda p: tmp_path / p.lstrip("/")),
        db_dir="/var/lib/rpm",
        start_query=lambda: query,
    )
    monkeypatch.setattr(rpmdb, "settled_database_fingerprint", lambda path: "unchanged")
    monkeypatch.setattr(rpmdb.RpmDatabase, "collect", staticmethod(lambda running, b: packages))
    memo = InstalledMemo(tmp_path / "installed.json", "dnf")

    snapshot = rpmdb.InstalledSnapshot(database, "dnf", memo)
    snapshot.start()

    assert snapshot.get() == packages
    assert memo.recall("unchanged") == (packages if remembered else None)
