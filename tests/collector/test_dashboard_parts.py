"""The dashboard's pure parts: chart geometry, and which endpoints a segment or ring holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from patchd.collector import pages
from patchd.collector.charts import compliance_chart, stacked_bar
from patchd.collector.compliance import NONE, Options, Scope, compliance, failed_runs
from patchd.collector.schema import endpoint_runs, endpoints
from patchd.collector.store import CollectorStore
from patchd.timeutil import stamp

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _day(day: str, reporting: int, compliant: int) -> dict[str, Any]:
    return {"day": day, "reporting": reporting, "compliant": compliant,
            "compliance_rate": round(compliant / reporting, 4) if reporting else None}  # fmt: skip


def test_the_chart_places_days_by_date_and_rates_by_height() -> None:
    chart = compliance_chart(
        [_day("2026-12-01", 4, 4), _day("2026-12-02", 4, 2), _day("2026-12-05", 4, 0)]
    )
    xs = [p.x for p in chart.points]
    ys = [p.y for p in chart.points]
    assert xs[0] == chart.left
    assert xs[-1] == chart.right
    # Three days from the 2nd to the 5th, one from the 1st to the 2nd: gaps keep their width.
    assert (xs[2] - xs[1]) == pytest.approx(3 * (xs[1] - xs[0]))
    assert ys == [chart.top, (chart.top + chart.bottom) / 2, chart.bottom]
    assert [t.label for t in chart.x_ticks] == ["2026-12-01", "2026-12-02", "2026-12-05"]
    assert [t.anchor for t in chart.x_ticks] == ["start", "middle", "end"]
    assert chart.polyline.count(",") == 3
    assert chart.area.endswith(f"{xs[-1]:.1f},{chart.bottom} {xs[0]:.1f},{chart.bottom}")


def test_one_day_sits_in_the_middle_and_no_day_draws_nothing() -> None:
    one = compliance_chart([_day("2026-12-01", 2, 1)])
    assert [p.x for p in one.points] == [(one.left + one.right) / 2]
    assert [t.anchor for t in one.x_ticks] == ["middle"]
    empty = compliance_chart([])
    assert empty.points == ()
    assert empty.area == ""
    assert compliance_chart([_day("2026-12-01", 0, 0)]).points == ()


def test_the_status_bar_splits_its_width_by_share() -> None:
    bars = stacked_bar([("compliant", 3), ("overdue", 0), ("stale", 1)], width=400)
    assert [(b.name, b.x, b.width) for b in bars] == [("compliant", 0, 300), ("stale", 300, 100)]
    assert stacked_bar([("compliant", 0)]) == ()


# -- scopes ---------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CollectorStore]:
    """A database with endpoints in awkward segments and rings, written as the store would."""
    db = CollectorStore(str(tmp_path / "c.db"), clock=lambda: NOW)
    rows = [
        ("ep_a", ["a_b%"], "r1", 0),
        ("ep_b", ["aXbY"], "r1", 1),  # matches a_b% as an unescaped LIKE pattern
        ("ep_c", ['x"a_b%'], None, 0),  # its JSON holds the quoted name too
        ("ep_d", [], "", 0),
        ("ep_e", ["A_B%", "web"], "R1", 0),  # other case
    ]
    with db.engine.begin() as conn:
        for endpoint_id, segments, ring, overdue in rows:
            conn.execute(insert(endpoints).values(
                id=endpoint_id, public_key="k", hostname=endpoint_id.replace("ep_", "host-"),
                enrolled_at=stamp(NOW), last_seq=1, key_epoch=0, last_report_at=stamp(NOW),
                segments=json.dumps(segments), ring=ring, overdue=overdue, flagged=False, summary="{}",
            ))  # fmt: skip
            conn.execute(insert(endpoint_runs).values(
                endpoint_id=endpoint_id, run_id="r", kind="apply", status="failed", dry_run=False,
                finished_at=stamp(NOW - timedelta(hours=1)), done=0, failed=1, notes="[]", seq=1,
            ))  # fmt: skip
    yield db
    db.close()


@pytest.mark.parametrize(
    ("kind", "name", "members"),
    [
        ("segment", "a_b%", ["ep_a"]),
        ("segment", "A_B%", ["ep_e"]),
        ("segment", 'x"a_b%', ["ep_c"]),
        ("segment", NONE, ["ep_d"]),
        ("ring", "r1", ["ep_a", "ep_b"]),
        ("ring", NONE, ["ep_c", "ep_d"]),
        ("segment", "nowhere", []),
    ],
    ids=["like-wildcards", "case", "quote-inside", "no-segment", "ring", "no-ring", "none"],
)
def test_a_scope_holds_exactly_its_endpoints(
    store: CollectorStore, kind: str, name: str, members: list[str]
) -> None:
    scope = Scope(kind, name)
    with store.reading() as conn:
        listed = pages.endpoint_listing(conn, NOW, timedelta(hours=3), scope=scope)
        figures = compliance(conn, NOW, Options(), scope=scope)
        runs = failed_runs(conn, NOW, Options(), scope=scope)
        fleet = compliance(conn, NOW, Options())
    assert sorted(r["id"] for r in listed.rows) == members
    assert sorted(r["endpoint_id"] for r in runs) == members
    assert figures["endpoints"]["enrolled"] == len(members)
    assert figures["stability"]["runs"] == len(members)
    assert fleet["endpoints"]["enrolled"] == 5  # the fleet's figures are unchanged by scopes
    assert fleet["stability"]["runs"] == 5


def test_a_status_listing_follows_the_status_rules(store: CollectorStore) -> None:
    with store.reading() as conn:
        overdue = pages.endpoint_listing(conn, NOW, timedelta(hours=3), status="overdue")
        compliant = pages.endpoint_listing(
            conn, NOW, timedelta(hours=3), status="compliant", limit=2
        )
        stale = pages.endpoint_listing(
            conn, NOW + timedelta(hours=4), timedelta(hours=3), status="stale"
        )
    assert [r["id"] for r in overdue.rows] == ["ep_b"]
    assert [r["status"] for r in overdue.rows] == ["overdue"]
    assert (len(compliant.rows), compliant.cut) == (2, True)
    assert len(stale.rows) == 5
    assert {r["status"] for r in stale.rows} == {"stale"}
