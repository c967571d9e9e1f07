"""The installed set an agent's scans remember, against the real dnf and rpm in a root.

See tests/pacman/test_installed_memo.py; the rpm database's query is what is counted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.rpm.rpmdb import RpmDatabase
from tests.support.installedmemo import (
    CallCounter,
    RpmTool,
    check_rpm_changes_behind_patchds_back_are_seen,
    check_rpm_patchds_own_changes_are_seen,
    check_rpm_unchanged_database_is_queried_once,
    shorten_settle,
)
from tests.support.rpmroot import RpmRoot

DNF = RpmTool(
    "dnf",
    upgrade=lambda root, name: root.dnf("upgrade", name),
    downgrade=lambda root, name, vr: root.dnf("downgrade", f"{name}-{vr}"),
)


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> CallCounter:
    shorten_settle(monkeypatch)
    return CallCounter(monkeypatch, RpmDatabase, "start_query")


def test_an_unchanged_database_is_queried_once_across_sessions(
    dnf_root: RpmRoot, tmp_path: Path, queries: CallCounter
) -> None:
    check_rpm_unchanged_database_is_queried_once(DNF, dnf_root, tmp_path, queries)


def test_upgrade_and_downgrade_by_dnf_itself_are_seen_by_the_next_scan(
    dnf_root: RpmRoot, tmp_path: Path, queries: CallCounter
) -> None:
    check_rpm_changes_behind_patchds_back_are_seen(DNF, dnf_root, tmp_path, queries)


@pytest.mark.usefixtures("queries")
def test_patchds_own_upgrade_and_rollback_are_seen_by_the_next_scan(
    dnf_root: RpmRoot, tmp_path: Path
) -> None:
    check_rpm_patchds_own_changes_are_seen(DNF, dnf_root, tmp_path)
