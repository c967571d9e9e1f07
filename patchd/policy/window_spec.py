"""Maintenance windows, blackouts and splay as a policy states them, validated into frozen data.

The policy's ``windows`` mapping names each window; a window has a ``timezone`` (``local``
for the endpoint's own zone, or an IANA name such as ``Europe/Berlin``) and exactly one
schedule:

- ``weekly: {days: [sun, wed], start: "02:00", duration: 4h}`` — days ``mon`` … ``sun``;
- ``monthly: {nth: 2, weekday: sat, start: ..., duration: ...}`` — ``nth`` 1 to 4, or -1
  for the last such weekday of the month;
- ``monthly: {patch_tuesday: 2, start: ..., duration: ...}`` — Microsoft's Patch Tuesday
  (the second Tuesday) plus 0 to 20 days;
- ``dates: ["2026-12-26"], start: ..., duration: ...`` — explicit local dates (at most
  1000), with ``start`` and ``duration`` beside ``dates``.

``start`` is a quoted ``"HH:MM"`` (24 h; YAML reads an unquoted ``22:00`` as the number
1320); ``duration`` is 1 minute to 7 days (:mod:`patchd.policy.durations`).

``blackouts`` is a list of ``{name, start, end, timezone}``: ``start`` and ``end`` are
``YYYY-MM-DDTHH:MM`` (or a bare date, meaning its midnight). With a ``timezone``
(``local``, ``UTC`` or an IANA name) they are wall-clock times there and must carry no
offset; without one, each must carry its offset (``Z`` or ``+01:00``). ``splay`` is a
duration from 0 up to 1 day, shorter than every window.

Anything else (an unknown key, a bad value, a range exceeded) raises
:class:`WindowSpecError` with the path of the offending value. The arithmetic on the
result lives in :mod:`patchd.policy.windows`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from types import MappingProxyType
from typing import TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from patchd.policy.durations import format_duration, parse_duration

MAX_WINDOWS = 256
MAX_BLACKOUTS = 256
MAX_DATES = 1000  # explicit dates of one window
MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=7)
MAX_SPLAY = timedelta(days=1)
MAX_PATCH_TUESDAY_OFFSET = 20  # days; keeps each month's opening before the next Patch Tuesday
LOCAL = "local"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()

Path: TypeAlias = tuple[str | int, ...]

_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_SHOWN_CHARS = 40  # of a bad value, echoed in an error message
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the policy's names; never "+"
_TIME = re.compile(r"(\d\d):(\d\d)")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d(?:T\d\d:\d\d(?::\d\d)?)?(?P<offset>Z|[+-]\d\d:\d\d)?")


class WindowSpecError(ValueError):
    """A window, blackout or splay is invalid; ``path`` locates the value in the policy."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in path) or '(schedule)'}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Weekly:
    """Every listed weekday (``date.weekday()`` numbers, Monday = 0, sorted)."""

    days: tuple[int, ...]


@dataclass(frozen=True)
class NthWeekday:
    """The ``nth`` (1 to 4, or -1 for the last) ``weekday`` of every month."""

    nth: int
    weekday: int


@dataclass(frozen=True)
class PatchTuesday:
    """The second Tuesday of every month plus ``offset_days`` (may fall in the next month)."""

    offset_days: int


@dataclass(frozen=True)
class ExplicitDates:
    """These local dates only (sorted, unique)."""

    dates: tuple[date, ...]


Recurrence: TypeAlias = Weekly | NthWeekday | PatchTuesday | ExplicitDates


@dataclass(frozen=True)
class MaintenanceWindow:
    """A named window: on each date of ``recurrence`` it opens at ``start`` (wall clock in
    ``timezone``) and stays open for ``duration`` of elapsed time."""

    name: str
    timezone: str  # "local" or an IANA name
    recurrence: Recurrence
    start: time
    duration: timedelta

    def zone(self, local_zone: tzinfo) -> tzinfo:
        """The zone this window's wall-clock times are read in."""
        return local_zone if self.timezone == LOCAL else ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Blackout:
    """No window opens or continues in ``[start, end)``.

    ``start`` and ``end`` are aware, in UTC, except for a blackout in the endpoint's own
    zone (``local``): those are naive wall-clock times, resolved by :meth:`bounds`.
    """

    name: str
    start: datetime
    end: datetime
    local: bool = False

    def bounds(self, local_zone: tzinfo) -> tuple[datetime, datetime]:
        """``(start, end)`` as aware UTC instants for an endpoint in ``local_zone``."""
        if not self.local:
            return self.start, self.end
        return wall_time_to_utc(self.start, local_zone), wall_time_to_utc(self.end, local_zone)


@dataclass(frozen=True)
class Schedule:
    """Every window of a policy by name, its blackouts, and the per-endpoint splay."""

    windows: Mapping[str, MaintenanceWindow]
    blackouts: tuple[Blackout, ...]
    splay: timedelta


def wall_time_to_utc(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of the naive wall-clock time ``wall`` in ``zone``.

    A time that does not exist (a spring-forward gap) becomes the first instant after the
    gap; an ambiguous one (a fall-back fold) is its first occurrence.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists; fold=0 is the earlier of two occurrences (PEP 495)
    # In a gap, fold=0 reads the wall time with the offset from before the transition (an
    # instant after it) and fold=1 with the offset after it (an instant before it); the
    # transition itself lies between and is found by bisection on whole seconds.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    offset_before = low.astimezone(zone).utcoffset()
    while (high - low) > timedelta(seconds=1):
        middle = low + timedelta(seconds=int((high - low).total_seconds()) // 2)
        if middle.astimezone(zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    return high


def parse_schedule(
    windows: object, blackouts: object, splay: object, *, base_path: Path = ()
) -> Schedule:
    """Validate the policy's ``windows``, ``blackouts`` and ``splay`` (``None`` = absent).

    Raises :class:`WindowSpecError` at the first problem, its path below ``base_path``.
    """
    window_map = _mapping({} if windows is None else windows, (*base_path, "windows"))
    if len(window_map) > MAX_WINDOWS:
        raise WindowSpecError((*base_path, "windows"), f"at most {MAX_WINDOWS} windows")
    parsed = {
        name: _window(name, spec, (*base_path, "windows", name))
        for name, spec in window_map.items()
    }
    blackout_list = [] if blackouts is None else blackouts
    if not isinstance(blackout_list, list):
        raise WindowSpecError((*base_path, "blackouts"), "must be a list")
    if len(blackout_list) > MAX_BLACKOUTS:
        raise WindowSpecError((*base_path, "blackouts"), f"at most {MAX_BLACKOUTS} blackouts")
    parsed_blackouts = tuple(
        _blackout(item, (*base_path, "blackouts", i)) for i, item in enumerate(blackout_list)
    )
    splay_path = (*base_path, "splay")
    splay_delta = (
        timedelta(0) if splay is None else _duration(splay, splay_path, timedelta(0), MAX_SPLAY)
    )
    for window in parsed.values():
        if splay_delta and splay_delta >= window.duration:
            raise WindowSpecError(
                splay_path,
                f"must be shorter than every window ({window.name} lasts "
                f"{format_duration(window.duration)}); some endpoints would never open",
            )
    return Schedule(MappingProxyType(parsed), parsed_blackouts, splay_delta)


def _window(name: str, spec: object, path: Path) -> MaintenanceWindow:
    if not _NAME.fullmatch(name):
        raise WindowSpecError(path, "a window name is 1-64 letters, digits, '.', '_' or '-'")
    fields = _mapping(spec, path)
    kinds = [k for k in ("weekly", "monthly", "dates") if k in fields]
    if not kinds:
        raise WindowSpecError(path, "needs one of weekly, monthly or dates")
    if len(kinds) > 1:
        raise WindowSpecError(
            (*path, kinds[1]),
            f"give only one of weekly, monthly or dates, not {' and '.join(kinds)}",
        )
    kind = kinds[0]
    _keys(
        fields,
        path,
        ("timezone", kind, "start", "duration") if kind == "dates" else ("timezone", kind),
    )
    zone = _zone(fields["timezone"], (*path, "timezone"))
    if kind == "dates":
        recurrence: Recurrence = _dates(fields["dates"], (*path, "dates"))
        body, body_path = fields, path
    else:
        body_path = (*path, kind)
        body = _mapping(fields[kind], body_path)
        recurrence = _weekly(body, body_path) if kind == "weekly" else _monthly(body, body_path)
    return MaintenanceWindow(
        name=name,
        timezone=zone,
        recurrence=recurrence,
        start=_time(body["start"], (*body_path, "start")),
        duration=_duration(body["duration"], (*body_path, "duration"), MIN_WINDOW, MAX_WINDOW),
    )


def _weekly(body: dict[str, object], path: Path) -> Weekly:
    _keys(body, path, ("days", "start", "duration"))
    days = body["days"]
    if not isinstance(days, list) or not days:
        raise WindowSpecError((*path, "days"), f"must be a non-empty list of {', '.join(WEEKDAYS)}")
    numbers: list[int] = []
    for i, day in enumerate(days):
        number = _weekday(day, (*path, "days", i))
        if number in numbers:
            raise WindowSpecError((*path, "days", i), f"{day} is listed twice")
        numbers.append(number)
    return Weekly(tuple(sorted(numbers)))


def _monthly(body: dict[str, object], path: Path) -> NthWeekday | PatchTuesday:
    if "patch_tuesday" in body:
        for key in ("nth", "weekday"):
            if key in body:
                raise WindowSpecError((*path, key), "give either patch_tuesday or nth with weekday")
        _keys(body, path, ("patch_tuesday", "start", "duration"))
        offset = _integer(body["patch_tuesday"], (*path, "patch_tuesday"))
        if not 0 <= offset <= MAX_PATCH_TUESDAY_OFFSET:
            raise WindowSpecError(
                (*path, "patch_tuesday"),
                f"must be 0 to {MAX_PATCH_TUESDAY_OFFSET} days after Patch Tuesday",
            )
        return PatchTuesday(offset)
    _keys(body, path, ("nth", "weekday", "start", "duration"))
    nth = _integer(body["nth"], (*path, "nth"))
    if nth not in (1, 2, 3, 4, -1):
        raise WindowSpecError((*path, "nth"), "must be 1, 2, 3, 4, or -1 for the last")
    return NthWeekday(nth, _weekday(body["weekday"], (*path, "weekday")))


def _dates(value: object, path: Path) -> ExplicitDates:
    if not isinstance(value, list) or not value:
        raise WindowSpecError(path, 'must be a non-empty list of dates such as "2026-12-26"')
    if len(value) > MAX_DATES:
        raise WindowSpecError(path, f"at most {MAX_DATES} dates")
    dates: set[date] = set()
    for i, text in enumerate(value):
        day = _date(text, (*path, i))
        if day in dates:
            raise WindowSpecError((*path, i), f"{text} is listed twice")
        dates.add(day)
    return ExplicitDates(tuple(sorted(dates)))


def _blackout(value: object, path: Path) -> Blackout:
    fields = _mapping(value, path)
    _keys(fields, path, ("name", "start", "end"), optional=("timezone",))
    name = fields["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise WindowSpecError((*path, "name"), "a name is 1-64 letters, digits, '.', '_' or '-'")
    zone_name = _zone(fields["timezone"], (*path, "timezone")) if "timezone" in fields else None
    start = _timestamp(fields["start"], (*path, "start"), zoned=zone_name is not None)
    end = _timestamp(fields["end"], (*path, "end"), zoned=zone_name is not None)
    local = zone_name == LOCAL
    if zone_name is not None and not local:
        start = wall_time_to_utc(start, ZoneInfo(zone_name))
        end = wall_time_to_utc(end, ZoneInfo(zone_name))
    if end <= start:
        raise WindowSpecError((*path, "end"), "must be after start")
    return Blackout(
        name,
        start if local else start.astimezone(UTC),
        end if local else end.astimezone(UTC),
        local,
    )


def _mapping(value: object, path: Path) -> dict[str, object]:
    if not isinstance(value, dict):
        raise WindowSpecError(path, "must be a mapping")
    for key in value:
        if not isinstance(key, str):
            raise WindowSpecError(path, f"keys must be strings, not {_shown(key)}")
    return value


def _keys(
    fields: dict[str, object], path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    for key in fields:
        if key not in required and key not in optional:
            expected = ", ".join(required + optional)
            raise WindowSpecError((*path, key), f"unknown key {_shown(key)} (expected {expected})")
    for key in required:
        if key not in fields:
            raise WindowSpecError((*path, key), "is required")


def _zone(value: object, path: Path) -> str:
    if not isinstance(value, str) or not value:
        raise WindowSpecError(path, "must be local or an IANA time zone such as Europe/Berlin")
    if value == LOCAL:
        return value
    # Files in the zone directory that are not zones, or name the host's own zone, or count
    # leap seconds: each would mean something different on each endpoint.
    if value in _NOT_ZONES or value.startswith(("posix/", "right/")):
        raise WindowSpecError(path, f"{_shown(value)} is not an IANA time zone name")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowSpecError(path, f"unknown time zone {_shown(value)}") from None
    return value


def _time(value: object, path: Path) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        raise WindowSpecError(
            path, 'must be a quoted time such as "02:00" (unquoted, YAML reads 22:00 as a number)'
        )
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise WindowSpecError(path, f"{_shown(value)} is not a time HH:MM from 00:00 to 23:59")
    return time(int(match[1]), int(match[2]))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _duration(value: object, path: Path, minimum: timedelta, maximum: timedelta) -> timedelta:
    try:
        return parse_duration(value, minimum=minimum, maximum=maximum)
    except ValueError as e:
        raise WindowSpecError(path, str(e)) from None


def _weekday(value: object, path: Path) -> int:
    if value not in WEEKDAYS:
        raise WindowSpecError(path, f"{_shown(value)} is not a day: {', '.join(WEEKDAYS)}")
    return WEEKDAYS.index(str(value))


def _integer(value: object, path: Path) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise WindowSpecError(path, "must be a whole number")
    return value


def _date(value: object, path: Path) -> date:
    try:
        if isinstance(value, str) and _DATE.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise WindowSpecError(path, f"{_shown(value)} is not a date such as 2026-12-26")


def _timestamp(value: object, path: Path, *, zoned: bool) -> datetime:
    """Naive when the blackout names a zone, aware when it does not."""
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    try:
        moment = (
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            if match and isinstance(value, str)
            else None
        )
    except ValueError:
        moment = None
    if match is None or moment is None:
        raise WindowSpecError(path, f"{_shown(value)} is not a time such as 2026-12-20T00:00")
    if zoned and match["offset"]:
        raise WindowSpecError(
            path, "has an offset although the blackout names a timezone; give one or the other"
        )
    if not zoned and not match["offset"]:
        raise WindowSpecError(path, "needs an offset (Z or +01:00) or a timezone on the blackout")
    return moment
