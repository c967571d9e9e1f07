"""The installed set an agent's scans remember, against the real pacman in an Arch root.

The agent scans in a fresh worker, with a fresh session, every cycle; what one scan read
of pacman's local database the next reuses while the database is unchanged. Whatever
changes it — patchd's own apply and rollback, or pacman run by someone else — the next
scan must see.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchd.backends.installedmemo import InstalledMemo
from patchd.backends.pacman import backend as pacman_backend
from patchd.backends.pacman.localdb import database_fingerprint
from patchd.models import PackageChange
from patchd.scan import scan
from patchd.transcript import Transcript
from tests.support.installedmemo import (
    CallCounter,
    agent_session,
    installed,
    pending,
    shorten_settle,
    wait_until_settled,
)
from tests.support.pacmanrepo import BASE, BASE_VERSIONS, NEW_VERSIONS, PacmanCatalogue, PacmanRoot


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> CallCounter:
    """How often a scan reads the local database itself."""
    shorten_settle(monkeypatch)
    return CallCounter(monkeypatch, pacman_backend, "read_installed")


def _settle(root: PacmanRoot) -> None:
    wait_until_settled(lambda: database_fingerprint(root.path / "var/lib/pacman/local"))


def _memo_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "work" / "pacman" / "installed.json"


def test_an_unchanged_database_is_read_once_across_sessions(
    arch_root: PacmanRoot, tmp_path: Path, reads: CallCounter
) -> None:
    _settle(arch_root)
    reports = []
    for _ in range(3):  # as three agent cycles: a session each
        with agent_session(arch_root.path, tmp_path) as session:
            reports.append(scan(session))

    assert reads.calls == 1
    for report in reports:
        assert installed(report, "pacman") == arch_root.versions()
        assert pending(report)["hello"] == (BASE_VERSIONS["hello"], NEW_VERSIONS["hello"])
    assert _memo_file(tmp_path).is_file()


def test_upgrade_and_downgrade_behind_patchds_back_are_seen_by_the_next_scan(
    arch_root: PacmanRoot, pacman_catalogue: PacmanCatalogue, tmp_path: Path, reads: CallCounter
) -> None:
    _settle(arch_root)
    with agent_session(arch_root.path, tmp_path) as session:
        scan(session)
        scan(session)
        assert reads.calls == 1  # remembered

        arch_root.pacman("-S", "--noconfirm", "hello")  # pacman itself, not patchd
        _settle(arch_root)  # long after: only the fingerprint tells the change
        upgraded = scan(session)
        assert installed(upgraded, "pacman")["hello"] == NEW_VERSIONS["hello"]
        assert "hello" not in pending(upgraded)

        old = next(s for s in BASE if s.name == "hello")
        arch_root.pacman("-U", "--noconfirm", str(pacman_catalogue.old / old.filename))
        downgraded = scan(session)  # at once: within the settling time

    assert installed(downgraded, "pacman")["hello"] == BASE_VERSIONS["hello"]
    assert pending(downgraded)["hello"] == (BASE_VERSIONS["hello"], NEW_VERSIONS["hello"])
    assert installed(downgraded, "pacman") == arch_root.versions()
    assert reads.calls == 3


def test_patchds_own_upgrade_and_rollback_are_seen_by_the_next_scan(
    arch_root: PacmanRoot, tmp_path: Path, reads: CallCounter
) -> None:
    _settle(arch_root)
    change = PackageChange("pacman", "world", "any", BASE_VERSIONS["world"], NEW_VERSIONS["world"])
    with agent_session(arch_root.path, tmp_path) as session:
        scan(session)
        backend = session.backend("pacman")

        assert backend.apply([change], Transcript()).ok
        assert not _memo_file(tmp_path).exists()  # forgotten before pacman ran
        _settle(arch_root)
        upgraded = scan(session)
        assert installed(upgraded, "pacman")["world"] == NEW_VERSIONS["world"]
        assert "world" not in pending(upgraded)

        _settle(arch_root)
        scan(session)  # remembered again
        assert _memo_file(tmp_path).is_file()
        assert backend.rollback([change.reversed()], Transcript()).ok
        rolled_back = scan(session)

    assert installed(rolled_back, "pacman")["world"] == BASE_VERSIONS["world"]
    assert installed(rolled_back, "pacman") == arch_root.versions()


def test_a_database_changed_just_now_is_not_remembered(
    arch_root: PacmanRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real settling time: the root was written moments ago.
    reads = CallCounter(monkeypatch, pacman_backend, "read_installed")
    with agent_session(arch_root.path, tmp_path) as session:
        first = scan(session)
        second = scan(session)

    assert reads.calls == 2
    assert not _memo_file(tmp_path).exists()
    assert installed(first, "pacman") == installed(second, "pacman") == arch_root.versions()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"format": 1}',
        "[]",
        "TAMPERED",  # a valid memo for this database, its versions edited by hand
    ],
    ids=["garbage", "incomplete", "not-an-object", "other-fingerprint"],
)
def test_a_damaged_or_foreign_memo_is_ignored_and_replaced(
    arch_root: PacmanRoot, tmp_path: Path, reads: CallCounter, content: str
) -> None:
    _settle(arch_root)
    memo = _memo_file(tmp_path)
    with agent_session(arch_root.path, tmp_path) as session:
        scan(session)
    if content == "TAMPERED":
        doc = json.loads(memo.read_text())
        doc["fingerprint"] = "0" * 64
        doc["packages"] = doc["packages"].replace(BASE_VERSIONS["hello"], "9.9-1")
        content = json.dumps(doc)
    memo.write_text(content)

    with agent_session(arch_root.path, tmp_path) as session:
        report = scan(session)

    assert reads.calls == 2
    assert installed(report, "pacman") == arch_root.versions()
    remembered = InstalledMemo(memo, "pacman").recall(
        database_fingerprint(arch_root.path / "var/lib/pacman/local")
    )
    assert remembered is not None
    assert {p.name: p.version for p in remembered} == arch_root.versions()
