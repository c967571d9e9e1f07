"""Sections gathered from a real plan and a real state database: decisions, deadlines, counts."""

from __future__ import annotations

from datetime import UTC, timedelta

from patchd.models import Severity, UpdateState
from patchd.policy.evaluate import Plan, evaluate
from patchd.reporting import collect
from patchd.state.store import StateStore
from tests.policy.test_evaluate import BASE, FACTS, NOW, policy_of, update

CRITICAL = update("kernel-fix", severity=Severity.CRITICAL)  # deadline 1d
IMPORTANT = update("libfoo", severity=Severity.IMPORTANT)  # deadline 5d
HELD = update("pinned", state=UpdateState.HELD)
FIRST_SEEN = {CRITICAL.id: NOW - timedelta(days=3), IMPORTANT.id: NOW - timedelta(days=1),
              HELD.id: NOW - timedelta(days=1)}  # fmt: skip


def _plan() -> Plan:
    return evaluate(policy_of(BASE), FACTS, [CRITICAL, IMPORTANT, HELD], first_seen=FIRST_SEEN,
                    now=NOW, local_zone=UTC)  # fmt: skip


def test_update_items_carry_decision_reason_and_deadline() -> None:
    plan = _plan()
    items = {
        i["name"]: i for i in collect.updates_section(plan, plan.decisions, FIRST_SEEN)["items"]
    }
    critical, important = items["kernel-fix"], items["libfoo"]
    assert critical["deadline"] == "2026-12-08T12:00:00Z"
    assert critical["overdue"] is True
    assert critical["decision"] == "install-now"
    assert critical["reason"] == "past deadline (2026-12-08T12:00:00Z): now"
    assert critical["not_before"] == "2026-12-10T12:00:00Z"
    assert important["deadline"] == "2026-12-14T12:00:00Z"
    assert important["overdue"] is False
    assert important["first_seen"] == "2026-12-09T12:00:00Z"
    assert items["pinned"]["decision"] == "held-by-package-manager"


def test_compliance_counts(store: StateStore) -> None:
    plan = _plan()
    summary = collect.compliance_section(plan, plan.decisions, FIRST_SEEN, store, None)
    assert summary == {
        "pending": 2,  # the update held in the package manager is not waiting on patchd
        "pending_by_severity": {"critical": 1, "important": 1},
        "pending_security": 2,
        "overdue": 1,
        "overdue_by_severity": {"critical": 1},
        "due_now": 1,
        "failed_since_last_report": 0,
        "installed_since_last_report": 0,
        "since": None,
    }


def test_installed_since_the_scan_is_no_longer_pending(store: StateStore) -> None:
    plan = _plan()
    store.record_scan([CRITICAL, IMPORTANT], {}, NOW)
    installed = {(CRITICAL.backend, CRITICAL.name, CRITICAL.arch): CRITICAL.available_version}
    store.record_scan([IMPORTANT], installed, NOW + timedelta(hours=1))
    pending = collect.still_pending(store, plan)
    assert [d.update.name for d in pending] == ["libfoo", "pinned"]
    summary = collect.compliance_section(plan, pending, FIRST_SEEN, store, NOW)
    assert (summary["pending"], summary["overdue"]) == (1, 0)
    assert summary["installed_since_last_report"] == 1
    later = collect.compliance_section(plan, pending, FIRST_SEEN, store, NOW + timedelta(hours=2))
    assert later["installed_since_last_report"] == 0


def test_long_texts_and_lists_are_capped() -> None:
    assert collect.text("x" * 5000) == "x" * (collect.MAX_TEXT_CHARS - 3) + "..."
    section = collect.capped(list(range(10)), 3)
    assert section == {"items": [0, 1, 2], "total": 10, "truncated": True}
