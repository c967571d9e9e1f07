"""Compliance figures (docs/compliance.md) from a small fleet of signed reports, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from patchd.collector.compliance import Options, compliance
from patchd.collector.ingest import KeyCache, verify_report
from patchd.collector.store import CollectorStore
from tests.collector.conftest import new_database
from tests.support.collector import SimEndpoint, now_stamp, sections

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _update(
    name: str, severity: str, first_seen: datetime, *, overdue: bool = False
) -> dict[str, Any]:
    return {"id": f"apt:{name}:all=2.0", "backend": "apt", "name": name, "available_version": "2.0",
            "classification": "security", "severity": severity, "cves": ["CVE-2026-1"],
            "first_seen": now_stamp(first_seen), "deadline": None, "overdue": overdue,
            "decision": "install-later", "reason": "install in the window nightly", "not_before": None}  # fmt: skip


def _run(run_id: str, status: str, finished: datetime, outcomes: dict[str, str]) -> dict[str, Any]:
    return {"id": run_id, "kind": "apply", "status": status, "dry_run": False,
            "started_at": now_stamp(finished - HOUR), "finished_at": now_stamp(finished), "notes": [],
            "items": [{"update_id": u, "outcome": o} for u, o in outcomes.items()]}  # fmt: skip


class Fleet:
    """Endpoints reporting through the real verify-and-store path, at chosen times."""

    def __init__(self, store: CollectorStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.keys = KeyCache(store.public_key)
        self.token = store.create_token(ttl=timedelta(days=1), uses=100).secret

    def endpoint(self, hostname: str) -> SimEndpoint:
        endpoint = SimEndpoint(hostname)
        endpoint.endpoint_id = self.store.enrol(
            self.token, endpoint.public_key, hostname
        ).endpoint_id
        return endpoint

    def report(self, endpoint: SimEndpoint, at: datetime, **facts: Any) -> None:
        self.clock.now = at
        payload = endpoint.payload(**sections(**facts))
        payload["created_at"] = now_stamp(at)
        verified = verify_report(endpoint.envelope(payload), self.keys)
        assert self.store.store_batch([verified]) == [202]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CollectorStore, Clock]]:
    clock = Clock()
    opened = CollectorStore(new_database(request.param, request, tmp_path), clock=clock)
    yield opened, clock
    opened.close()


def test_the_fleets_figures_follow_from_what_endpoints_reported(
    store: tuple[CollectorStore, Clock],
) -> None:
    db, clock = store
    fleet = Fleet(db, clock)
    web, dbs, old = fleet.endpoint("web-1"), fleet.endpoint("db-1"), fleet.endpoint("old-1")
    fleet.endpoint("never-1")
    hello = _update("hello", "critical", NOW - 72 * HOUR)
    # web-1 first sees hello pending, then installs it 48 h after first seeing it.
    fleet.report(web, NOW - 48 * HOUR, segments=("web",), ring="canary", pending=1, updates=[hello])
    fleet.report(web, NOW - 2 * HOUR, segments=("web",), ring="canary", pending=1,
                 updates=[_update("curl", "low", NOW - 3 * HOUR)],
                 runs=[_run("r-web", "succeeded", NOW - 24 * HOUR, {hello["id"]: "done"})])  # fmt: skip
    # db-1 has two overdue important updates, a partial run and a rolled-back one.
    overdue = [_update("openssl", "important", NOW - 30 * 24 * HOUR, overdue=True),
               _update("libc", "important", NOW - 30 * 24 * HOUR, overdue=True)]  # fmt: skip
    fleet.report(dbs, NOW - HOUR, segments=("db",), ring="broad", overdue=2, pending=2, updates=overdue,
                 runs=[_run("r-db-1", "partial", NOW - 5 * HOUR, {"apt:a:all=2": "done", "apt:b:all=2": "failed"}),
                       _run("r-db-2", "rolled-back", NOW - 4 * HOUR, {"apt:c:all=2": "done"})])  # fmt: skip
    # old-1 last reported ten hours ago, on an end-of-life release.
    fleet.report(old, NOW - 10 * HOUR, segments=("db",), eol_past=True)
    clock.now = NOW
    with db.reading() as conn:
        figures = compliance(conn, NOW, Options(stale_after=3 * HOUR))
    assert figures["endpoints"] == {
        "enrolled": 4, "reporting": 2, "compliant": 1, "overdue": 1, "unknown": 0, "stale": 1,
        "never_reported": 1, "end_of_life": 1, "flagged": 0, "key_approval_pending": 0,
    }  # fmt: skip
    assert figures["compliance_rate"] == 0.5
    assert figures["pending_by_severity"] == {
        "critical": 0,
        "important": 2,
        "moderate": 0,
        "low": 1,
        "unknown": 0,
    }
    assert figures["overdue_by_severity"]["important"] == 2
    assert figures["time_to_patch"]["critical"] == {
        "count": 1,
        "median_hours": 48.0,
        "p90_hours": 48.0,
    }
    assert figures["time_to_patch"]["all"]["count"] == 1
    assert figures["changes"] == {"done": 3, "failed": 1}
    assert figures["failure_rate"] == 0.25
    assert figures["stability"]["runs"] == 3
    assert figures["stability"]["rolled_back"] == 1
    assert {s["name"]: (s["reporting"], s["compliant"]) for s in figures["by_segment"]} == {
        "web": (1, 1),
        "db": (1, 0),
    }
    assert {r["name"]: r["compliance_rate"] for r in figures["by_ring"]} == {
        "canary": 1.0,
        "broad": 0.0,
    }
    days = {h["day"]: (h["reporting"], h["compliant"]) for h in figures["history"]}
    assert days[(NOW - 48 * HOUR).date().isoformat()] == (1, 1)
    assert days[NOW.date().isoformat()] == (
        3,
        2,
    )  # web-1 and db-1 today; old-1's report at 02:00 too


def test_a_later_report_that_no_longer_lists_an_update_clears_it(
    store: tuple[CollectorStore, Clock],
) -> None:
    db, clock = store
    fleet = Fleet(db, clock)
    web = fleet.endpoint("web-1")
    fleet.report(web, NOW - HOUR, pending=1, updates=[_update("hello", "critical", NOW - 5 * HOUR)])
    fleet.report(web, NOW - HOUR / 2, pending=0, updates=[])
    with db.reading() as conn:
        figures = compliance(conn, NOW)
    assert sum(figures["pending_by_severity"].values()) == 0
    assert (
        figures["time_to_patch"]["all"]["count"] == 0
    )  # gone without a run installing it: not counted
