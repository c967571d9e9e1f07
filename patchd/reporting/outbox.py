"""The outbox: signed reports, numbered and durable before anything is sent.

It lives in the state database (``state.db``) rather than a file of its own: allocating a
report's ``seq``, storing its signed envelope and dropping the oldest when the bound is
reached is then one SQLite transaction (WAL, ``synchronous=FULL``) with the enrolment it
is signed for, under the durability, file modes and migrations the rest of patchd's
state already has. Its bound (reports and bytes) keeps it from crowding that database.

Guarantees: a ``seq`` is used once and only grows, also across crashes (it is committed
with the envelope, before any send); a report leaves the outbox only when the collector
has stored it (202, or 200 for a duplicate) or refused it for good — and every report
that left unsent is counted by reason in ``report_drops``, which the next report carries.

Fault injection (for crash tests, like the run journal's): ``PATCHD_FAULT_AFTER`` set to
``report-queued`` kills the process with SIGKILL right after a report is committed,
``report-delivered`` right after the collector accepted one and before it is removed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from patchd.runs.journal import FAULT_ENV
from patchd.state.store import StateStore
from patchd.timeutil import format_time, parse_time

MAX_ERROR_CHARS = 500


class DropReason(StrEnum):
    """Why a report left the outbox without being stored by the collector."""

    OUTBOX_FULL = "outbox-full"  # the bound was reached: the oldest made room
    REFUSED = "refused"  # 409: the collector already has this seq (or a later one)
    TOO_LARGE = "too-large"  # 413
    REJECTED = "rejected"  # any other 4xx but 401 and 429
    REENROLLED = "re-enrolled"  # signed for an endpoint id this endpoint no longer has


@dataclass(frozen=True)
class QueuedReport:
    """One signed report waiting in the outbox."""

    seq: int
    endpoint_id: str
    created_at: datetime
    envelope: bytes
    attempts: int


@dataclass(frozen=True)
class OutboxStatus:
    """What ``patchd report status`` shows."""

    queued: int
    queued_bytes: int
    oldest_seq: int | None
    oldest_created_at: str | None
    next_seq: int
    last_report_at: str | None
    failures: int
    next_attempt_at: str | None
    last_delivery_at: str | None
    last_delivered_seq: int | None
    last_error: str | None
    last_error_at: str | None
    dropped: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "queued_bytes": self.queued_bytes,
            "oldest": (
                {"seq": self.oldest_seq, "created_at": self.oldest_created_at}
                if self.oldest_seq is not None
                else None
            ),
            "next_seq": self.next_seq,
            "last_report_at": self.last_report_at,
            "consecutive_failures": self.failures,
            "next_attempt_at": self.next_attempt_at,
            "last_delivery": (
                {"at": self.last_delivery_at, "seq": self.last_delivered_seq}
                if self.last_delivery_at
                else None
            ),
            "last_error": (
                {"at": self.last_error_at, "message": self.last_error} if self.last_error else None
            ),
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
        }


# Builds the signed envelope of report ``seq``, given the outbox section it must carry.
EnvelopeMaker = Callable[[int, dict[str, Any]], bytes]


class ReportOutbox:
    """The outbox in one state database, bounded by ``max_reports`` and ``max_bytes``."""

    def __init__(self, store: StateStore, *, max_reports: int, max_bytes: int) -> None:
        self.store = store
        self.max_reports = max_reports
        self.max_bytes = max_bytes

    # -- writing -----------------------------------------------------------------------

    def enqueue(self, endpoint_id: str, make_envelope: EnvelopeMaker, now: datetime) -> int:
        """Number, sign and store a report in one transaction; return its ``seq``.

        ``make_envelope(seq, outbox_section)`` runs inside the transaction, so no other
        process can take the same ``seq``. If the outbox is then over its bound, the
        oldest reports are dropped and counted.
        """
        with self.store.transaction() as db:
            (seq,) = db.execute("SELECT next_seq FROM report_outbox_state WHERE id = 1").fetchone()
            self._enforce_bound(db, room_for=1)  # first, so this report carries the loss
            envelope = make_envelope(seq, self._section(db))
            db.execute(
                """INSERT INTO report_outbox (seq, endpoint_id, created_at, envelope, size)
                   VALUES (?, ?, ?, ?, ?)""",
                (seq, endpoint_id, format_time(now), envelope, len(envelope)),
            )
            db.execute(
                "UPDATE report_outbox_state SET next_seq = ?, last_report_at = ? WHERE id = 1",
                (seq + 1, format_time(now)),
            )
            self._enforce_bound(db)
        _maybe_crash("report-queued")
        return int(seq)

    def peek_seq(self) -> int:
        """The ``seq`` the next report will get (nothing is reserved)."""
        return int(self._state("next_seq"))

    def section(self) -> dict[str, Any]:
        """The ``outbox`` section a report made now would carry."""
        with self.store.transaction() as db:
            return self._section(db)

    def delivered(self, seq: int, now: datetime) -> None:
        """The collector stored ``seq``: remove it, and end any backoff."""
        _maybe_crash("report-delivered")
        with self.store.transaction() as db:
            db.execute("DELETE FROM report_outbox WHERE seq = ?", (seq,))
            db.execute(
                """UPDATE report_outbox_state SET failures = 0, next_attempt_at = NULL,
                       last_delivery_at = ?, last_delivered_seq = ? WHERE id = 1""",
                (format_time(now), seq),
            )

    def drop(self, seq: int, reason: DropReason, error: str, now: datetime) -> None:
        """The collector refused ``seq`` for good: remove it and count the loss."""
        with self.store.transaction() as db:
            removed = db.execute("DELETE FROM report_outbox WHERE seq = ?", (seq,)).rowcount
            if removed:
                count_drops(db, reason, removed)
            self._note_error(db, error, now)

    def failed(self, seq: int | None, error: str, delay_s: float, now: datetime) -> None:
        """A send failed and will be retried after ``delay_s``; the failure is counted."""
        retry_at = now + timedelta(seconds=delay_s)
        with self.store.transaction() as db:
            if seq is not None:
                db.execute("UPDATE report_outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
            db.execute(
                """UPDATE report_outbox_state SET failures = failures + 1, next_attempt_at = ?
                   WHERE id = 1""",
                (format_time(retry_at),),
            )
            self._note_error(db, error, now)

    # -- reading -----------------------------------------------------------------------

    def pending(self, endpoint_id: str) -> Iterator[QueuedReport]:
        """Queued reports of ``endpoint_id`` in ``seq`` order, read one at a time."""
        after = 0
        while True:
            rows = self.store.query(
                """SELECT seq, endpoint_id, created_at, envelope, attempts FROM report_outbox
                   WHERE endpoint_id = ? AND seq > ? ORDER BY seq LIMIT 1""",
                (endpoint_id, after),
            )
            if not rows:
                return
            seq, owner, created_at, envelope, attempts = rows[0]
            after = seq
            yield QueuedReport(seq, owner, parse_time(created_at), bytes(envelope), attempts)

    def failures(self) -> int:
        """Consecutive failed attempts since the last delivery."""
        return int(self._state("failures"))

    def next_attempt_at(self) -> datetime | None:
        """When the backoff allows the next attempt, or ``None`` for now."""
        value = self._state("next_attempt_at")
        return parse_time(value) if value else None

    def last_report_at(self) -> datetime | None:
        """When the newest report was made (queued), whether or not it was delivered."""
        value = self._state("last_report_at")
        return parse_time(value) if value else None

    def queued(self) -> int:
        (count,) = self.store.query("SELECT COUNT(*) FROM report_outbox")[0]
        return int(count)

    def status(self) -> OutboxStatus:
        names = ("next_seq", "last_report_at", "failures", "next_attempt_at",
                 "last_delivery_at", "last_delivered_seq", "last_error", "last_error_at")  # fmt: skip
        (row,) = self.store.query(
            f"SELECT {', '.join(names)} FROM report_outbox_state WHERE id = 1"  # noqa: S608
        )
        state = dict(zip(names, row, strict=True))
        count, size = self.store.query(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM report_outbox"
        )[0]
        oldest = self.store.query("SELECT seq, created_at FROM report_outbox ORDER BY seq LIMIT 1")
        return OutboxStatus(
            queued=int(count),
            queued_bytes=int(size),
            oldest_seq=oldest[0][0] if oldest else None,
            oldest_created_at=oldest[0][1] if oldest else None,
            dropped=self._drops(),
            **state,
        )

    # -- internals ---------------------------------------------------------------------

    def _state(self, column: str) -> Any:
        (row,) = self.store.query(
            f"SELECT {column} FROM report_outbox_state WHERE id = 1"  # noqa: S608 - our names
        )
        return row[0]

    def _drops(self) -> dict[str, int]:
        return {r: int(n) for r, n in self.store.query("SELECT reason, count FROM report_drops")}

    def _section(self, db: Any) -> dict[str, Any]:
        drops = {r: int(n) for r, n in db.execute("SELECT reason, count FROM report_drops")}
        (queued,) = db.execute("SELECT COUNT(*) FROM report_outbox").fetchone()
        return {
            "dropped": sum(drops.values()),
            "dropped_by_reason": dict(sorted(drops.items())),
            "queued": int(queued),
        }

    def _enforce_bound(self, db: Any, room_for: int = 0) -> None:
        """Drop the oldest reports until ``room_for`` more fit the count (and all fit the bytes)."""
        while True:
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM report_outbox"
            ).fetchone()
            if count == 0 or (room_for == 0 and count == 1):
                return  # the newest report is always kept, whatever its size
            if count + room_for <= self.max_reports and size <= self.max_bytes:
                return
            db.execute("DELETE FROM report_outbox WHERE seq = (SELECT MIN(seq) FROM report_outbox)")
            count_drops(db, DropReason.OUTBOX_FULL, 1)

    @staticmethod
    def _note_error(db: Any, error: str, now: datetime) -> None:
        db.execute(
            "UPDATE report_outbox_state SET last_error = ?, last_error_at = ? WHERE id = 1",
            (error[:MAX_ERROR_CHARS], format_time(now)),
        )


def count_drops(db: Any, reason: DropReason, count: int) -> None:
    """Add ``count`` losses for ``reason``, inside the caller's transaction."""
    db.execute(
        """INSERT INTO report_drops (reason, count) VALUES (?, ?)
           ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count""",
        (reason.value, count),
    )


def _maybe_crash(point: str) -> None:
    """SIGKILL this process right here when ``PATCHD_FAULT_AFTER`` names ``point``."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
