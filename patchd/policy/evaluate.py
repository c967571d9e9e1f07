"""The plan: for every update, what the policy decides, when, and why — a pure function.

``evaluate(policy, facts, updates, first_seen, now, local_zone)`` depends on nothing
else: no clock, no files, no network. The order of judgement, for each update:

1. held by the package manager → never touched;
2. policy expired → no new changes; quarantined after a failed health check → held;
3. an active exception → held until it expires (an expired one is reported, not applied);
4. an emergency directive → now (overrides rules, phasing, deferrals, deadlines, windows);
5. the first matching rule: ``never``; ``approval`` unless approved; no rule → approval;
6. phased by the distribution → waits for the distribution;
7. past its deadline plus grace → now; deadline reached → the next window, deferral or not;
8. the ring's deferral → deferred until first seen + deferral;
9. the endpoint's maintenance windows → now if one is open, else at the next opening
   (no window named for the endpoint's segments → any time).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from patchd.models import Update, UpdateState
from patchd.policy.loader import LoadedPolicy
from patchd.policy.model import Deferrals, Emergency, Policy, PolicyException, Rule
from patchd.policy.selectors import EndpointFacts, matching_segments, ring_for
from patchd.policy.windows import current_opening, openings
from patchd.timeutil import format_time

PLAN_SCHEMA_VERSION = 1


class Decision(StrEnum):
    INSTALL_NOW = "install-now"
    INSTALL_LATER = "install-later"
    DEFERRED = "deferred"
    HELD_BY_EXCEPTION = "held-by-exception"
    NEEDS_APPROVAL = "needs-approval"
    NEVER = "never"
    PHASED = "phased"
    HELD_BY_PACKAGE_MANAGER = "held-by-package-manager"
    QUARANTINED = "quarantined"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class UpdateDecision:
    """What happens to one update, and the one-line reason."""

    update: Update
    decision: Decision
    reason: str
    not_before: datetime | None = None  # the earliest time it may install
    until: datetime | None = None  # when installing now: the end of the window allowing it
    first_seen: datetime | None = None
    ring: str | None = None
    rule: int | None = None
    exception: str | None = None
    emergency: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "update_id": self.update.id,
            "name": self.update.name,
            "backend": self.update.backend,
            "available_version": self.update.available_version,
            "classification": self.update.classification.value,
            "severity": self.update.severity.value,
            "decision": self.decision.value,
            "reason": self.reason,
            "not_before": format_time(self.not_before) if self.not_before else None,
            "until": format_time(self.until) if self.until else None,
            "first_seen": format_time(self.first_seen) if self.first_seen else None,
            "ring": self.ring,
            "rule": self.rule,
            "exception": self.exception,
            "emergency": self.emergency,
        }


@dataclass(frozen=True)
class Plan:
    """The decisions for every update under one policy at one time."""

    at: datetime
    policy: LoadedPolicy | None
    segments: tuple[str, ...]
    ring: str | None
    windows: tuple[str, ...]
    decisions: tuple[UpdateDecision, ...]
    warnings: tuple[str, ...] = field(default=())

    def install_now(self) -> list[Update]:
        return [d.update for d in self.decisions if d.decision is Decision.INSTALL_NOW]

    def window_limits(self) -> dict[str, datetime]:
        """Update id → when the window that lets it install now closes.

        Updates due for another reason (an emergency, a passed deadline, no window at all)
        are not bound by a window and are left out.
        """
        return {
            d.update.id: d.until
            for d in self.decisions
            if d.decision is Decision.INSTALL_NOW and d.until is not None
        }

    def as_dict(self) -> dict[str, Any]:
        policy = None
        if self.policy is not None:
            p = self.policy.policy
            policy = {
                "name": p.name,
                "version": p.version,
                "sha256": self.policy.sha256,
                "expires": format_time(p.expires),
            }
        return {
            "schema_version": PLAN_SCHEMA_VERSION,
            "at": format_time(self.at),
            "policy": policy,
            "segments": list(self.segments),
            "ring": self.ring,
            "windows": list(self.windows),
            "decisions": [d.as_dict() for d in self.decisions],
            "warnings": list(self.warnings),
        }


def _local(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="minutes")


def _matches_package(update: Update, globs: Sequence[str]) -> bool:
    names = (update.name, f"{update.backend}:{update.name}")
    return any(fnmatch.fnmatchcase(n, g) for n in names for g in globs)


def _exception_for(policy: Policy, update: Update) -> PolicyException | None:
    for exception in policy.exceptions:
        if update.id in exception.updates or _matches_package(update, exception.packages):
            return exception
    return None


def _version_at_least(update: Update, minimum: str) -> bool:
    from patchd.backends import compare_versions

    try:
        return compare_versions(update.backend, update.available_version, minimum) >= 0
    except ValueError:  # no ordering known: only the exact version qualifies
        return update.available_version == minimum


def _emergency_for(policy: Policy, update: Update) -> tuple[Emergency, str] | None:
    for emergency in policy.emergency:
        cves = sorted(set(emergency.cves) & set(update.cves))
        if cves:
            return emergency, ", ".join(cves)
        for package in emergency.packages:
            if fnmatch.fnmatchcase(update.name, package.name) and _version_at_least(
                update, package.version
            ):
                return emergency, f"{update.name} >= {package.version}"
    return None


def _rule_for(policy: Policy, update: Update) -> tuple[int, Rule] | None:
    for index, rule in enumerate(policy.rules):
        m = rule.match
        if (
            (m.classification is None or update.classification in m.classification)
            and (m.severity is None or update.severity in m.severity)
            and (m.packages is None or _matches_package(update, m.packages))
            and (m.backends is None or update.backend in m.backends)
        ):
            return index, rule
    return None


def _approved(rule: Rule, update: Update) -> bool:
    forms = {
        update.id,
        f"{update.name}={update.available_version}",
        f"{update.backend}:{update.name}={update.available_version}",
    }
    return bool(forms & set(rule.approved))


@dataclass(frozen=True)
class _Context:
    loaded: LoadedPolicy
    facts: EndpointFacts
    now: datetime
    zone: tzinfo
    ring_name: str | None
    deferrals: Deferrals | None
    windows: tuple[str, ...]
    quarantined: Mapping[str, str]


def _when(ctx: _Context, earliest: datetime) -> tuple[Decision, datetime, str, datetime | None]:
    """When a change allowed from ``earliest`` may happen, given the endpoint's windows.

    The last element is the end of the open window that allows it now, if one does.
    """
    start = max(earliest, ctx.now)
    if not ctx.windows:
        if start <= ctx.now:
            return (
                Decision.INSTALL_NOW,
                ctx.now,
                "no maintenance window restricts this endpoint: now",
                None,
            )
        return Decision.DEFERRED, start, "", None
    schedule, key = ctx.loaded.schedule, ctx.facts.endpoint_key
    if start <= ctx.now:
        current = current_opening(
            schedule, ctx.windows, ctx.now, local_zone=ctx.zone, splay_key=key
        )
        if current is not None:
            return (
                Decision.INSTALL_NOW,
                ctx.now,
                f"window {current.window} is open until {_local(current.end, ctx.zone)}: now",
                current.end,
            )
    upcoming = openings(schedule, ctx.windows, start, local_zone=ctx.zone, splay_key=key, count=1)
    if not upcoming:
        return Decision.BLOCKED, start, "no maintenance window opens within the next 400 days", None
    opening = upcoming[0]
    begin = max(opening.start, start)
    return (
        Decision.INSTALL_LATER,
        begin,
        f"install in the window {opening.window} opening at {_local(begin, ctx.zone)}",
        None,
    )


class _Decider:
    """Judges one update along the ladder in the module docstring."""

    def __init__(self, ctx: _Context, update: Update, first_seen: datetime) -> None:
        self.ctx = ctx
        self.update = update
        self.first_seen = first_seen
        self.rule: int | None = None

    def made(
        self,
        decision: Decision,
        reason: str,
        *,
        not_before: datetime | None = None,
        until: datetime | None = None,
        exception: str | None = None,
        emergency: str | None = None,
    ) -> UpdateDecision:
        return UpdateDecision(
            self.update, decision, reason, not_before=not_before, until=until,
            first_seen=self.first_seen,
            ring=self.ctx.ring_name, rule=self.rule, exception=exception, emergency=emergency,
        )  # fmt: skip

    def decide(self) -> UpdateDecision:
        return self._whether() or self._when()

    def _whether(self) -> UpdateDecision | None:  # noqa: PLR0911 - one return per step
        """Steps 1-6: may this update be installed at all, and is anything overriding time?"""
        policy, update, now = self.ctx.loaded.policy, self.update, self.ctx.now
        if update.state is UpdateState.HELD:
            return self.made(Decision.HELD_BY_PACKAGE_MANAGER, "held by the package manager")
        if now >= policy.expires:
            return self.made(
                Decision.BLOCKED, f"policy expired at {format_time(policy.expires)}: no new changes"
            )
        quarantined = self.ctx.quarantined.get(update.id)
        if quarantined is not None:
            return self.made(Decision.QUARANTINED, f"{quarantined}; held until the policy changes")
        exception = _exception_for(policy, update)
        if exception is not None and exception.expires > now:
            until = exception.expires.date().isoformat()
            return self.made(
                Decision.HELD_BY_EXCEPTION,
                f"held by exception {exception.name} until {until} "
                f"({exception.owner}: {exception.reason})",
                exception=exception.name,
            )
        emergency = _emergency_for(policy, update)
        if emergency is not None:
            directive, what = emergency
            return self.made(
                Decision.INSTALL_NOW,
                f"emergency {directive.name} ({what}): now",
                not_before=now,
                emergency=directive.name,
            )
        found = _rule_for(policy, update)
        if found is None:
            return self.made(Decision.NEEDS_APPROVAL, "needs approval: no rule matches it")
        self.rule, rule = found
        if rule.action == "never":
            return self.made(Decision.NEVER, f"never installed (rule {self.rule + 1})")
        if rule.action == "approval" and not _approved(rule, update):
            return self.made(Decision.NEEDS_APPROVAL, f"needs approval (rule {self.rule + 1})")
        if update.state is UpdateState.PHASED:
            share = update.phased_percentage
            pct = f" ({share}% of machines so far)" if share is not None else ""
            return self.made(Decision.PHASED, f"phased by the distribution{pct}")
        return None

    def _when(self) -> UpdateDecision:
        """Steps 7-9: deadline, the ring's deferral, and the maintenance windows."""
        ctx, update = self.ctx, self.update
        policy = ctx.loaded.policy
        deadline = policy.deadlines.for_severity(update.severity)
        due = self.first_seen + deadline if deadline is not None else None
        if due is not None and ctx.now >= due + policy.deadlines.grace:
            return self.made(
                Decision.INSTALL_NOW, f"past deadline ({format_time(due)}): now", not_before=ctx.now
            )
        if due is not None and due <= ctx.now:
            decision, when, why, until = _when(ctx, ctx.now)
            return self.made(
                decision,
                f"deadline reached ({format_time(due)}); {why}",
                not_before=when,
                until=until,
            )
        deferral = (
            ctx.deferrals.for_update(update.classification, update.severity)
            if ctx.deferrals
            else timedelta(0)
        )
        eligible = self.first_seen + deferral
        if due is not None:
            eligible = min(eligible, due)
        decision, when, why, until = _when(ctx, eligible)
        if eligible > ctx.now:
            then = f"; then {why.removeprefix('install ')}" if why else ""
            return self.made(
                Decision.DEFERRED,
                f"deferred until {_local(eligible, ctx.zone)} by ring {ctx.ring_name}{then}",
                not_before=when,
            )
        return self.made(decision, why, not_before=when, until=until)


def evaluate(
    loaded: LoadedPolicy | None,
    facts: EndpointFacts,
    updates: Sequence[Update],
    *,
    first_seen: Mapping[str, datetime],
    now: datetime,
    local_zone: tzinfo,
    quarantined: Mapping[str, str] | None = None,
) -> Plan:
    """Decide every update under ``loaded`` at ``now`` (aware). No policy: nothing automatic.

    ``quarantined`` maps update ids that failed a run's health checks under this policy
    to the reason; they are held until the policy changes.
    """
    if loaded is None:
        decisions = tuple(
            UpdateDecision(
                u, Decision.BLOCKED, "no policy is active: nothing is installed automatically"
            )
            for u in updates
        )
        return Plan(at=now, policy=None, segments=(), ring=None, windows=(), decisions=decisions)
    policy = loaded.policy
    segments = tuple(matching_segments(policy, facts))
    ring = ring_for(policy, facts, segments)
    windows = tuple(
        dict.fromkeys(w for s in policy.segments if s.name in segments for w in s.windows)
    )
    ctx = _Context(
        loaded,
        facts,
        now,
        local_zone,
        ring.name if ring else None,
        ring.deferrals if ring else None,
        windows,
        quarantined or {},
    )
    decisions = tuple(_Decider(ctx, u, first_seen.get(u.id, now)).decide() for u in updates)
    warnings = [
        f"exception {e.name} expired on {e.expires.date().isoformat()} and no longer applies"
        for e in policy.exceptions
        if e.expires <= now
    ]
    if not segments:
        warnings.append("this endpoint is in no segment of the policy")
    return Plan(
        at=now,
        policy=loaded,
        segments=segments,
        ring=ring.name if ring else None,
        windows=windows,
        decisions=decisions,
        warnings=tuple(warnings),
    )
