"""``patchd apply`` against the real pacman in an isolated Arch root."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Patchd
from tests.support.pacmanrepo import BASE_VERSIONS, NEW_VERSIONS, PacmanRoot


def _items(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in document["run"]["items"]}


def _transcript_argvs(patchd: Patchd, run_id: str) -> list[list[str]]:
    """The commands a run recorded, read from patchd's state database."""
    db = sqlite3.connect(patchd.state_dir / "state.db")
    try:
        rows = db.execute(
            "SELECT argv FROM run_transcript WHERE run_id = ? ORDER BY rowid", (run_id,)
        ).fetchall()
    finally:
        db.close()
    return [argv for (text,) in rows if text and (argv := json.loads(text))]


def test_apply_of_named_packages_installs_exactly_those_from_the_repository(
    patchd: Patchd, arch_root: PacmanRoot
) -> None:
    result = patchd("apply", "--yes", "--json", "hello", "world", "linux")
    assert result.returncode == 0, result.stderr
    run = result.json()["run"]
    assert run["status"] == "succeeded"
    for name in ("hello", "world", "linux"):
        assert _items(result.json())[name]["outcome"] == "done"
    versions = arch_root.versions()
    changed = {n for n in versions if versions[n] != BASE_VERSIONS[n]}
    assert changed == {"hello", "world", "linux"}
    assert all(versions[n] == NEW_VERSIONS[n] for n in changed)
    # The command pacman ran: every path inside the root, the exact repository/package.
    r = str(arch_root.path)
    installs = [a for a in _transcript_argvs(patchd, run["id"]) if "-S" in a]
    assert installs == [
        [
            "pacman",
            "--root", r,
            "--dbpath", f"{r}/var/lib/pacman",
            "--config", f"{r}/etc/pacman.conf",
            "--cachedir", f"{r}/var/cache/pacman/pkg",
            "--logfile", f"{r}/var/log/pacman.log",
            "--hookdir", f"{r}/etc/pacman.d/hooks",
            "--gpgdir", f"{r}/etc/pacman.d/gnupg",
            "--noconfirm", "--noprogressbar", "--color", "never",
            "-S", "core/hello", "core/world", "core/linux",
        ]
    ]  # fmt: skip
    log = (arch_root.path / "var/log/pacman.log").read_text()
    assert "upgraded linux (6.1.1-1 -> 6.1.2-1)" in log  # pacman logged inside the root


def test_a_failing_scriptlet_leaves_the_package_upgraded_and_the_run_says_so(
    patchd: Patchd, arch_root: PacmanRoot
) -> None:
    # pacman does not undo a package whose scriptlet fails: the database has the new
    # version, and that is the verdict; the run's notes name the scriptlet's failure.
    result = patchd("apply", "--yes", "--json", "fragile", "hello")
    assert result.returncode == 0, result.stderr
    run = result.json()["run"]
    assert _items(result.json())["fragile"]["outcome"] == "done"
    assert arch_root.versions()["fragile"] == NEW_VERSIONS["fragile"]
    assert any("scriptlet of fragile failed" in n for n in run["notes"]), run["notes"]


def test_a_conflicting_package_fails_the_transaction_and_nothing_changes(
    patchd: Patchd, arch_root: PacmanRoot
) -> None:
    # "clash" 2.0 would overwrite a file "world" owns: pacman refuses the whole transaction.
    result = patchd("apply", "--yes", "--json", "clash", "hello")
    assert result.returncode == 1
    run = result.json()["run"]
    assert run["status"] == "failed"
    items = _items(result.json())
    assert items["clash"]["outcome"] == "failed"
    assert "usr/share/shared/world.txt exists in filesystem" in items["clash"]["detail"]
    assert items["hello"]["outcome"] == "failed"
    assert "conflicting files" in items["hello"]["detail"]
    assert arch_root.versions() == BASE_VERSIONS


def test_apply_all_skips_what_the_administrator_holds(
    patchd: Patchd, arch_root: PacmanRoot
) -> None:
    result = patchd("apply", "--yes", "--json")
    assert "pinned" not in _items(result.json())
    assert arch_root.versions()["pinned"] == BASE_VERSIONS["pinned"]


@pytest.fixture
def lock_holder(arch_root: PacmanRoot) -> Iterator[subprocess.Popen[str]]:
    """A process that holds pacman's lock the way pacman does: the file, kept open."""
    lock = arch_root.path / "var/lib/pacman/db.lck"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f = open({str(lock)!r}, 'x'); print('held', flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "held\n"
    with holder:  # closes its pipes when done
        yield holder
        holder.kill()
    lock.unlink(missing_ok=True)


def test_a_held_lock_is_waited_for_then_reported_with_its_holder(
    patchd: Patchd, arch_root: PacmanRoot, lock_holder: subprocess.Popen[str]
) -> None:
    result = patchd("apply", "--yes", "hello")
    assert result.returncode == 75, result.stderr
    assert f"held by process {lock_holder.pid} (python" in result.stderr
    assert arch_root.versions() == BASE_VERSIONS


def test_a_stale_lock_is_reported_not_removed(patchd: Patchd, arch_root: PacmanRoot) -> None:
    lock = arch_root.path / "var/lib/pacman/db.lck"
    lock.touch()
    result = patchd("apply", "--yes", "hello")
    assert result.returncode == 1
    assert "no process has it open" in result.stderr
    assert "Traceback" not in result.stderr
    assert lock.exists()
    assert arch_root.versions() == BASE_VERSIONS


def test_rollback_returns_the_packages_from_the_kept_files(
    patchd: Patchd, arch_root: PacmanRoot
) -> None:
    applied = patchd("apply", "--yes", "--json", "hello", "fragile")
    run = applied.json()["run"]
    for item in run["items"]:
        assert item["rollback"]["available"] is True, item
    # The cache is cleaned after the run (paccache does this): the kept copy still serves.
    for cached in (arch_root.path / "var/cache/pacman/pkg").glob("*-1.0-1-any.pkg.tar.zst"):
        cached.unlink()
    result = patchd("rollback", "--json", run["id"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.json()["run"]["status"] == "succeeded"
    assert arch_root.versions() == BASE_VERSIONS
    kept = Path(patchd.state_dir / "runs" / run["id"] / "packages")
    downgrades = [a for a in _transcript_argvs(patchd, result.json()["run"]["id"]) if "-U" in a]
    assert len(downgrades) == 1
    assert sorted(downgrades[0][downgrades[0].index("-U") + 1 :]) == sorted(
        str(p) for p in kept.glob("*.pkg.tar.zst")
    )


def test_without_the_old_package_there_is_honestly_no_way_back(
    patchd: Patchd, arch_root: PacmanRoot
) -> None:
    (arch_root.path / "var/cache/pacman/pkg/world-1.0-1-any.pkg.tar.zst").unlink()
    applied = patchd("apply", "--yes", "--json", "world")
    item = _items(applied.json())["world"]
    assert item["outcome"] == "done"
    assert item["rollback"]["available"] is False
    assert "not in pacman's package cache" in item["rollback"]["detail"]
    result = patchd("rollback", "--json", applied.json()["run"]["id"])
    assert result.returncode == 1
    rollback = result.json()["run"]
    assert rollback["status"] == "failed"
    assert any("cache has no such package; not attempted" in n for n in rollback["notes"])
    assert arch_root.versions()["world"] == NEW_VERSIONS["world"]
