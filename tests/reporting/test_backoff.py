"""The retry schedule: exponential ceilings, full jitter, Retry-After, a long wait after 401."""

from __future__ import annotations

import pytest

from patchd.reporting.backoff import (
    MAX_DELAY_S,
    MAX_RETRY_AFTER_S,
    UNAUTHORIZED_DELAY_S,
    ceiling,
    parse_retry_after,
    retry_delay,
)
from tests.reporting.conftest import START


def top(high: float) -> float:
    return high


def bottom(high: float) -> float:
    return 0.0


def test_ceiling_doubles_then_caps() -> None:
    assert [ceiling(n) for n in range(1, 6)] == [10.0, 20.0, 40.0, 80.0, 160.0]
    assert ceiling(9) == 2560.0
    assert ceiling(10) == ceiling(1000) == MAX_DELAY_S


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    seen: list[float] = []

    def spy(high: float) -> float:
        seen.append(high)
        return high / 2

    assert retry_delay(3, draw=spy) == 20.0
    assert seen == [40.0]
    assert retry_delay(3, draw=bottom) == 0.0


@pytest.mark.parametrize(
    ("retry_after", "draw", "expected"),
    [
        pytest.param(120.0, bottom, 120.0, id="floor-over-a-short-draw"),
        pytest.param(5.0, top, 40.0, id="a-longer-draw-wins"),
        pytest.param(10 * MAX_RETRY_AFTER_S, bottom, MAX_RETRY_AFTER_S, id="capped"),
    ],
)
def test_retry_after_is_a_floor(retry_after: float, draw: object, expected: float) -> None:
    assert callable(draw)
    assert retry_delay(3, draw=draw, retry_after_s=retry_after) == expected


def test_unauthorized_waits_long() -> None:
    assert retry_delay(1, draw=bottom, unauthorized=True) == UNAUTHORIZED_DELAY_S
    assert retry_delay(1, draw=top, unauthorized=True) == UNAUTHORIZED_DELAY_S


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("7", 7.0, id="seconds"),
        pytest.param(" 120 ", 120.0, id="spaces"),
        pytest.param("Fri, 04 Dec 2026 12:01:30 GMT", 90.0, id="http-date"),
        pytest.param("Fri, 04 Dec 2026 11:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("999999999", MAX_RETRY_AFTER_S, id="capped"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("-5", None, id="negative"),
        pytest.param("soon", None, id="nonsense"),
        pytest.param("1" * 100, None, id="too-long"),
        pytest.param("١٢", None, id="non-ascii-digits"),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, START) == expected
