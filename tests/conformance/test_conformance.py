"""One suite, every backend whose tool runs here: the interface's promises, checked for real.

Each backend's fixture (see :mod:`tests.conformance.harness`) builds an isolated root;
these tests drive the backend through patchd's interface and check what it says
against the package manager's own database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from patchd import process
from patchd.backends.base import Outcome, ProbeStatus
from patchd.errors import BackendError
from patchd.models import Classification, PackageChange, Severity, Update
from patchd.transcript import Transcript
from tests.conformance import apt, dnf, flatpak, pacman, zypper
from tests.conformance.harness import Expected, Fixture, Harness
from tests.conftest import require

HARNESSES: list[Harness] = [
    apt.HARNESS,
    dnf.HARNESS,
    zypper.HARNESS,
    pacman.HARNESS,
    flatpak.HARNESS,
]


@pytest.fixture(params=HARNESSES, ids=lambda h: h.name)
def harness(request: pytest.FixtureRequest) -> Harness:
    h: Harness = request.param
    require(*h.tools, root=True)
    return h


def _digest(paths: list[Path]) -> dict[Path, str]:
    return {p: _fingerprint(p) for p in paths}


def _fingerprint(path: Path) -> str:
    """A file's content hash, a directory's sorted entries, or "-" for nothing there."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        return "\n".join(sorted(str(p) for p in path.rglob("*")))
    return "-"


@pytest.fixture
def fixture(harness: Harness, tmp_path: Path) -> Iterator[Fixture]:
    built = harness.build(tmp_path)
    host = list(built.host_state)
    before = _digest(host)
    yield built
    assert _digest(host) == before, "the backend changed the host's package database"


def _updates(fx: Fixture) -> dict[str, Update]:
    result = fx.backend.scan()
    updates = list(result.updates)
    advisories = fx.backend.advisories(updates)
    merged = [u.with_advisory(advisories[u.id]) if u.id in advisories else u for u in updates]
    return {u.name: u for u in merged}


def _change(update: Update) -> PackageChange:
    return update.change()


def _check_versions(expected: Expected, update: Update) -> None:
    assert (update.installed_version, update.available_version) == (expected.old, expected.new)
    if expected.arch is not None:
        assert update.arch == expected.arch


def test_probe_finds_the_tool_and_reports_its_version(fixture: Fixture) -> None:
    probe = fixture.backend.probe()
    assert probe.status is ProbeStatus.PRESENT, probe.detail
    assert probe.version


def test_probe_says_absent_where_there_is_no_package_database(
    harness: Harness, tmp_path: Path
) -> None:
    probe = harness.absent(tmp_path).probe()
    assert probe.status is ProbeStatus.ABSENT
    assert probe.detail


def test_installed_packages_agree_with_the_native_database(fixture: Fixture) -> None:
    installed = {p.name: p.version for p in fixture.backend.installed_packages()}
    native = fixture.versions()
    assert installed == native
    assert installed[fixture.security.name] == fixture.security.old
    assert installed[fixture.ordinary.name] == fixture.ordinary.old


def test_scan_lists_both_updates_with_their_versions(fixture: Fixture) -> None:
    updates = _updates(fixture)
    assert {fixture.security.name, fixture.ordinary.name} <= updates.keys()
    _check_versions(fixture.security, updates[fixture.security.name])
    _check_versions(fixture.ordinary, updates[fixture.ordinary.name])
    for update in updates.values():
        assert update.backend == fixture.backend.name
        assert update.id.startswith(f"{fixture.backend.name}:{update.name}:")


def test_security_metadata_comes_from_the_package_manager(fixture: Fixture) -> None:
    updates = _updates(fixture)
    if not fixture.has_security_metadata:
        # Nothing to take from the manager, so nothing may be claimed: no update is
        # security, and no CVE id or severity appears from anywhere else.
        for update in updates.values():
            assert update.classification is not Classification.SECURITY, update
            assert (update.cves, update.severity) == ((), Severity.UNKNOWN), update
        return
    security = updates[fixture.security.name]
    assert security.classification is Classification.SECURITY
    assert set(fixture.cves) <= set(security.cves)
    if fixture.severity_known:
        assert security.severity is not Severity.UNKNOWN
    ordinary = updates[fixture.ordinary.name]
    assert ordinary.classification is not Classification.SECURITY
    assert not ordinary.cves


def test_a_listing_starts_once_and_a_stopped_one_leaves_nothing_running(
    fixture: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan starts its listing early (``start_scan``); starting twice runs it once, and
    a listing no scan will collect (``stop_scan``) is gone, with all it started."""
    started: list[tuple[str, ...]] = []
    start = process.start

    def counted(argv: Sequence[str], **kwargs: Any) -> process.RunningCommand:
        started.append(tuple(argv))
        return start(argv, **kwargs)

    monkeypatch.setattr(process, "start", counted)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    fixture.backend.start_scan()
    once = list(started)
    assert once  # every backend here lists in the background
    fixture.backend.start_scan()
    assert started == once
    fixture.backend.stop_scan()
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before

    updates = _updates(fixture)  # the next scan lists afresh
    assert {fixture.security.name, fixture.ordinary.name} <= updates.keys()


def test_a_new_copy_of_the_backend_takes_the_commands_an_earlier_one_started(
    fixture: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the agent's worker (Session.renewed): the service's copy of the backend starts
    the listing, a new backend of the same kind starts exactly the same commands and
    takes them as they run: nothing is started twice, and its scan is complete."""
    spawned: list[tuple[str, ...]] = []
    popen = process._popen

    def counted(argv: Sequence[str], *args: Any) -> Any:
        spawned.append(tuple(argv))
        return popen(argv, *args)

    monkeypatch.setattr(process, "_popen", counted)
    earlier = fixture.backend
    with process.recording_starts() as ahead:
        earlier.start_scan()
    assert ahead
    assert len(spawned) == len(ahead)

    later = type(earlier)(earlier.context)
    with process.started_ahead(ahead):
        later.start_scan()
    assert len(spawned) == len(ahead)  # every command taken over: none started again
    updates = {u.name: u for u in later.scan().updates}
    assert {fixture.security.name, fixture.ordinary.name} <= updates.keys()
    assert not any(command.running() for command in ahead)  # collected (or not needed)


def test_scan_changes_nothing(fixture: Fixture) -> None:
    before = fixture.versions()
    _updates(fixture)
    assert fixture.versions() == before


def test_apply_moves_the_package_and_the_database_agrees(fixture: Fixture) -> None:
    update = _updates(fixture)[fixture.security.name]
    result = fixture.backend.apply([_change(update)], Transcript())
    assert result.ok, result
    (verdict,) = result.results
    assert verdict.outcome is Outcome.DONE
    assert verdict.found_version == fixture.security.new
    versions = fixture.versions()
    assert versions[fixture.security.name] == fixture.security.new
    assert versions[fixture.ordinary.name] == fixture.ordinary.old  # only what was chosen


def test_apply_of_a_version_no_repository_has_fails_and_changes_nothing(fixture: Fixture) -> None:
    update = _updates(fixture)[fixture.ordinary.name]
    before = fixture.versions()
    missing = PackageChange(
        update.backend, update.name, update.arch, update.installed_version, "99.9"
    )
    result = fixture.backend.apply([missing], Transcript())
    assert not result.ok
    assert result.results[0].outcome is Outcome.FAILED
    assert result.results[0].found_version == fixture.ordinary.old
    assert fixture.versions() == before


def test_rollback_returns_the_package_to_its_old_version(fixture: Fixture, tmp_path: Path) -> None:
    change = _change(_updates(fixture)[fixture.security.name])
    sources = fixture.backend.prepare_rollback([change], tmp_path / "keep", Transcript())
    assert [s.available for s in sources] == [True], sources
    assert fixture.backend.apply([change], Transcript()).ok
    kept = {s.change.key: s.kept_file for s in sources if s.kept_file is not None}
    result = fixture.backend.rollback([change.reversed()], Transcript(), kept)
    assert result.ok, result
    assert fixture.versions()[fixture.security.name] == fixture.security.old


def test_a_change_for_another_backend_is_refused_before_anything_runs(fixture: Fixture) -> None:
    update = _updates(fixture)[fixture.security.name]
    before = fixture.versions()
    foreign = PackageChange("elsewhere", update.name, update.arch, update.installed_version, "9")
    with pytest.raises(BackendError, match="belongs to elsewhere"):
        fixture.backend.apply([foreign], Transcript())
    assert fixture.versions() == before
