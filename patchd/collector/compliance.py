"""Fleet compliance from what the endpoints reported: the definitions in docs/compliance.md.

Every figure is computed from stored, signature-checked reports; nothing an endpoint did
not sign is counted. Times are the endpoints' own (first seen, run finished), so a
collector outage does not stretch the time to patch.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, select

from patchd.collector.schema import (
    endpoint_daily,
    endpoint_runs,
    endpoint_updates,
    endpoints,
    flags,
    policies,
)
from patchd.timeutil import parse_time, stamp

SEVERITIES = ("critical", "important", "moderate", "low", "unknown")
DEFAULT_STALE_AFTER = timedelta(hours=3)  # three default reporting intervals
DEFAULT_PERIOD = timedelta(days=30)
EXPIRING_WITHIN = timedelta(days=14)
MAX_HISTORY_DAYS = 400


@dataclass(frozen=True)
class Options:
    stale_after: timedelta = DEFAULT_STALE_AFTER
    period: timedelta = DEFAULT_PERIOD  # for rates and times: runs finished within it
    history_days: int = 30


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(share * (len(ordered) - 1))))
    return ordered[index]


def endpoint_status(row: Mapping[str, Any], now: datetime, stale_after: timedelta) -> str:
    """``never-reported``, ``stale``, ``compliant``, ``overdue`` or ``unknown`` (no facts)."""
    if row["last_report_at"] is None:
        return "never-reported"
    if parse_time(row["last_report_at"]) < now - stale_after:
        return "stale"
    if row["overdue"] is None:
        return "unknown"
    return "compliant" if row["overdue"] == 0 else "overdue"


def compliance(conn: Connection, now: datetime, options: Options = Options()) -> dict[str, Any]:
    rows = [dict(r._mapping) for r in conn.execute(select(
        endpoints.c.id, endpoints.c.hostname, endpoints.c.last_report_at, endpoints.c.overdue,
        endpoints.c.segments, endpoints.c.ring, endpoints.c.eol_past, endpoints.c.flagged,
        endpoints.c.pending_public_key,
    ))]  # fmt: skip
    statuses = {r["id"]: endpoint_status(r, now, options.stale_after) for r in rows}
    reporting = [r for r in rows if statuses[r["id"]] in ("compliant", "overdue", "unknown")]
    compliant = [r for r in reporting if statuses[r["id"]] == "compliant"]
    counts = Counter(statuses.values())
    since = stamp(now - options.period)
    return {
        "at": stamp(now),
        "definitions": "docs/compliance.md",
        "stale_after_hours": options.stale_after.total_seconds() / 3600,
        "period_days": options.period.days,
        "endpoints": {
            "enrolled": len(rows),
            "reporting": len(reporting),
            "compliant": len(compliant),
            "overdue": counts["overdue"],
            "unknown": counts["unknown"],
            "stale": counts["stale"],
            "never_reported": counts["never-reported"],
            "end_of_life": sum(r["eol_past"] is True for r in rows),
            "flagged": sum(bool(r["flagged"]) for r in rows),
            "key_approval_pending": sum(r["pending_public_key"] is not None for r in rows),
        },
        "compliance_rate": _rate(len(compliant), len(reporting)),
        **_pending(conn, {r["id"] for r in reporting}),
        "time_to_patch": _time_to_patch(conn, since),
        **_runs(conn, since),
        "by_segment": _grouped(reporting, statuses, lambda r: json.loads(r["segments"] or "[]") or ["(none)"]),
        "by_ring": _grouped(reporting, statuses, lambda r: [r["ring"] or "(none)"]),
        "history": history(conn, now, options.history_days),
        "exceptions_expiring": exceptions_expiring(conn, now),
    }  # fmt: skip


def _pending(conn: Connection, reporting: set[str]) -> dict[str, Any]:
    pending: Counter[str] = Counter()
    overdue: Counter[str] = Counter()
    result = conn.execute(
        select(endpoint_updates.c.endpoint_id, endpoint_updates.c.severity, endpoint_updates.c.overdue)
        .where(endpoint_updates.c.pending.is_(True))
    )  # fmt: skip
    for endpoint_id, severity, is_overdue in result:
        if endpoint_id in reporting:
            pending[severity] += 1
            if is_overdue:
                overdue[severity] += 1
    return {
        "pending_by_severity": {s: pending[s] for s in SEVERITIES},
        "overdue_by_severity": {s: overdue[s] for s in SEVERITIES},
    }


def _time_to_patch(conn: Connection, since: str) -> dict[str, Any]:
    hours: dict[str, list[float]] = defaultdict(list)
    result = conn.execute(
        select(endpoint_updates.c.severity, endpoint_updates.c.first_seen, endpoint_updates.c.installed_at)
        .where(endpoint_updates.c.installed_at >= since, endpoint_updates.c.first_seen.is_not(None))
    )  # fmt: skip
    for severity, first_seen, installed_at in result:
        try:
            delta = parse_time(installed_at) - parse_time(first_seen)
        except ValueError:
            continue
        hours[severity].append(max(0.0, delta.total_seconds() / 3600))
    every = [h for values in hours.values() for h in values]
    return {
        severity: _summary(values)
        for severity, values in (*((s, hours.get(s, [])) for s in SEVERITIES), ("all", every))
    }


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "median_hours": None, "p90_hours": None}
    return {
        "count": len(values),
        "median_hours": round(statistics.median(values), 2),
        "p90_hours": round(_percentile(values, 0.9), 2),
    }


def _runs(conn: Connection, since: str) -> dict[str, Any]:
    result = conn.execute(
        select(endpoint_runs.c.status, endpoint_runs.c.done, endpoint_runs.c.failed, endpoint_runs.c.notes)
        .where(endpoint_runs.c.kind == "apply", endpoint_runs.c.dry_run.is_(False), endpoint_runs.c.finished_at >= since)
    )  # fmt: skip
    done = failed = runs = rolled_back = interrupted = reboots = 0
    for status, run_done, run_failed, notes in result:
        runs += 1
        done += run_done
        failed += run_failed
        rolled_back += status == "rolled-back"
        interrupted += status == "interrupted"
        reboots += status == "rebooting" or any("rebooted" in n for n in json.loads(notes or "[]"))
    return {
        "changes": {"done": done, "failed": failed},
        "failure_rate": _rate(failed, done + failed),
        "stability": {
            "runs": runs,
            "rolled_back": rolled_back,
            "interrupted": interrupted,
            "reboots": reboots,
            "rollback_rate": _rate(rolled_back, runs),
        },
    }


def _grouped(
    reporting: Iterable[Mapping[str, Any]], statuses: Mapping[str, str], keys: Any
) -> list[dict[str, Any]]:
    totals: Counter[str] = Counter()
    good: Counter[str] = Counter()
    for row in reporting:
        for key in keys(row):
            totals[key] += 1
            good[key] += statuses[row["id"]] == "compliant"
    return [
        {"name": k, "reporting": totals[k], "compliant": good[k], "compliance_rate": _rate(good[k], totals[k])}
        for k in sorted(totals)
    ]  # fmt: skip


def history(conn: Connection, now: datetime, days: int) -> list[dict[str, Any]]:
    """Per day: endpoints that reported that day, and how many of them were compliant."""
    days = max(1, min(days, MAX_HISTORY_DAYS))
    first = (now - timedelta(days=days - 1)).date().isoformat()
    result = conn.execute(
        select(endpoint_daily.c.day, endpoint_daily.c.compliant).where(
            endpoint_daily.c.day >= first
        )
    )
    totals: Counter[str] = Counter()
    good: Counter[str] = Counter()
    for day, is_compliant in result:
        totals[day] += 1
        good[day] += bool(is_compliant)
    return [
        {"day": d, "reporting": totals[d], "compliant": good[d], "compliance_rate": _rate(good[d], totals[d])}
        for d in sorted(totals)
    ]  # fmt: skip


def exceptions_expiring(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Exceptions in the newest published policy that end within :data:`EXPIRING_WITHIN`."""
    document = conn.execute(
        select(policies.c.document).order_by(policies.c.version.desc()).limit(1)
    ).scalar()
    if document is None:
        return []
    from patchd.errors import PatchdError
    from patchd.policy.loader import load_policy

    try:
        policy = load_policy(bytes(document), "published policy").policy
    except PatchdError:
        return []
    return [
        {"name": e.name, "expires": stamp(e.expires), "owner": e.owner, "reason": e.reason,
         "packages": list(e.packages), "updates": list(e.updates)}
        for e in policy.exceptions
        if now <= e.expires <= now + EXPIRING_WITHIN
    ]  # fmt: skip


def recent_flags(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    result = conn.execute(select(flags).order_by(flags.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in result]


def failed_runs(
    conn: Connection, now: datetime, options: Options = Options(), limit: int = 100
) -> list[dict[str, Any]]:
    since = stamp(now - options.period)
    result = conn.execute(
        select(endpoint_runs, endpoints.c.hostname)
        .join(endpoints, endpoints.c.id == endpoint_runs.c.endpoint_id)
        .where(and_(endpoint_runs.c.finished_at >= since,
                    endpoint_runs.c.status.in_(("failed", "partial", "rolled-back", "interrupted"))))
        .order_by(endpoint_runs.c.finished_at.desc()).limit(limit)
    )  # fmt: skip
    return [dict(r._mapping) for r in result]
