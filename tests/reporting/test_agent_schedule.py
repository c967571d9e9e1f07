"""The agent's report timer: when it sends, and how long it sleeps — with a clock the test moves."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from patchd.config import AgentConfig
from patchd.reporting.agent import LOCK_BUSY_WAIT_S, _send, reporting_interval
from patchd.reporting.envelope import sign_report
from patchd.reporting.reporter import Reporter
from patchd.reporting.sender import OutboxLock
from patchd.session import Session
from patchd.target import Target
from tests.reporting.conftest import Clock, Enrolled
from tests.support.fakecollector import Fault

HOUR = timedelta(hours=1)


@pytest.fixture
def reporter(enrolled: Enrolled, tmp_path: Path) -> Iterator[tuple[Reporter, Clock]]:
    clock = Clock()
    (tmp_path / "root").mkdir()
    with Session(AgentConfig(), Target.at(tmp_path / "root"), enrolled.state_dir, clock) as session:
        yield Reporter(session), clock


def _queue(reporter: Reporter, enrolled: Enrolled, clock: Clock) -> None:
    endpoint_id = enrolled.enrolment.endpoint_id

    def make(seq: int, section: dict[str, Any]) -> bytes:
        payload = b'{"endpoint_id":"%s","seq":%d}' % (endpoint_id.encode(), seq)
        return sign_report(payload, enrolled.key, endpoint_id).to_json()

    reporter.outbox.enqueue(endpoint_id, make, clock())


def test_without_a_policy_the_interval_is_an_hour(reporter: tuple[Reporter, Clock]) -> None:
    assert reporting_interval(reporter[0].session) == HOUR


def test_nothing_queued_and_never_reported_sleeps_until_told(
    reporter: tuple[Reporter, Clock],
) -> None:
    assert _send(reporter[0], lambda: False, HOUR) == math.inf


def test_backoff_and_interval_set_the_timer(
    reporter: tuple[Reporter, Clock], enrolled: Enrolled
) -> None:
    rep, clock = reporter
    _queue(rep, enrolled, clock)
    enrolled.collector.script(Fault("status", 429, {"Retry-After": "300"}))
    assert _send(rep, lambda: False, HOUR) == 300.0  # Retry-After, sooner than the interval
    clock.advance(100)
    assert _send(rep, lambda: False, HOUR) == 200.0  # still backing off: nothing sent
    assert len(enrolled.collector.answers) == 1
    clock.advance(200)
    assert _send(rep, lambda: False, HOUR) == 3300.0  # delivered: the next report is due
    assert enrolled.collector.only_endpoint().seqs == [1]
    clock.advance(4000)
    assert _send(rep, lambda: False, HOUR) == 1.0  # overdue: run again at once (and make one)


def test_a_stop_leaves_reports_queued(reporter: tuple[Reporter, Clock], enrolled: Enrolled) -> None:
    rep, clock = reporter
    _queue(rep, enrolled, clock)
    _queue(rep, enrolled, clock)
    assert _send(rep, lambda: True, HOUR) == 1.0
    assert rep.outbox.queued() == 2
    assert enrolled.collector.answers == []


def test_another_sender_holding_the_lock_defers_the_send(
    reporter: tuple[Reporter, Clock], enrolled: Enrolled
) -> None:
    rep, clock = reporter
    _queue(rep, enrolled, clock)
    with OutboxLock(enrolled.state_dir) as lock:
        assert lock.acquire()
        assert _send(rep, lambda: False, HOUR) == LOCK_BUSY_WAIT_S
    assert enrolled.collector.answers == []
    assert rep.outbox.queued() == 1
    assert _send(rep, lambda: False, HOUR) == 3600.0
    assert enrolled.collector.only_endpoint().seqs == [1]
