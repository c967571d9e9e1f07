"""What each dashboard page shows: bounded reads of the collector's database.

Every query here has a limit, so a page costs the same for ten endpoints or a hundred
thousand; where a list is cut, the page says so. The figures themselves come from
:mod:`patchd.collector.compliance`, the same functions behind ``GET /v1/compliance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, select

from patchd.collector import charts
from patchd.collector import compliance as figures
from patchd.collector.schema import endpoint_updates, endpoints, flags
from patchd.collector.store import loads
from patchd.timeutil import stamp

MAX_ROWS = 500  # endpoints in one table
MAX_RUNS = 100  # failed runs on a page
MAX_FLAGS = 50
MAX_INSTALLED = 200  # updates no longer pending, on an endpoint's page

STATUS_ORDER = ("compliant", "overdue", "unknown", "stale", "never-reported")

ENDPOINT_COLUMNS = (
    endpoints.c.id, endpoints.c.hostname, endpoints.c.last_report_at, endpoints.c.overdue, endpoints.c.pending,
    endpoints.c.pending_security, endpoints.c.os_name, endpoints.c.os_version, endpoints.c.eol_past,
    endpoints.c.eol_date, endpoints.c.segments, endpoints.c.ring, endpoints.c.flagged,
    endpoints.c.pending_public_key, endpoints.c.reboot_required, endpoints.c.policy_version,
)  # fmt: skip


@dataclass(frozen=True)
class Listing:
    """Rows of a table, and whether more matched than are shown."""

    rows: list[dict[str, Any]]
    cut: bool
    limit: int


def _status_filters(cutoff: str) -> dict[str, ColumnElement[bool]]:
    """SQL for each status the overview counts (``endpoint_status``'s rules), by URL name."""
    fresh = endpoints.c.last_report_at >= cutoff
    return {
        "compliant": and_(fresh, endpoints.c.overdue == 0),
        "overdue": and_(fresh, endpoints.c.overdue > 0),
        "unknown": and_(fresh, endpoints.c.overdue.is_(None)),
        "stale": endpoints.c.last_report_at < cutoff,
        "never-reported": endpoints.c.last_report_at.is_(None),
        "end-of-life": endpoints.c.eol_past.is_(True),
        "flagged": endpoints.c.flagged.is_(True),
        "key-approval-pending": endpoints.c.pending_public_key.is_not(None),
    }


STATUS_FILTERS = tuple(_status_filters(""))


def endpoint_listing(
    conn: Connection,
    now: datetime,
    stale_after: timedelta,
    *,
    status: str | None = None,
    scope: figures.Scope | None = None,
    limit: int = MAX_ROWS,
) -> Listing:
    """Endpoints by hostname, with their status: all, one status (``STATUS_FILTERS``) or one scope."""
    query = (
        select(*ENDPOINT_COLUMNS).order_by(endpoints.c.hostname, endpoints.c.id).limit(limit + 1)
    )
    if status is not None:
        query = query.where(_status_filters(stamp(now - stale_after))[status])
    if scope is not None:
        query = query.where(figures.scope_condition(scope))
    rows = [dict(r._mapping) for r in conn.execute(query)]
    cut = len(rows) > limit
    if scope is not None:
        rows = [r for r in rows if scope.contains(r)]
    return Listing([_endpoint_row(r, now, stale_after) for r in rows[:limit]], cut, limit)


def _endpoint_row(row: dict[str, Any], now: datetime, stale_after: timedelta) -> dict[str, Any]:
    row["status"] = figures.endpoint_status(row, now, stale_after)
    row["segments"] = loads(row["segments"], [])
    row["key_approval_pending"] = row.pop("pending_public_key") is not None
    return row


def overview(conn: Connection, now: datetime, options: figures.Options) -> dict[str, Any]:
    """The fleet page: the compliance figures, the chart, and the tables that need attention."""
    found = figures.compliance(conn, now, options)
    return {
        "figures": found,
        "chart": charts.compliance_chart(found["history"]),
        "status_bar": charts.stacked_bar(_status_counts(found)),
        "failed_runs": _runs_with_notes(figures.failed_runs(conn, now, options, MAX_RUNS)),
        "stale": endpoint_listing(conn, now, options.stale_after, status="stale"),
        "end_of_life": endpoint_listing(conn, now, options.stale_after, status="end-of-life"),
        "flags": recent_flags(conn, MAX_FLAGS),
    }


def scoped(
    conn: Connection, now: datetime, options: figures.Options, scope: figures.Scope
) -> dict[str, Any]:
    """A segment's or ring's page: the same figures for its endpoints only, and the endpoints."""
    found = figures.compliance(conn, now, options, scope=scope)
    return {
        "figures": found,
        "chart": charts.compliance_chart(found["history"]),
        "status_bar": charts.stacked_bar(_status_counts(found)),
        "failed_runs": _runs_with_notes(
            figures.failed_runs(conn, now, options, MAX_RUNS, scope=scope)
        ),
        "endpoints": endpoint_listing(conn, now, options.stale_after, scope=scope),
    }


def _status_counts(found: dict[str, Any]) -> list[tuple[str, int]]:
    counts = found["endpoints"]
    return [(status, counts[status.replace("-", "_")]) for status in STATUS_ORDER]


def _runs_with_notes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "notes": loads(r["notes"], [])} for r in rows]


def recent_flags(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The newest flags (replays, forks, key changes) with the flagged endpoint's hostname."""
    result = conn.execute(
        select(flags, endpoints.c.hostname)
        .join(endpoints, endpoints.c.id == flags.c.endpoint_id, isouter=True)
        .order_by(flags.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in result]


def split_updates(updates: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Listing]:
    """An endpoint's updates: those still pending, and (a bounded number of) the others."""
    pending = [u for u in updates if u["pending"]]
    others = [u for u in updates if not u["pending"]]
    others.sort(key=lambda u: u["installed_at"] or "", reverse=True)
    return pending, Listing(others[:MAX_INSTALLED], len(others) > MAX_INSTALLED, MAX_INSTALLED)


def one_update(conn: Connection, endpoint_id: str, update_id: str) -> dict[str, Any] | None:
    """One update as its endpoint last described it, with the endpoint's hostname."""
    row = conn.execute(
        select(endpoint_updates, endpoints.c.hostname)
        .join(endpoints, endpoints.c.id == endpoint_updates.c.endpoint_id)
        .where(
            endpoint_updates.c.endpoint_id == endpoint_id, endpoint_updates.c.update_id == update_id
        )
    ).first()
    if row is None:
        return None
    return {**dict(row._mapping), "cves": loads(row.cves, [])}
