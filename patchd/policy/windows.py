"""When patches may land: the openings of maintenance windows, as pure arithmetic.

Everything here is a function of a :class:`~patchd.policy.window_spec.Schedule` (parsed by
:func:`patchd.policy.window_spec.parse_schedule`), the endpoint's zone and key, and a time
that is passed in; nothing reads the clock. The rules:

1. **Wall-clock starts.** A window opens at its ``start``, a wall-clock time in the
   window's zone (``local`` = the endpoint's own zone), on each of its local dates.
2. **Spring-forward gaps.** A start that does not exist that day becomes the first instant
   after the gap: 02:30 on a day clocks jump from 02:00 to 03:00 opens at 03:00 (and with
   Lord Howe's 30-minute jump from 02:00 to 02:30, 02:15 opens at 02:30).
3. **Fall-back folds.** An ambiguous start is its first occurrence (``fold=0``): 01:30 on
   a day clocks go back from 02:00 to 01:00 opens at the first 01:30, still in summer time.
4. **Elapsed durations.** A window lasts its ``duration`` in real time, so a 4 h window is
   4 h even when clocks change inside it (its local end time then moves by the shift).
5. **Monthly windows.** ``nth`` 1-4 and the last weekday exist in every month;
   ``patch_tuesday: N`` counts N calendar days from the second Tuesday and may land in
   the next calendar month (2027-01-12 + 20 = 2027-02-01): it is still one opening per
   month. A day that does not exist in a month is skipped that month.
6. **Blackouts** cut openings: the part of an opening inside a blackout is removed, an
   opening wholly inside one is dropped. ``local`` blackouts follow rules 2-3.
7. **Splay.** Each opening left after the blackouts starts later by a stable offset in
   ``[0, splay)``, whole seconds taken from ``sha256("patchd-splay\\0" + splay_key + "\\0" +
   window name)``; it applies after a blackout too, so a fleet does not rush in the
   second a freeze ends. An opening the offset would push to or past its end is dropped.
8. **Merging.** Openings that overlap or touch (after splay) become one, named after
   each window in it in order of start, joined with ``+`` (``sunday-night+holidays``).
   Merging looks back :data:`LOOKBACK` before ``after`` and leaves out parts of openings
   that began earlier: an opening that has run without a break for longer than that is
   reported from the first part that began within it.
9. **Bounds.** At most :data:`MAX_COUNT` openings, a horizon of at most
   :data:`MAX_HORIZON`; the search walks dates in chunks, never minutes. Occurrences
   starting past the horizon are not seen, so an opening that runs on past it without a
   break ends early. Times passed in must be aware; every time returned is aware UTC.
"""

from __future__ import annotations

import bisect
import calendar
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from patchd.policy.window_spec import (
    MAX_WINDOW,
    ExplicitDates,
    MaintenanceWindow,
    NthWeekday,
    PatchTuesday,
    Recurrence,
    Schedule,
    Weekly,
    wall_time_to_utc,
)

MAX_COUNT = 1000  # openings per call
MAX_HORIZON = timedelta(days=3653)  # ten years
LOOKBACK = timedelta(days=8)  # > the longest window (7 d): every opening still running is seen
CHUNK = timedelta(days=28)  # search step; openings are final once the search passes their end
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)  # `after` outside these is refused, far from the
LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # limits of datetime and of the zone data
_ONE_DAY = timedelta(days=1)
_TUESDAY = 1

Interval = tuple[datetime, datetime]
_Piece = tuple[datetime, datetime, str]  # start, end, window name


@dataclass(frozen=True)
class Opening:
    """``[start, end)`` (aware UTC) in which ``window`` lets patches land."""

    window: str  # a window's name, or several joined with "+" when they overlap
    start: datetime
    end: datetime


def openings(
    schedule: Schedule,
    names: Sequence[str],
    after: datetime,
    *,
    local_zone: tzinfo,
    splay_key: str,
    count: int,
    horizon: timedelta = timedelta(days=400),
) -> list[Opening]:
    """The first ``count`` openings of the windows ``names`` that end after ``after``.

    Sorted by start and disjoint, with blackouts cut out, this endpoint's splay applied and
    overlaps merged (module rules 6-8); windows starting more than ``horizon`` after
    ``after`` are not searched. Raises :class:`ValueError` for a naive or absurd ``after``,
    an unknown window name, or ``count``/``horizon`` out of range.
    """
    return _openings(
        schedule,
        names,
        after,
        local_zone=local_zone,
        splay_key=splay_key,
        count=count,
        horizon=horizon,
        splay=schedule.splay,
    )


def current_opening(
    schedule: Schedule, names: Sequence[str], at: datetime, *, local_zone: tzinfo, splay_key: str
) -> Opening | None:
    """The opening containing ``at`` (``start <= at < end``), or ``None`` when all are closed."""
    at = _checked_time(at, "at")
    upcoming = openings(schedule, names, at, local_zone=local_zone, splay_key=splay_key, count=1)
    return upcoming[0] if upcoming and upcoming[0].start <= at else None


def never_opens(
    schedule: Schedule,
    name: str,
    *,
    local_zone: tzinfo,
    after: datetime,
    horizon: timedelta = timedelta(days=366),
) -> bool:
    """Whether window ``name`` has no opening left within ``horizon`` of ``after``.

    For lint warnings: only past dates, or every occurrence blacked out. Splay is ignored
    (it depends on the endpoint). Raises like :func:`openings`.
    """
    found = _openings(
        schedule,
        [name],
        after,
        local_zone=local_zone,
        splay_key="",
        count=1,
        horizon=horizon,
        splay=timedelta(0),
    )
    return not found


def occurrences(
    window: MaintenanceWindow, *, local_zone: tzinfo, since: datetime, until: datetime
) -> list[Opening]:
    """The window's raw openings starting in ``[since, until)``: rules 1-5 only.

    No blackouts, splay or merging; each lasts exactly the window's duration. Raises
    :class:`ValueError` for naive times or a span over :data:`MAX_HORIZON`.
    """
    since, until = _checked_time(since, "since"), _checked_time(until, "until")
    if until - since > MAX_HORIZON:
        raise ValueError(f"at most {MAX_HORIZON.days} days at once")
    return [
        Opening(window.name, start, end)
        for start, end in _raw(window, window.zone(local_zone), since, until)
    ]


def splay_offset(splay: timedelta, splay_key: str, window: str) -> timedelta:
    """This endpoint's stable delay in ``[0, splay)`` for openings of ``window``, whole seconds."""
    seconds = int(splay.total_seconds())
    if seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(
        b"patchd-splay\0" + splay_key.encode() + b"\0" + window.encode()
    ).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % seconds)


class _Merger:
    """Merges pieces fed in order of start into disjoint openings ending after ``after``."""

    def __init__(self, after: datetime, count: int) -> None:
        self.after = after
        self.count = count
        self.found: list[Opening] = []
        self._run: tuple[datetime, datetime, list[str]] | None = None  # start, end, windows

    @property
    def done(self) -> bool:
        return len(self.found) >= self.count

    def add(self, start: datetime, end: datetime, window: str) -> None:
        if self._run is not None and start <= self._run[1]:
            run_start, run_end, names = self._run
            if window not in names:
                names.append(window)
            self._run = (run_start, max(run_end, end), names)
            return
        self.close_before(start)
        self._run = (start, end, [window])

    def close_before(self, moment: datetime | None) -> None:
        """Nothing fed later starts before ``moment`` (``None``: nothing more is fed at all).

        A run ending before it is final.
        """
        if self._run is not None and (moment is None or self._run[1] < moment):
            start, end, names = self._run
            if end > self.after and not self.done:
                self.found.append(Opening("+".join(names), start, end))
            self._run = None


def _openings(
    schedule: Schedule,
    names: Sequence[str],
    after: datetime,
    *,
    local_zone: tzinfo,
    splay_key: str,
    count: int,
    horizon: timedelta,
    splay: timedelta,
) -> list[Opening]:
    after = _checked_time(after, "after")
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be 1 to {MAX_COUNT}")
    if not timedelta(0) < horizon <= MAX_HORIZON:
        raise ValueError(f"horizon must be positive and at most {MAX_HORIZON.days} days")
    windows = _selected(schedule, names)
    blackouts = _disjoint([b.bounds(local_zone) for b in schedule.blackouts])
    offsets = {w.name: splay_offset(splay, splay_key, w.name) for w in windows}
    merger = _Merger(after, count)
    earliest = after - LOOKBACK
    # Occurrences up to a window's length older still may leave parts (after a blackout cut)
    # that begin within the lookback.
    chunk_start, search_end = earliest - MAX_WINDOW, after + horizon
    pending: list[_Piece] = []  # sorted; splay may push a piece's start past its chunk's end
    while chunk_start < search_end and not merger.done:
        chunk_end = min(chunk_start + CHUNK, search_end)
        last = chunk_end >= search_end
        for window in windows:
            pieces = _pieces(
                window,
                window.zone(local_zone),
                chunk_start,
                chunk_end,
                blackouts=blackouts,
                offset=offsets[window.name],
            )
            pending.extend((start, end, window.name) for start, end in pieces if start >= earliest)
        pending.sort()
        # Pieces of later chunks start at or after chunk_end (cuts and splay only move starts
        # later), so everything before it can be merged now, in order of start.
        ready = len(pending) if last else bisect.bisect_left(pending, chunk_end, key=_start)
        for start, end, name in pending[:ready]:
            merger.add(start, end, name)
        del pending[:ready]
        merger.close_before(None if last else chunk_end)
        chunk_start = chunk_end
    return merger.found


def _pieces(
    window: MaintenanceWindow,
    zone: tzinfo,
    since: datetime,
    until: datetime,
    *,
    blackouts: list[Interval],
    offset: timedelta,
) -> Iterator[Interval]:
    """What is left of occurrences starting in ``[since, until)`` after blackouts and splay."""
    for start, end in _raw(window, zone, since, until):
        for cut_start, cut_end in _cut(start, end, blackouts):
            if cut_start + offset < cut_end:
                yield cut_start + offset, cut_end


def _start(piece: _Piece) -> datetime:
    return piece[0]


def _selected(schedule: Schedule, names: Sequence[str]) -> list[MaintenanceWindow]:
    if isinstance(names, str):
        raise ValueError("names must be a sequence of window names, not one string")
    unknown = [n for n in names if n not in schedule.windows]
    if unknown:
        raise ValueError(f"no window named {unknown[0]!r}")
    return [schedule.windows[n] for n in dict.fromkeys(names)]


def _checked_time(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime")
    moment = moment.astimezone(UTC)
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"{what} must lie between {EARLIEST.year} and {LATEST.year}")
    return moment


def _raw(
    window: MaintenanceWindow, zone: tzinfo, since: datetime, until: datetime
) -> Iterator[Interval]:
    """Occurrences starting in ``[since, until)``, in order of start."""
    # A start resolves to its own local date or, across a gap, the next; and local dates
    # are not monotonic in a fold that crosses midnight (America/Santiago): hence the margin.
    first = since.astimezone(zone).date() - 2 * _ONE_DAY
    last = until.astimezone(zone).date() + _ONE_DAY
    for day in _dates(window.recurrence, first, last):
        start = wall_time_to_utc(datetime.combine(day, window.start), zone)
        if since <= start < until:
            yield start, start + window.duration


def _dates(recurrence: Recurrence, first: date, last: date) -> Iterator[date]:
    """The local dates in ``[first, last]`` on which the recurrence opens, in order."""
    match recurrence:
        case Weekly(days=days):
            day = first
            while day <= last:
                if day.weekday() in days:
                    yield day
                day += _ONE_DAY
        case NthWeekday(nth=nth, weekday=weekday):
            for year, month in _months(first, last):
                found = _nth_weekday(year, month, weekday, nth)
                if found is not None and first <= found <= last:
                    yield found
        case PatchTuesday(offset_days=offset):
            # The previous month's Patch Tuesday plus the offset may fall in `first`'s month.
            for year, month in _months(first.replace(day=1) - _ONE_DAY, last):
                tuesday = _nth_weekday(year, month, _TUESDAY, 2)
                if tuesday is not None and first <= tuesday + offset * _ONE_DAY <= last:
                    yield tuesday + offset * _ONE_DAY
        case ExplicitDates(dates=dates):
            yield from (d for d in dates if first <= d <= last)


def _months(first: date, last: date) -> Iterator[tuple[int, int]]:
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> date | None:
    """The ``nth`` (-1: last) ``weekday`` of the month, or None when the month has none."""
    length = calendar.monthrange(year, month)[1]
    if nth == -1:
        last = date(year, month, length)
        return last - ((last.weekday() - weekday) % 7) * _ONE_DAY
    day = 1 + (weekday - date(year, month, 1).weekday()) % 7 + 7 * (nth - 1)
    return date(year, month, day) if day <= length else None


def _disjoint(intervals: list[Interval]) -> list[Interval]:
    """Sorted, merged intervals (blackouts may overlap each other)."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif start < end:
            merged.append((start, end))
    return merged


def _cut(start: datetime, end: datetime, blackouts: list[Interval]) -> Iterator[Interval]:
    """The parts of ``[start, end)`` outside the sorted, disjoint ``blackouts``."""
    for black_start, black_end in blackouts:
        if black_end <= start:
            continue
        if black_start >= end:
            break
        if black_start > start:
            yield start, black_start
        start = black_end
        if start >= end:
            return
    yield start, end
