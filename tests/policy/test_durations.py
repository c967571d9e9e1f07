"""Tests for patchd.policy.durations: the duration grammar, its bounds and its messages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchd.policy.durations import ABSOLUTE_MAXIMUM, format_duration, parse_duration

WEEK = timedelta(days=7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("90m", timedelta(minutes=90), id="minutes"),
        pytest.param("4h", timedelta(hours=4), id="hours"),
        pytest.param("1d", timedelta(days=1), id="day"),
        pytest.param("1h30m", timedelta(hours=1, minutes=30), id="hours-and-minutes"),
        pytest.param("1d2h3m", timedelta(days=1, hours=2, minutes=3), id="all-units"),
        pytest.param("2d12h", timedelta(days=2, hours=12), id="days-and-hours"),
        pytest.param("1m", timedelta(minutes=1), id="default-minimum"),
        pytest.param("7d", WEEK, id="a-week"),
        pytest.param("007m", timedelta(minutes=7), id="leading-zeros"),
        pytest.param("400d", timedelta(days=400), id="no-maximum-by-default"),
    ],
)
def test_valid_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        pytest.param(
            "4x", {}, "'4x' is not a duration such as 90m, 4h, 1h30m or 1d", id="bad-unit"
        ),
        pytest.param("", {}, "'' is not a duration", id="empty"),
        pytest.param("h", {}, "'h' is not a duration", id="unit-only"),
        pytest.param("4", {}, "'4' is not a duration", id="number-only"),
        pytest.param("1.5h", {}, "'1.5h' is not a duration", id="fraction"),
        pytest.param("-1h", {}, "'-1h' is not a duration", id="negative"),
        pytest.param(" 4h", {}, "' 4h' is not a duration", id="leading-space"),
        pytest.param("4H", {}, "'4H' is not a duration", id="upper-case"),
        pytest.param("30m1h", {}, "'30m1h' is not a duration", id="units-out-of-order"),
        pytest.param("1h1h", {}, "'1h1h' is not a duration", id="unit-twice"),
        pytest.param("1234567m", {}, "'1234567m' is not a duration", id="too-many-digits"),
        pytest.param("0m", {}, "0m is too short: at least 1m", id="zero-below-default-minimum"),
        pytest.param("0d", {}, "0d is too short: at least 1m", id="zero-days"),
        pytest.param("8d", {"maximum": WEEK}, "8d is too long: at most 7d", id="over-maximum"),
        pytest.param(
            "7d1m", {"maximum": WEEK}, "7d1m is too long: at most 7d", id="just-over-maximum"
        ),
        pytest.param("3653d1m", {}, "3653d1m is too long: at most 3653d", id="over-ten-years"),
        pytest.param(
            "30m", {"minimum": timedelta(hours=1)}, "30m is too short: at least 1h", id="minimum"
        ),
        pytest.param(
            "1" * 100, {}, "'" + "1" * 32 + "'... is not a duration", id="long-text-shortened"
        ),
        pytest.param(4, {}, "must be a duration such as 90m", id="integer"),
        pytest.param(None, {}, "must be a duration such as 90m", id="null"),
        pytest.param(True, {}, "must be a duration such as 90m", id="boolean"),
    ],
)
def test_invalid_durations(text: object, kwargs: dict[str, timedelta], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_duration(text, **kwargs)


@pytest.mark.parametrize("text", [pytest.param("0d", id="days"), pytest.param("0m", id="minutes")])
def test_zero_allowed_with_minimum_zero(text: str) -> None:
    assert parse_duration(text, minimum=timedelta(0)) == timedelta(0)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        pytest.param(timedelta(0), "0m", id="zero"),
        pytest.param(timedelta(minutes=90), "1h30m", id="minutes-carry"),
        pytest.param(timedelta(days=1, minutes=5), "1d5m", id="skips-zero-hours"),
        pytest.param(timedelta(hours=24), "1d", id="day"),
        pytest.param(timedelta(minutes=1, seconds=59), "1m", id="seconds-dropped"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


def test_format_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(minutes=-1))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=int(ABSOLUTE_MAXIMUM.total_seconds()) // 60))
def test_format_then_parse_round_trips(minutes: int) -> None:
    delta = timedelta(minutes=minutes)
    assert parse_duration(format_duration(delta), minimum=timedelta(0)) == delta
