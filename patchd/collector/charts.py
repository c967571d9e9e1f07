"""Charts for the dashboard as geometry: the templates draw them as inline SVG.

No JavaScript and no charting library: a chart is a handful of coordinates computed
here (a pure function of the figures) and a template that writes ``<svg>`` elements, so
every label goes through the template's escaping like any other value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

MAX_POINTS = 400  # one per day: compliance.MAX_HISTORY_DAYS


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    day: str
    rate: float
    reporting: int
    compliant: int


@dataclass(frozen=True)
class Tick:
    at: float  # the coordinate along its axis
    label: str
    anchor: str = "middle"  # SVG text-anchor: the first and last labels stay inside the chart


@dataclass(frozen=True)
class LineChart:
    """Compliance over time: one point per day that has a rate, on a 0 to 100 % axis."""

    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    points: tuple[Point, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def area(self) -> str:
        """The polygon under the line, closed along the x axis."""
        if not self.points:
            return ""
        base = f"{self.points[-1].x:.1f},{self.bottom} {self.points[0].x:.1f},{self.bottom}"
        return f"{self.polyline} {base}"


def compliance_chart(
    history: Sequence[Mapping[str, Any]], width: int = 1100, height: int = 240
) -> LineChart:
    """Place each day of ``compliance.history`` by its date (gaps stay gaps) and its rate."""
    left, top, right, bottom = 48, 12, width - 16, height - 28
    days = [
        (date.fromisoformat(h["day"]), h)
        for h in history[-MAX_POINTS:]
        if h.get("compliance_rate") is not None
    ]
    span = (days[-1][0] - days[0][0]).days if days else 0

    def x_of(day: date) -> float:
        if span == 0:
            return (left + right) / 2
        return left + (right - left) * (day - days[0][0]).days / span

    def y_of(rate: float) -> float:
        return bottom - (bottom - top) * max(0.0, min(1.0, rate))

    points = tuple(
        Point(x_of(d), y_of(h["compliance_rate"]), h["day"], h["compliance_rate"], h["reporting"], h["compliant"])
        for d, h in days
    )  # fmt: skip
    y_ticks = tuple(
        Tick(y_of(share), f"{round(share * 100)} %") for share in (0, 0.25, 0.5, 0.75, 1)
    )
    shown = {0, len(points) - 1, (len(points) - 1) // 2} if points else set()
    last = len(points) - 1
    x_ticks = tuple(
        Tick(
            points[i].x,
            points[i].day,
            "start" if i == 0 and last else "end" if i == last and last else "middle",
        )
        for i in sorted(shown)
    )
    return LineChart(width, height, left, top, right, bottom, points, y_ticks, x_ticks)


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    name: str
    count: int


def stacked_bar(counts: Sequence[tuple[str, int]], width: int = 1000) -> tuple[Bar, ...]:
    """One bar split by ``counts`` (name, count), each part as wide as its share; empty parts left out."""
    total = sum(count for _, count in counts)
    if total <= 0:
        return ()
    bars, x = [], 0.0
    for name, count in counts:
        if count > 0:
            share = width * count / total
            bars.append(Bar(round(x, 1), round(share, 1), name, count))
            x += share
    return tuple(bars)
