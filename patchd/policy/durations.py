"""Durations as policies write them: ``90m``, ``4h``, ``1d``, ``1h30m``, ``0d``.

A duration is one or more ``<digits><unit>`` parts with units ``d`` (24 hours), ``h`` and
``m``, largest unit first, each unit at most once, lower case, no spaces and no signs.
Callers choose the range: maintenance windows take 1 minute to 7 days, deferrals allow 0.
"""

from __future__ import annotations

import re
from datetime import timedelta

MAX_DIGITS = 6  # per part: keeps every accepted text far from timedelta's overflow
ABSOLUTE_MAXIMUM = timedelta(days=3653)  # ten years: no policy duration means more than that
MAX_SHOWN_CHARS = 32  # of a bad text, echoed in the error message

_DURATION = re.compile(
    rf"(?:(?P<d>\d{{1,{MAX_DIGITS}}})d)?(?:(?P<h>\d{{1,{MAX_DIGITS}}})h)?(?:(?P<m>\d{{1,{MAX_DIGITS}}})m)?"
)
_EXAMPLES = "such as 90m, 4h, 1h30m or 1d"


def parse_duration(
    text: object,
    *,
    minimum: timedelta = timedelta(minutes=1),
    maximum: timedelta | None = None,
) -> timedelta:
    """The duration ``text`` denotes, checked against ``[minimum, maximum]``.

    ``maximum`` of ``None`` means only the absolute bound of ten years. Raises
    :class:`ValueError` with a short message that reads well after a field's path.
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a duration {_EXAMPLES}")
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        shown = repr(text) if len(text) <= MAX_SHOWN_CHARS else repr(text[:MAX_SHOWN_CHARS]) + "..."
        raise ValueError(f"{shown} is not a duration {_EXAMPLES}")
    parts = {unit: int(match[unit] or 0) for unit in "dhm"}
    delta = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"])
    upper = ABSOLUTE_MAXIMUM if maximum is None else min(maximum, ABSOLUTE_MAXIMUM)
    if delta < minimum:
        raise ValueError(f"{text} is too short: at least {format_duration(minimum)}")
    if delta > upper:
        raise ValueError(f"{text} is too long: at most {format_duration(upper)}")
    return delta


def format_duration(delta: timedelta) -> str:
    """The canonical text of a whole-minute, non-negative duration (``1d2h30m``, ``0m``).

    Seconds are dropped; :func:`parse_duration` reads back what this writes.
    """
    if delta < timedelta(0):
        raise ValueError("negative duration")
    minutes = int(delta.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    text = (f"{days}d" if days else "") + (f"{hours}h" if hours else "")
    text += f"{minutes}m" if minutes or not text else ""
    return text
