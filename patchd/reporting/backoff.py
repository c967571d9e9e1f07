"""When to try the collector again: exponential backoff with full jitter, and Retry-After.

Pure functions of their inputs (the failure count, the random draw, the answer, the time),
so the schedule is tested exactly. "Full jitter" draws the wait uniformly between zero and
an exponentially growing ceiling: a fleet that lost its collector at the same moment
comes back spread out, not in waves. A collector's ``Retry-After`` (seconds, or an HTTP
date) is a floor under that draw; a refused identity (401) waits at least an hour, since
only an administrator can fix it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BASE_DELAY_S = 10.0  # the ceiling after the first failure
MAX_DELAY_S = 3600.0  # the ceiling never grows beyond an hour
UNAUTHORIZED_DELAY_S = 3600.0  # at least this long after a 401
MAX_RETRY_AFTER_S = 24 * 3600.0  # a collector cannot silence an endpoint for longer
MAX_RETRY_AFTER_CHARS = 64

Draw = Callable[[float], float]  # a uniform draw from [0, high]


def uniform_draw(high: float) -> float:
    """The default :data:`Draw`."""
    return random.uniform(0.0, high)  # noqa: S311 - jitter, not a secret


def ceiling(failures: int) -> float:
    """The largest wait after ``failures`` consecutive failures (1 for the first)."""
    exponent = max(0, min(failures - 1, 32))
    return min(MAX_DELAY_S, BASE_DELAY_S * 2.0**exponent)


def retry_delay(
    failures: int,
    *,
    draw: Draw = uniform_draw,
    retry_after_s: float | None = None,
    unauthorized: bool = False,
) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (counting this one)."""
    delay = draw(ceiling(failures))
    if unauthorized:
        delay = max(delay, UNAUTHORIZED_DELAY_S)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by a ``Retry-After`` header at ``now``; ``None`` if absent or unreadable.

    RFC 9110: a number of seconds, or an HTTP date (a date in the past means now).
    The answer is capped at :data:`MAX_RETRY_AFTER_S`.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > MAX_RETRY_AFTER_CHARS:
        return None
    if text.isascii() and text.isdigit():
        return min(float(int(text)), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, with no claim about the sender's zone
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_S)
