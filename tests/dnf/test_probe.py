"""The dnf probe's health check of the rpm database, remembered while the database is unchanged.

Every probe runs before the scan's listing can start, so an rpm process there delays
every scan; an unchanged database (and rpm) gives the same answer, so it is asked once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd import process
from patchd.backends.base import BackendContext, ProbeStatus
from patchd.backends.dnf.backend import DnfBackend
from patchd.backends.rpm.rpmdb import RELEASEVER_PROVIDE, database_fingerprint
from patchd.platforms import RHEL
from patchd.target import Target
from tests.support.rpmroot import RpmRoot


@pytest.fixture
def rpm_queries(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every health check rpm is asked for (the gateway's own ``run``, spied on)."""
    calls: list[list[str]] = []
    real_run = process.run

    def spy(argv: list[str], **kwargs: object) -> process.CommandResult:
        if RELEASEVER_PROVIDE in argv:
            calls.append(list(argv))
        return real_run(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(process, "run", spy)
    return calls


def _probe(root: RpmRoot, work: Path) -> tuple[ProbeStatus, str]:
    probe = DnfBackend(BackendContext(Target.at(root.path), RHEL, work)).probe()
    return probe.status, probe.detail


def test_an_unchanged_database_is_checked_once_and_a_changed_one_again(
    dnf_root: RpmRoot, tmp_path: Path, rpm_queries: list[list[str]]
) -> None:
    work = tmp_path / "work"
    first = _probe(dnf_root, work)
    assert first[0] is ProbeStatus.PRESENT
    assert len(rpm_queries) == 1
    assert _probe(dnf_root, work) == first
    assert len(rpm_queries) == 1  # remembered: no rpm before the listing
    db = dnf_root.path / "var/lib/rpm"
    before = database_fingerprint(db)
    dnf_root.dnf("upgrade", "hello")
    assert database_fingerprint(db) != before
    assert _probe(dnf_root, work) == first
    assert len(rpm_queries) == 2  # the database changed: asked again


def test_a_database_broken_since_it_was_remembered_healthy_is_found_broken(
    dnf_root: RpmRoot, tmp_path: Path, rpm_queries: list[list[str]]
) -> None:
    work = tmp_path / "work"
    assert _probe(dnf_root, work)[0] is ProbeStatus.PRESENT
    memo = work / "dnf" / "rpmdb-health"
    remembered = memo.read_text()
    for name in ("rpmdb.sqlite-wal", "rpmdb.sqlite-shm"):
        (dnf_root.path / "var/lib/rpm" / name).unlink(missing_ok=True)
    (dnf_root.path / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"this is not a database\n")
    status, detail = _probe(dnf_root, work)
    assert status is ProbeStatus.BROKEN
    assert "rpm cannot read /var/lib/rpm" in detail
    assert len(rpm_queries) == 2
    assert memo.read_text() == remembered  # a failure is never remembered
    assert _probe(dnf_root, work)[0] is ProbeStatus.BROKEN
    assert len(rpm_queries) == 3


def test_a_reader_changes_nothing_the_fingerprint_covers(dnf_root: RpmRoot) -> None:
    db = dnf_root.path / "var/lib/rpm"
    before = database_fingerprint(db)
    assert before is not None
    dnf_root.versions()  # rpm -qa: SQLite's shared-memory file changes, the data does not
    assert database_fingerprint(db) == before
    assert database_fingerprint(db / "missing") is None
