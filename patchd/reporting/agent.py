"""Reporting in the agent: a report after every cycle, and a ``report`` timer that sends them.

The service calls :func:`queue_after_cycle` at the end of each cycle's worker, and runs
:func:`report_task` in a worker of its own whenever its ``report`` timer fires (after
each cycle, at start, and when the task says so). The task makes a fresh report when
the policy's ``reporting.interval`` has passed since the last one, sends the outbox if
the backoff allows, and answers how many seconds until it should run again — the
backoff's next attempt or the next interval, whichever is sooner. A report is stored
before any send, so a stop or a crash at any moment loses nothing; the next task sends it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from patchd.errors import PatchdError
from patchd.policy.evaluate import Plan
from patchd.scan import ScanReport
from patchd.session import Session

if TYPE_CHECKING:
    from patchd.reporting.reporter import Reporter

log = logging.getLogger(__name__)

REPORT = "report"  # the agent's timer and event name
DEFAULT_INTERVAL = timedelta(hours=1)  # with no policy in force
MIN_WAIT_S = 1.0  # never spin, whatever the clock says
RETRY_AFTER_ERROR_S = 300.0  # a local problem (state, key): try again in five minutes
LOCK_BUSY_WAIT_S = 30.0  # someone is sending right now (`patchd report send`)


def reporting_interval(session: Session) -> timedelta:
    """The policy's ``reporting.interval``, or an hour without a policy."""
    active = session.policy_gate.active()
    return active.loaded.policy.reporting.interval if active else DEFAULT_INTERVAL


def ensure_identity(session: Session) -> None:
    """Make the endpoint key at the agent's start if there is none. Never raises."""
    from patchd.reporting.identity import ensure_endpoint_key

    try:
        ensure_endpoint_key(session.state_dir)
    except PatchdError as e:
        log.error("reporting: %s", e)


def queue_after_cycle(session: Session, scan_report: ScanReport, plan: Plan) -> None:
    """Queue a report of the cycle just done, if enrolled. Never raises: the cycle stays good."""
    from patchd.reporting.reporter import Reporter

    try:
        reporter = Reporter(session)
        if reporter.enrolment() is not None:
            reporter.queue(scan_report, plan)
    except PatchdError as e:
        log.error("report not queued: %s", e)


def report_task(session: Session, should_stop: Callable[[], bool]) -> float:
    """Make a report if one is due, send what the backoff allows; seconds until the next run.

    ``math.inf`` when not enrolled (the next cycle runs it again).
    """
    from patchd.reporting.identity import ensure_endpoint_key
    from patchd.reporting.reporter import Reporter, fresh_scan

    try:
        ensure_endpoint_key(session.state_dir)  # the identity exists from the first start
        reporter = Reporter(session)
        if reporter.enrolment() is None:
            return math.inf
        interval = reporting_interval(session)
        last = reporter.outbox.last_report_at()
        if last is None or session.clock() - last >= interval:
            reporter.queue(*fresh_scan(session))
        return _send(reporter, should_stop, interval)
    except PatchdError as e:
        log.error("reporting: %s", e)
        return RETRY_AFTER_ERROR_S


def _send(reporter: Reporter, should_stop: Callable[[], bool], interval: timedelta) -> float:
    from patchd.errors import TemporaryFailure

    outbox, now = reporter.outbox, reporter.session.clock()
    not_before = outbox.next_attempt_at()
    if outbox.queued() and (not_before is None or not_before <= now):
        try:
            result = reporter.flush(should_stop=should_stop)
        except TemporaryFailure as e:
            log.info("reports not sent now: %s", e)
            return LOCK_BUSY_WAIT_S
        if result.delivered or result.dropped:
            log.info(
                "reports: %d delivered, %d dropped, %d queued",
                result.delivered,
                result.dropped,
                result.remaining,
            )
    now = reporter.session.clock()
    waits = []
    last = outbox.last_report_at()
    if last is not None:
        waits.append((last + interval - now).total_seconds())
    if outbox.queued():
        retry_at = outbox.next_attempt_at()
        waits.append((retry_at - now).total_seconds() if retry_at else MIN_WAIT_S)
    return max(MIN_WAIT_S, min(waits)) if waits else math.inf
