"""A run that rebooted the endpoint resumes after the boot and completes its health checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchd.config import AgentConfig
from patchd.runs.journal import RunJournal, Step
from patchd.runs.patchrun import PatchRun
from patchd.scan import scan
from patchd.session import Session
from patchd.target import Target
from tests.support.aptroot import AptRoot

BOOT_BEFORE = 1_000.0  # the boot time the pending step recorded


@pytest.fixture
def session(apt_root: AptRoot, tmp_path: Path) -> Iterator[Session]:
    with Session(AgentConfig(), Target.at(apt_root.path), tmp_path / "state") as s:
        yield s


def _pending_run(session: Session) -> str:
    """A run whose journal stops at reboot-pending, with hello installed, as a reboot leaves it."""
    updates = [u for u in scan(session).updates if u.name == "hello"]
    run = PatchRun.plan(session, updates, policy=None)
    assert run._install(updates)  # the transaction ran, as before the reboot
    run._verify()
    RunJournal(session.store, run.run_id).append(
        Step.REBOOT_PENDING, datetime.now(UTC), {"boot_time": BOOT_BEFORE, "reason": "kernel"}
    )
    return run.run_id


def test_after_the_reboot_the_run_checks_health_and_commits(
    session: Session, apt_root: AptRoot
) -> None:
    run_id = _pending_run(session)
    record = PatchRun(session, run_id, policy=None, boot_time=lambda: BOOT_BEFORE + 60).resume()
    assert record.status == "succeeded"
    steps = [s for s, _ in RunJournal(session.store, run_id).steps()]
    assert steps[-3:] == [Step.REBOOT_PENDING, Step.HEALTH_CHECKED, Step.COMMITTED]
    assert "rebooted: checking health now" in record.notes
    assert apt_root.versions()["hello"] == "1.1"


def test_before_the_reboot_happens_the_run_keeps_waiting(session: Session) -> None:
    run_id = _pending_run(session)
    record = PatchRun(session, run_id, policy=None, boot_time=lambda: BOOT_BEFORE).resume()
    assert record.status == "rebooting"
    assert RunJournal(session.store, run_id).last() is Step.REBOOT_PENDING
