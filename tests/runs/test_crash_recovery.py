"""kill -9 at every journal step of a real apt run; the restarted agent must leave the
packages and the journal consistent, each run's outcome recorded exactly once."""

from __future__ import annotations

import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Patchd, run_patchd
from tests.support.aptroot import AptRoot


def _journal(state_dir: Path, run_id: str) -> list[str]:
    db = sqlite3.connect(state_dir / "state.db")
    try:
        return [
            row[0]
            for row in db.execute(
                "SELECT step FROM run_journal WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]
    finally:
        db.close()


def _runs(patchd: Patchd) -> list[dict[str, Any]]:
    result = patchd("status", "--json")
    assert result.returncode == 0, result.stderr
    runs: list[dict[str, Any]] = result.json()["runs"]
    return runs


def _crash_then_recover(patchd: Patchd, step: str, *extra: str) -> dict[str, Any]:
    crashed = patchd("apply", "--yes", *extra, "hello", env={"PATCHD_FAULT_AFTER": step})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run,) = [r for r in _runs(patchd) if r["kind"] == "apply"]
    assert run["status"] == "running"  # what a crash leaves
    recovered = patchd("agent", "--once")
    assert recovered.returncode == 0, recovered.stderr
    (after,) = [r for r in _runs(patchd) if r["id"] == run["id"]]
    return after


# step killed after → (status after recovery, hello's version, the journal's last step)
WITHOUT_POLICY = [
    ("planned", "aborted", "1.0", "aborted"),
    ("snapshot-taken", "aborted", "1.0", "aborted"),
    ("transaction-begun", "aborted", "1.0", "aborted"),
    ("transaction-ended", "succeeded", "1.1", "committed"),
    ("verified", "succeeded", "1.1", "committed"),
    ("health-checked", "succeeded", "1.1", "committed"),
    ("committed", "succeeded", "1.1", "committed"),
]


@pytest.fixture
def quiet_agent(patchd: Patchd) -> Patchd:
    patchd.config.write_text("agent: {refresh: false}\napt: {lock_timeout: 5}\n")
    return patchd


@pytest.mark.parametrize("case", WITHOUT_POLICY, ids=[c[0] for c in WITHOUT_POLICY])
def test_kill_at_every_step_is_recovered(
    quiet_agent: Patchd, apt_root: AptRoot, case: tuple[str, str, str, str]
) -> None:
    step, status, version, last = case
    run = _crash_then_recover(quiet_agent, step)
    assert run["status"] == status
    assert apt_root.versions()["hello"] == version
    assert apt_root.dpkg("--audit").stdout == ""  # dpkg is consistent
    journal = _journal(quiet_agent.state_dir, run["id"])
    assert journal[-1] == last
    assert sum(s in ("committed", "rolled-back", "aborted") for s in journal) == 1  # exactly once
    # A second restart finds nothing left to do.
    assert quiet_agent("agent", "--once").returncode == 0
    assert _journal(quiet_agent.state_dir, run["id"]) == journal


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def failing_health(quiet_agent: Patchd, tmp_path: Path) -> Patchd:
    """A policy in force that makes hello due now and whose health check always fails."""
    admins = tmp_path / "admins"
    admins.mkdir()
    assert run_patchd(["key", "generate", "--out", str(admins / "admin")]).returncode == 0
    root = admins / "root.json"
    assert run_patchd(["trust", "init", "--key", str(admins / "admin.pub"), "--threshold", "1",
                       "--out", str(root)]).returncode == 0  # fmt: skip
    now = datetime.now(UTC).replace(microsecond=0)
    policy = admins / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "version": 1, "name": "crash-test", "issued_at": _stamp(now - timedelta(hours=1)),
        "expires": _stamp(now + timedelta(days=7)), "rules": [{"action": "auto"}],
        "health_checks": [{"name": "always-down", "command": ["sh", "-c", "exit 1"], "retries": 0}],
    }))  # fmt: skip
    assert (
        run_patchd(["policy", "sign", str(policy), "--key", str(admins / "admin.key")]).returncode
        == 0
    )
    assert quiet_agent("policy", "activate", str(policy), "--trust", str(root)).returncode == 0
    return quiet_agent


WITH_FAILING_HEALTH = [
    ("verified", "rolled-back", "1.0"),
    ("health-checked", "rolled-back", "1.0"),
    ("rollback-begun", "rolled-back", "1.0"),
    ("rolled-back", "rolled-back", "1.0"),
]


@pytest.mark.parametrize(
    ("step", "status", "version"), WITH_FAILING_HEALTH, ids=[c[0] for c in WITH_FAILING_HEALTH]
)
def test_kill_during_an_automatic_rollback_is_recovered(
    failing_health: Patchd, apt_root: AptRoot, step: str, status: str, version: str
) -> None:
    run = _crash_then_recover(failing_health, step)
    assert run["status"] == status
    assert apt_root.versions()["hello"] == version
    assert apt_root.dpkg("--audit").stdout == ""
    journal = _journal(failing_health.state_dir, run["id"])
    assert journal[-1] == "rolled-back"
    assert journal.count("rolled-back") == 1
    # The change set is quarantined until the policy changes.
    plan = failing_health("plan", "--json").json()
    (hello,) = [d for d in plan["decisions"] if d["name"] == "hello"]
    assert hello["decision"] == "quarantined"
    assert run["id"] in hello["reason"]


def test_a_failed_health_check_rolls_back_by_itself(
    failing_health: Patchd, apt_root: AptRoot
) -> None:
    result = failing_health("apply", "--yes", "--json", "hello")
    assert result.returncode == 1
    run = result.json()["run"]
    assert run["status"] == "rolled-back"
    assert any("health checks failed after patching (always-down" in n for n in run["notes"])
    assert apt_root.versions()["hello"] == "1.0"
    assert _journal(failing_health.state_dir, run["id"]) == [
        "planned", "snapshot-taken", "transaction-begun", "transaction-ended", "verified",
        "health-checked", "rollback-begun", "rolled-back",
    ]  # fmt: skip
