"""Delivering the outbox: in ``seq`` order, one connection, stopping at the first retryable failure.

Reports go strictly in order, because the collector refuses a ``seq`` at or below one it
stored: sending a later report past a failed one would turn a delay into a loss. What
each answer means (docs/reporting.md):

====================  =====================================================================
202, 200              stored (200: the same report, already stored) → removed
409                   the collector refuses this seq for good → dropped, counted, logged
413                   too large for this collector → dropped, counted, logged
401                   this endpoint's identity is not accepted → kept; back off an hour
429, 503, other 5xx   busy or failing → kept; back off, at least ``Retry-After``
other 4xx             refused as malformed → dropped, counted, logged
no answer             network, TLS, timeout → kept; back off
====================  =====================================================================

Only one process flushes a state directory's outbox at a time (an ``flock`` on
``STATE_DIR/outbox.lock``): two senders could otherwise overtake each other and make the
collector refuse the earlier report as a replay.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from types import TracebackType

from patchd.errors import TemporaryFailure
from patchd.reporting.backoff import Draw, parse_retry_after, retry_delay, uniform_draw
from patchd.reporting.outbox import DropReason, ReportOutbox
from patchd.reporting.transport import Answer, CollectorClient

log = logging.getLogger(__name__)

REPORTS_PATH = "/v1/reports"
LOCK_NAME = "outbox.lock"
MAX_REPORTS_PER_FLUSH = 10_000  # a flush ends; the rest waits for the next one


class Verdict(StrEnum):
    DELIVERED = "delivered"
    DROPPED = "dropped"
    RETRY = "retry"
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True)
class Judgement:
    """What one answer means for the report it answers."""

    verdict: Verdict
    reason: DropReason | None = None


def judge(status: int) -> Judgement:  # noqa: PLR0911 - one return per row of the table
    """The meaning of an HTTP status for the report it answers (the table above)."""
    if status in (HTTPStatus.OK, HTTPStatus.ACCEPTED, HTTPStatus.CREATED):
        return Judgement(Verdict.DELIVERED)
    if status == HTTPStatus.UNAUTHORIZED:
        return Judgement(Verdict.UNAUTHORIZED)
    if status == HTTPStatus.CONFLICT:
        return Judgement(Verdict.DROPPED, DropReason.REFUSED)
    if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        return Judgement(Verdict.DROPPED, DropReason.TOO_LARGE)
    if status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return Judgement(Verdict.RETRY)
    if HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR:
        return Judgement(Verdict.DROPPED, DropReason.REJECTED)
    return Judgement(Verdict.RETRY)  # 1xx, 3xx: not an answer patchd understands; later


@dataclass(frozen=True)
class FlushResult:
    """What a flush did, and what is left."""

    delivered: int
    dropped: int
    remaining: int
    unauthorized: bool
    error: str | None  # why the flush stopped early, else why the last report was dropped
    retry_in_s: float | None  # when the backoff allows the next attempt, if one is needed

    @property
    def complete(self) -> bool:
        """Everything queued was delivered (nothing dropped, nothing left)."""
        return self.remaining == 0 and self.dropped == 0 and not self.unauthorized


class OutboxLock:
    """The one-sender-at-a-time lock; :meth:`acquire` never waits."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True if this process now holds the lock; False if another one does."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutboxLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass
class _Tally:
    delivered: int = 0
    dropped: int = 0
    last_drop: str | None = None


class Flusher:
    """Sends one endpoint's queued reports through one client, recording every outcome."""

    def __init__(
        self,
        outbox: ReportOutbox,
        client: CollectorClient,
        endpoint_id: str,
        *,
        clock: Callable[[], datetime],
        draw: Draw = uniform_draw,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.endpoint_id = endpoint_id
        self.clock = clock
        self.draw = draw
        self.should_stop = should_stop

    def flush(self) -> FlushResult:
        """Send what is queued, in order, until done, stopped, or a failure to retry later."""
        tally = _Tally()
        for sent, report in enumerate(self.outbox.pending(self.endpoint_id)):
            if self.should_stop() or sent >= MAX_REPORTS_PER_FLUSH:
                break
            try:
                answer = self.client.post(REPORTS_PATH, report.envelope)
            except TemporaryFailure as e:
                return self._stopped(tally, report.seq, e.message, retry_after_s=None)
            judgement = judge(answer.status)
            if judgement.verdict is Verdict.DELIVERED:
                self.outbox.delivered(report.seq, self.clock())
                tally.delivered += 1
            elif judgement.verdict is Verdict.DROPPED:
                assert judgement.reason is not None
                tally.last_drop = self._drop(report.seq, judgement.reason, answer)
                tally.dropped += 1
            else:
                error = f"{self.client.shown}{REPORTS_PATH}: report {report.seq}: {answer.phrase}"
                retry_after = parse_retry_after(answer.headers.get("retry-after"), self.clock())
                unauthorized = judgement.verdict is Verdict.UNAUTHORIZED
                return self._stopped(
                    tally, report.seq, error, retry_after_s=retry_after, unauthorized=unauthorized
                )
        return FlushResult(
            tally.delivered, tally.dropped, self.outbox.queued(), False, tally.last_drop, None
        )

    def _drop(self, seq: int, reason: DropReason, answer: Answer) -> str:
        error = (
            f"{self.client.shown}{REPORTS_PATH}: report {seq} dropped ({reason}): {answer.phrase}"
        )
        log.warning("%s", error)
        self.outbox.drop(seq, reason, error, self.clock())
        return error

    def _stopped(
        self,
        tally: _Tally,
        seq: int,
        error: str,
        *,
        retry_after_s: float | None,
        unauthorized: bool = False,
    ) -> FlushResult:
        failures = self.outbox.failures() + 1
        delay = retry_delay(
            failures, draw=self.draw, retry_after_s=retry_after_s, unauthorized=unauthorized
        )
        if unauthorized:
            error += ": the collector does not accept this endpoint's identity; enrol again"
        log.warning("%s; retrying in %.0f s", error, delay)
        self.outbox.failed(seq, error, delay, self.clock())
        return FlushResult(
            tally.delivered, tally.dropped, self.outbox.queued(), unauthorized, error, delay
        )
