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


# -- a reboot that had to wait for a window ------------------------------------------------

NIGHTLY = b"""
version: 1
name: nightly
issued_at: 2026-11-01T00:00:00Z
expires: 2027-06-01T00:00:00Z
segments:
  - name: everyone
    windows: [nightly]
rules:
  - action: auto
windows:
  nightly:
    timezone: UTC
    weekly: {days: [mon, tue, wed, thu, fri, sat, sun], start: "02:00", duration: 2h}
reboot: {allowed: true, only_in_window: true, warn_users_minutes: 5}
"""


@pytest.fixture
def host_needing_a_reboot(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """The isolated root stands in for the host, and it needs a reboot; reboots are recorded."""
    from patchd.discovery import reboot

    monkeypatch.setattr(Target, "is_host", property(lambda self: True))
    monkeypatch.setattr(
        reboot, "reboot_state", lambda *a, **k: reboot.RebootState(True, ("kernel updated",))
    )
    return []


def test_a_pending_reboot_waits_for_the_window_then_reboots_and_checks_health(
    apt_root: AptRoot, tmp_path: Path, host_needing_a_reboot: list[tuple[int, str]]
) -> None:
    from patchd.policy.loader import load_policy
    from patchd.runs.patchrun import reboot_if_pending
    from tests.policy.simulator import FrozenClock

    clock = FrozenClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))  # the window opened at 02:00
    policy = load_policy(NIGHTLY, "test")
    reboots = host_needing_a_reboot

    def reboot(target: Target, minutes: int, message: str) -> None:
        reboots.append((minutes, message))

    with Session(AgentConfig(), Target.at(apt_root.path), tmp_path / "s", clock=clock.now) as s:
        waiting = reboot_if_pending(s, policy, reboot=reboot, boot_time=lambda: BOOT_BEFORE)
        assert waiting.run is None
        assert waiting.retry_at == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
        assert "waiting for a maintenance window" in waiting.reason
        assert reboots == []
        assert s.store.query("SELECT COUNT(*) FROM runs") == [(0,)]

        clock.advance(waiting.retry_at - clock.now())
        done = reboot_if_pending(s, policy, reboot=reboot, boot_time=lambda: BOOT_BEFORE)
        assert done.run is not None
        assert done.run.status == "rebooting"
        assert reboots == [(5, "patchd: rebooting to finish installing updates")]
        assert RunJournal(s.store, done.run.id).last() is Step.REBOOT_PENDING

        after = PatchRun(s, done.run.id, policy=policy, boot_time=lambda: BOOT_BEFORE + 60)
        record = after.resume()
        assert record.status == "succeeded"
        steps = [step for step, _ in RunJournal(s.store, done.run.id).steps()]
        assert steps[-2:] == [Step.HEALTH_CHECKED, Step.COMMITTED]


def test_a_policy_that_forbids_reboots_never_reboots(
    apt_root: AptRoot, tmp_path: Path, host_needing_a_reboot: list[tuple[int, str]]
) -> None:
    from patchd.policy.loader import load_policy
    from patchd.runs.patchrun import reboot_if_pending

    policy = load_policy(NIGHTLY.replace(b"allowed: true", b"allowed: false"), "test")
    with Session(AgentConfig(), Target.at(apt_root.path), tmp_path / "s") as s:
        result = reboot_if_pending(s, policy, reboot=lambda *a: pytest.fail("rebooted"))
        assert (result.run, result.retry_at) == (None, None)
        assert "does not allow" in result.reason
        assert s.store.query("SELECT COUNT(*) FROM runs") == [(0,)]
