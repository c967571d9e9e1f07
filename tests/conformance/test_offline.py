"""The interface's promises that need no real package manager, for every offline backend.

Each harness (see :mod:`tests.conformance.offline`) puts a recording fake in place of
the process gateway. Backends whose tools run here are in test_conformance.py (flatpak
is in both); the others (apk, snap, Homebrew, softwareupdate, Windows Update, winget,
Chocolatey, yum 3) are checked here, and so is the dnf backend driving dnf 5 (which
Debian does not package; dnf 4 runs for real in test_conformance.py): a new one is one
line in ``HARNESSES``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.base import Outcome, ProbeStatus, TransactionResult
from patchd.errors import BackendError
from patchd.models import PackageChange, Update
from patchd.transcript import Transcript
from tests.conformance import (
    offline_apk,
    offline_chocolatey,
    offline_dnf5,
    offline_flatpak,
    offline_homebrew,
    offline_snap,
    offline_softwareupdate,
    offline_windows_update,
    offline_winget,
    offline_yum,
)
from tests.conformance.offline import OfflineFixture, OfflineHarness

HARNESSES: list[OfflineHarness] = [
    offline_apk.HARNESS,
    offline_snap.HARNESS,
    offline_flatpak.HARNESS,
    offline_homebrew.HARNESS,
    offline_softwareupdate.HARNESS,
    offline_windows_update.HARNESS,
    offline_winget.HARNESS,
    offline_chocolatey.HARNESS,
    offline_dnf5.HARNESS,
    offline_yum.HARNESS,
]


@pytest.fixture(params=HARNESSES, ids=lambda h: h.test_id)
def fx(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> OfflineFixture:
    harness: OfflineHarness = request.param
    return harness.build(tmp_path, monkeypatch)


def _update(fx: OfflineFixture) -> Update:
    updates = {u.name: u for u in fx.backend.scan().updates}
    return updates[fx.update.name]


def test_probe_says_present_with_a_version(fx: OfflineFixture) -> None:
    probe = fx.backend.probe()
    assert probe.status is ProbeStatus.PRESENT, probe.detail
    assert probe.version


def test_scan_returns_updates_named_by_backend_with_ids(fx: OfflineFixture) -> None:
    update = _update(fx)
    assert update.backend == fx.backend.name
    assert (update.installed_version, update.available_version) == (fx.update.old, fx.update.new)
    assert update.arch == fx.update.arch
    assert update.id == f"{fx.backend.name}:{update.name}:{update.arch}={fx.update.new}"
    assert fx.commands.calls, "the scan ran the manager's listing"


def test_scan_changes_nothing(fx: OfflineFixture) -> None:
    before = fx.versions()
    _update(fx)
    assert fx.versions() == before


def test_apply_is_judged_from_the_database(fx: OfflineFixture) -> None:
    change = _update(fx).change()
    result = fx.backend.apply([change], Transcript())
    (verdict,) = result.results
    assert (verdict.outcome, verdict.found_version) == (Outcome.DONE, fx.update.new)
    assert fx.versions()[fx.update.name] == fx.update.new


def test_a_manager_that_claims_success_without_installing_is_not_believed(
    fx: OfflineFixture,
) -> None:
    change = _update(fx).change()
    fx.manager_installs(False)
    result = fx.backend.apply([change], Transcript())
    (verdict,) = result.results
    # An update with no installed version before (Windows Update, softwareupdate) is
    # written "" and may be found absent from the database (None) afterwards.
    found = verdict.found_version if fx.update.old else verdict.found_version or ""
    assert (verdict.outcome, found) == (Outcome.FAILED, fx.update.old)
    assert fx.versions()[fx.update.name] == fx.update.old
    assert not result.ok


def test_a_change_for_another_backend_is_refused_before_anything_runs(fx: OfflineFixture) -> None:
    update = _update(fx)
    fx.commands.calls.clear()
    foreign = PackageChange("elsewhere", update.name, update.arch, update.installed_version, "9")
    with pytest.raises(BackendError, match="belongs to elsewhere"):
        fx.backend.apply([foreign], Transcript())
    assert fx.commands.calls == []


def test_the_rollback_path_is_stated_before_applying(fx: OfflineFixture, tmp_path: Path) -> None:
    change = _update(fx).change()
    (source,) = fx.backend.prepare_rollback([change], tmp_path / "keep", Transcript())
    assert source.change == change
    assert source.available is fx.rollback_available
    assert source.detail  # why there is, or is not, a way back
    if not source.available:
        assert source.kept_file is None


def test_rollback_goes_back_where_a_path_was_stated_and_nowhere_else(
    fx: OfflineFixture, tmp_path: Path
) -> None:
    change = _update(fx).change()
    sources = fx.backend.prepare_rollback([change], tmp_path / "keep", Transcript())
    assert fx.backend.apply([change], Transcript()).ok
    kept = {s.change.key: s.kept_file for s in sources if s.kept_file is not None}
    if fx.rollback_available:
        result = fx.backend.rollback([change.reversed()], Transcript(), kept)
        assert result.ok, result
        assert fx.versions()[fx.update.name] == fx.update.old
        return
    # No way back was stated: the rollback is refused or fails, and nothing moves.
    after = fx.versions()
    try:
        refused: TransactionResult | None = fx.backend.rollback(
            [change.reversed()], Transcript(), kept
        )
    except BackendError:
        refused = None
    assert refused is None or not refused.ok
    assert fx.versions() == after
