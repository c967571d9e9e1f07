"""Time as patchd writes it: timezone-aware UTC, ISO 8601 with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, aware, in UTC (the one place patchd reads the wall clock)."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """``2026-12-04T19:57:13Z`` (microseconds kept when present)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse what :func:`format_time` wrote (any ISO 8601 with an offset)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return moment.astimezone(UTC)


def stamp(moment: datetime) -> str:
    """:func:`format_time` to the second: stored times that sort as text (``...:05Z``)."""
    return format_time(moment.replace(microsecond=0))
