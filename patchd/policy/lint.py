"""Warnings about a valid policy that probably does not say what its authors meant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from patchd.models import Classification, Severity
from patchd.platforms import known_families
from patchd.policy.durations import format_duration
from patchd.policy.loader import LoadedPolicy, Problem
from patchd.policy.model import SegmentMatch, parse_version_range
from patchd.policy.windows import never_opens

EXPIRY_WARNING = timedelta(days=7)


def _empty_range(spec: str) -> bool:
    lower: tuple[object, ...] | None = None
    upper: tuple[object, ...] | None = None
    for op, bound in parse_version_range(spec):
        if op in (">=", ">") and (lower is None or bound > lower):
            lower = bound
        if op in ("<", "<=") and (upper is None or bound < upper):
            upper = bound
    try:
        return lower is not None and upper is not None and not lower < upper
    except TypeError:
        return False


def _why_segment_matches_nothing(match: SegmentMatch) -> str | None:
    if set(match.tags_all) & set(match.tags_none):
        return f"it requires and excludes the tag(s) {', '.join(sorted(set(match.tags_all) & set(match.tags_none)))}"
    if set(match.tags_any) and set(match.tags_any) <= set(match.tags_none):
        return "every tag of tags_any is also in tags_none"
    for field in ("os_family", "os_id", "machine_type", "hostname"):
        if getattr(match, field) == []:
            return f"{field} is an empty list"
    if match.os_family and not {f.lower() for f in match.os_family} & known_families():
        return f"no operating-system family is called {', '.join(match.os_family)}"
    if match.os_version and _empty_range(match.os_version):
        return f"the version range {match.os_version!r} is empty"
    return None


def _deadline_warnings(loaded: LoadedPolicy) -> list[Problem]:
    policy = loaded.policy
    warnings = []
    for i, ring in enumerate(policy.rings):
        for severity in Severity:
            deadline = policy.deadlines.for_severity(severity)
            if deadline is None:
                continue
            longer = [
                c for c in Classification if ring.deferrals.for_update(c, severity) > deadline
            ]
            if longer:
                warnings.append(loaded.problem(
                    ("rings", i, "deferrals"),
                    f"ring {ring.name} defers {severity.value} {'/'.join(c.value for c in longer)} updates "
                    f"longer than their deadline ({format_duration(deadline)}): the deadline wins",
                    "warning",
                ))  # fmt: skip
    return warnings


def lint(loaded: LoadedPolicy, at: datetime) -> list[Problem]:
    """Warnings for ``loaded`` judged at ``at``: windows that never open, expired exceptions,
    segments that can match nothing, deadlines shorter than deferrals, imminent expiry."""
    policy = loaded.policy
    warnings: list[Problem] = []

    def warn(path: tuple[str | int, ...], message: str) -> None:
        warnings.append(loaded.problem(path, message, "warning"))

    if policy.expires <= at:
        warn(
            ("expires",), "the policy has expired: endpoints would keep scanning but change nothing"
        )
    elif policy.expires - at < EXPIRY_WARNING:
        warn(("expires",), f"expires in less than {EXPIRY_WARNING.days} days")
    for name in loaded.schedule.windows:
        if never_opens(loaded.schedule, name, local_zone=UTC, after=at):
            warn(("windows", name), "this window never opens in the coming year")
    for i, exception in enumerate(policy.exceptions):
        if exception.expires <= at:
            warn(("exceptions", i, "expires"), f"exception {exception.name} has already expired")
    for i, segment in enumerate(policy.segments):
        why = _why_segment_matches_nothing(segment.match)
        if why:
            warn(("segments", i, "match"), f"segment {segment.name} can match nothing: {why}")
    warnings.extend(_deadline_warnings(loaded))
    if not any(not rule.match.model_fields_set for rule in policy.rules):
        warn(("rules",), "no rule matches everything: updates no rule matches wait for approval")
    return warnings
