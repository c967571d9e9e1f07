"""What the installed-set memo tests of every backend share: a session, a spy, a wait.

The memo (:mod:`patchd.backends.installedmemo`) trusts a database only once its files
have been left alone for ``SETTLE_S``; the tests shorten that and wait for it, by the
backend's own fingerprint, instead of sleeping a fixed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from patchd.backends import installedmemo
from patchd.backends.rpm.rpmdb import settled_database_fingerprint
from patchd.config import load_config
from patchd.models import PackageChange
from patchd.scan import ScanReport, scan
from patchd.session import Session
from patchd.target import Target
from patchd.transcript import Transcript
from tests.support.rpmroot import DB_DIR, RpmRoot

TEST_SETTLE_S = 0.3  # long enough for every file-system clock here, short for a test
SETTLE_BOUND_S = 30.0  # a database not settled after this is being written to


def agent_session(root: Path, tmp_path: Path, config_text: str = "tags: [test]\n") -> Session:
    """A session as the agent's worker opens one (an empty policy: it only scans)."""
    config = tmp_path / "agent.yaml"
    config.write_text(config_text)
    return Session(load_config(config), Target.at(root), tmp_path / "state")


def shorten_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installedmemo, "SETTLE_S", TEST_SETTLE_S)


def wait_until_settled(fingerprint: Callable[[], str | None]) -> str:
    """Wait until the database has been left alone long enough to be remembered."""
    deadline = time.monotonic() + SETTLE_BOUND_S
    while (found := fingerprint()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"the database did not settle within {SETTLE_BOUND_S:g} s")
        time.sleep(0.05)
    return found


class CallCounter:
    """Counts the calls of ``owner.name`` (a spy: the real function still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.calls = 0
        real = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


def installed(report: ScanReport, backend: str) -> dict[str, str]:
    """Package → version as the scan's inventory reports them."""
    return {p.name: p.version for p in report.inventory.packages if p.backend == backend}


def pending(report: ScanReport) -> dict[str, tuple[str, str]]:
    """Package → (installed, available) for every update the scan reports."""
    return {u.name: (u.installed_version, u.available_version) for u in report.updates}


# -- dnf and zypper: one rpm database, two front ends ---------------------------------------


@dataclass(frozen=True)
class RpmTool:
    """How the tests change an rpm root behind patchd's back, with dnf or zypper itself."""

    backend: str
    upgrade: Callable[[RpmRoot, str], object]  # (root, name) -> upgrade to the newest
    downgrade: Callable[[RpmRoot, str, str], object]  # (root, name, version-release)


def rpm_fingerprint(root: RpmRoot) -> str | None:
    return settled_database_fingerprint(root.path / DB_DIR.lstrip("/"))


def rpm_memo_file(tmp_path: Path, backend: str) -> Path:
    return tmp_path / "state" / "work" / backend / "installed.json"


def check_rpm_unchanged_database_is_queried_once(
    tool: RpmTool, root: RpmRoot, tmp_path: Path, queries: CallCounter
) -> None:
    wait_until_settled(lambda: rpm_fingerprint(root))
    reports = []
    for _ in range(3):  # as three agent cycles: a session each
        with agent_session(root.path, tmp_path) as session:
            reports.append(scan(session))

    assert queries.calls == 1
    for report in reports:
        assert installed(report, tool.backend) == root.versions()
        assert pending(report)["hello"] == ("1.0-1", "1.1-1")
    assert rpm_memo_file(tmp_path, tool.backend).is_file()


def check_rpm_changes_behind_patchds_back_are_seen(
    tool: RpmTool, root: RpmRoot, tmp_path: Path, queries: CallCounter
) -> None:
    wait_until_settled(lambda: rpm_fingerprint(root))
    with agent_session(root.path, tmp_path) as session:
        scan(session)
        scan(session)
        assert queries.calls == 1  # remembered

        tool.upgrade(root, "hello")  # the tool itself, not patchd
        wait_until_settled(lambda: rpm_fingerprint(root))  # only the fingerprint tells now
        upgraded = scan(session)
        assert installed(upgraded, tool.backend)["hello"] == "1.1-1"
        assert "hello" not in pending(upgraded)

        tool.downgrade(root, "hello", "1.0-1")
        downgraded = scan(session)  # at once: within the settling time

    assert installed(downgraded, tool.backend)["hello"] == "1.0-1"
    assert pending(downgraded)["hello"] == ("1.0-1", "1.1-1")
    assert installed(downgraded, tool.backend) == root.versions()
    assert queries.calls == 3


def check_rpm_patchds_own_changes_are_seen(tool: RpmTool, root: RpmRoot, tmp_path: Path) -> None:
    wait_until_settled(lambda: rpm_fingerprint(root))
    memo = rpm_memo_file(tmp_path, tool.backend)
    change = PackageChange(tool.backend, "world", "noarch", "1.0-1", "2.0-1")
    with agent_session(root.path, tmp_path) as session:
        scan(session)
        assert memo.is_file()
        backend = session.backend(tool.backend)

        assert backend.apply([change], Transcript()).ok
        assert not memo.exists()  # forgotten before the tool ran
        wait_until_settled(lambda: rpm_fingerprint(root))
        upgraded = scan(session)
        assert installed(upgraded, tool.backend)["world"] == "2.0-1"
        assert "world" not in pending(upgraded)

        assert memo.is_file()  # remembered again
        assert backend.rollback([change.reversed()], Transcript()).ok
        rolled_back = scan(session)

    assert installed(rolled_back, tool.backend)["world"] == "1.0-1"
    assert installed(rolled_back, tool.backend) == root.versions()
