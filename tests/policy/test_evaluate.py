"""The plan: every rung of the decision ladder, at frozen times, on real policy documents."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from patchd.models import Classification, Severity, Update, UpdateSource, UpdateState
from patchd.policy.evaluate import Decision, evaluate
from patchd.policy.loader import LoadedPolicy, load_policy
from patchd.policy.selectors import EndpointFacts

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)  # a Thursday, outside the 02:00-04:00 window
SEEN = NOW - timedelta(days=1)
FACTS = EndpointFacts(
    "machine-id:" + "0" * 32, "web-01", "debian", "debian", "12", "server", ("web",)
)

BASE: dict[str, Any] = {
    "version": 1,
    "name": "test",
    "issued_at": "2026-12-01T00:00:00Z",
    "expires": "2027-12-01T00:00:00Z",
    "segments": [{"name": "all", "windows": ["nightly"]}],
    "rings": [{"name": "broad", "members": {"percentage": 100},
               "deferrals": {"default": "7d", "security": "2d", "critical": "0d"}}],
    "rules": [
        {"match": {"classification": ["enhancement"]}, "action": "approval", "approved": ["gadget=1.5"]},
        {"match": {"packages": ["docker*"]}, "action": "never"},
        {"action": "auto"},
    ],
    "deadlines": {"critical": "1d", "important": "5d", "grace": "1d"},
    "windows": {"nightly": {"timezone": "UTC", "weekly": {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "02:00", "duration": "2h"}}},
    "exceptions": [{"name": "hold-openssl", "packages": ["openssl"], "reason": "ERP breaks",
                    "owner": "alice", "expires": "2027-01-01"}],
    "emergency": [{"name": "e1", "cves": ["CVE-2026-9999"]}],
}  # fmt: skip


def policy_of(document: dict[str, Any]) -> LoadedPolicy:
    return load_policy(yaml.safe_dump(document).encode(), "test.yaml")


def update(
    name: str = "hello",
    classification: Classification = Classification.SECURITY,
    severity: Severity = Severity.MODERATE,
    **changes: Any,
) -> Update:
    base = Update("apt", name, "all", "1.0", "1.1", classification, severity, source=UpdateSource())
    return replace(base, **changes)


@dataclass(frozen=True)
class Case:
    id: str
    update: Update
    decision: Decision
    reason: str
    seen: timedelta = timedelta(days=1)  # how long ago it was first seen
    now: datetime = NOW
    policy: dict[str, Any] = field(default_factory=lambda: BASE)


def _without(key: str, **replacement: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document.pop(key)
    document.update(replacement)
    return document


CASES = [
    Case("held-by-package-manager", update(state=UpdateState.HELD), Decision.HELD_BY_PACKAGE_MANAGER,
         "held by the package manager"),
    Case("policy-expired", update(), Decision.BLOCKED, "policy expired at 2027-12-01T00:00:00Z: no new changes",
         now=datetime(2028, 1, 1, tzinfo=UTC)),
    Case("exception", update("openssl"), Decision.HELD_BY_EXCEPTION,
         "held by exception hold-openssl until 2027-01-01 (alice: ERP breaks)"),
    Case("expired-exception-no-longer-holds", update("openssl"), Decision.INSTALL_LATER,
         "install in the window nightly opening at 2027-02-02T02:00+00:00",
         now=datetime(2027, 2, 1, 12, tzinfo=UTC), seen=timedelta(days=30)),
    Case("emergency-overrides-deferral-and-window",
         update("libfoo", Classification.BUGFIX, cves=("CVE-2026-9999",)), Decision.INSTALL_NOW,
         "emergency e1 (CVE-2026-9999): now"),
    Case("emergency-overrides-never", update("docker-ce", cves=("CVE-2026-9999",)), Decision.INSTALL_NOW,
         "emergency e1"),
    Case("never", update("docker-ce"), Decision.NEVER, "never installed (rule 2)"),
    Case("approval-missing", update("gadget", Classification.ENHANCEMENT, available_version="1.6"),
         Decision.NEEDS_APPROVAL, "needs approval (rule 1)"),
    Case("approval-given", update("gadget", Classification.ENHANCEMENT, available_version="1.5"),
         Decision.DEFERRED, "deferred until 2026-12-16T12:00+00:00 by ring broad"),
    Case("no-rule-matches", update(), Decision.NEEDS_APPROVAL, "needs approval: no rule matches it",
         policy=_without("rules", rules=[{"match": {"classification": ["bugfix"]}, "action": "auto"}])),
    Case("phased", update(state=UpdateState.PHASED, phased_percentage=30), Decision.PHASED,
         "phased by the distribution (30% of machines so far)"),
    Case("deferred-then-window", update(), Decision.DEFERRED,
         "deferred until 2026-12-11T12:00+00:00 by ring broad; "
         "then in the window nightly opening at 2026-12-12T02:00+00:00"),
    Case("after-deferral-next-window", update(), Decision.INSTALL_LATER,
         "install in the window nightly opening at 2026-12-11T02:00+00:00", seen=timedelta(days=3)),
    Case("inside-window", update(), Decision.INSTALL_NOW,
         "window nightly is open until 2026-12-10T04:00+00:00: now",
         now=datetime(2026, 12, 10, 3, 0, tzinfo=UTC), seen=timedelta(days=3)),
    Case("critical-no-deferral", update(severity=Severity.CRITICAL), Decision.INSTALL_LATER,
         "install in the window nightly opening at 2026-12-11T02:00+00:00", seen=timedelta(hours=1)),
    Case("deadline-reached-ignores-deferral", update(classification=Classification.BUGFIX,
         severity=Severity.IMPORTANT), Decision.INSTALL_LATER,
         "deadline reached (2026-12-10T00:00:00Z); install in the window nightly opening at",
         seen=timedelta(days=5, hours=12)),
    Case("past-deadline-and-grace-ignores-window", update(classification=Classification.BUGFIX,
         severity=Severity.IMPORTANT), Decision.INSTALL_NOW, "past deadline (2026-12-08T12:00:00Z): now",
         seen=timedelta(days=7)),
    Case("no-window-any-time", update(), Decision.INSTALL_NOW,
         "no maintenance window restricts this endpoint: now", seen=timedelta(days=3),
         policy=_without("segments", segments=[{"name": "all"}])),
    Case("no-ring-no-deferral", update(), Decision.INSTALL_LATER,
         "install in the window nightly opening at 2026-12-11T02:00+00:00",
         policy=_without("rings", rings=[{"name": "canary", "members": {"tags": ["canary"]},
                                          "deferrals": {"default": "30d"}}])),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_ladder(case: Case) -> None:
    plan = evaluate(policy_of(case.policy), FACTS, [case.update], first_seen={case.update.id: case.now - case.seen},
                    now=case.now, local_zone=UTC)  # fmt: skip
    (decision,) = plan.decisions
    assert decision.decision is case.decision
    assert case.reason in decision.reason


def test_a_quarantined_update_is_held_whatever_else_applies() -> None:
    hello = update(cves=("CVE-2026-9999",))  # an emergency would install it at once
    plan = evaluate(policy_of(BASE), FACTS, [hello], first_seen={}, now=NOW, local_zone=UTC,
                    quarantined={hello.id: "quarantined by run R: health check ssh failed"})  # fmt: skip
    (decision,) = plan.decisions
    assert decision.decision is Decision.QUARANTINED
    assert (
        decision.reason
        == "quarantined by run R: health check ssh failed; held until the policy changes"
    )


def test_install_now_lists_exactly_the_updates_due_now() -> None:
    updates = [update("a", cves=("CVE-2026-9999",)), update("b"), update("docker-ce")]
    plan = evaluate(policy_of(BASE), FACTS, updates, first_seen={}, now=NOW, local_zone=UTC)
    assert [u.name for u in plan.install_now()] == ["a"]


def test_without_a_policy_nothing_is_automatic() -> None:
    plan = evaluate(None, FACTS, [update()], first_seen={}, now=NOW, local_zone=UTC)
    assert plan.policy is None
    assert [d.decision for d in plan.decisions] == [Decision.BLOCKED]
    assert "no policy is active" in plan.decisions[0].reason


def test_plan_reports_expired_exceptions_and_unsegmented_endpoints() -> None:
    document = copy.deepcopy(BASE)
    document["segments"] = [{"name": "db", "match": {"tags_all": ["db"]}}]
    plan = evaluate(policy_of(document), FACTS, [], first_seen={}, now=datetime(2027, 2, 1, tzinfo=UTC),
                    local_zone=UTC)  # fmt: skip
    assert "exception hold-openssl expired on 2027-01-01 and no longer applies" in plan.warnings
    assert "this endpoint is in no segment of the policy" in plan.warnings
    assert plan.windows == ()


def test_plan_json_carries_the_policy_identity() -> None:
    loaded = policy_of(BASE)
    document = evaluate(loaded, FACTS, [update()], first_seen={}, now=NOW, local_zone=UTC).as_dict()
    assert document["schema_version"] == 1
    assert document["policy"] == {
        "name": "test",
        "version": 1,
        "sha256": loaded.sha256,
        "expires": "2027-12-01T00:00:00Z",
    }
    assert document["ring"] == "broad"
    assert document["decisions"][0]["decision"] == "deferred"


_ladder = st.sampled_from([u.update for u in CASES])


@settings(max_examples=200, deadline=None)
@given(
    updates=st.lists(_ladder, max_size=6, unique_by=lambda u: u.id),
    offset=st.integers(min_value=-400, max_value=400),
    seen_days=st.integers(min_value=0, max_value=60),
)
def test_evaluation_is_total_and_time_only_moves_decisions_forward(
    updates: list[Update], offset: int, seen_days: int
) -> None:
    now = NOW + timedelta(days=offset)
    first_seen = {u.id: now - timedelta(days=seen_days) for u in updates}
    plan = evaluate(policy_of(BASE), FACTS, updates, first_seen=first_seen, now=now, local_zone=UTC)
    assert [d.update for d in plan.decisions] == updates
    for decision in plan.decisions:
        assert decision.reason
        if decision.decision in (Decision.INSTALL_LATER, Decision.DEFERRED):
            assert decision.not_before is not None
            assert decision.not_before >= now
        if decision.update.state is not UpdateState.AVAILABLE:
            assert decision.decision is not Decision.INSTALL_NOW or decision.emergency
    later = evaluate(policy_of(BASE), FACTS, updates, first_seen=first_seen, now=now + timedelta(days=1),
                     local_zone=UTC)  # fmt: skip
    for before, after in zip(plan.decisions, later.decisions, strict=True):
        if before.decision is Decision.INSTALL_NOW and "past deadline" in before.reason:
            assert after.decision is Decision.INSTALL_NOW or after.decision is Decision.BLOCKED
