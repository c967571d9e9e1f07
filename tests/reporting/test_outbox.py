"""The outbox and its sender against a real collector on 127.0.0.1, with a clock and jitter
the test controls: order, bound and losses, every answer of the contract, and backoff."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from patchd.reporting.backoff import UNAUTHORIZED_DELAY_S
from patchd.reporting.envelope import sign_report
from patchd.reporting.outbox import ReportOutbox
from patchd.reporting.payload import build_document, serialise
from patchd.reporting.sender import Flusher, FlushResult
from patchd.reporting.transport import CollectorClient
from tests.reporting.conftest import Clock, Enrolled
from tests.support.fakecollector import Fault


def bottom(high: float) -> float:
    return 0.0


class Harness:
    """An enrolled endpoint's outbox, a client to the fake collector, a movable clock."""

    def __init__(self, enrolled: Enrolled, *, max_reports: int = 100, max_bytes: int = 10**8,
                 timeout_s: float = 5.0) -> None:  # fmt: skip
        self.enrolled = enrolled
        self.collector = enrolled.collector
        self.endpoint_id = enrolled.enrolment.endpoint_id
        self.clock = Clock()
        self.outbox = ReportOutbox(enrolled.store, max_reports=max_reports, max_bytes=max_bytes)
        self.client = CollectorClient(self.collector.url, ca_file=None, timeout_s=timeout_s)
        self.draws: list[float] = []

    def draw(self, high: float) -> float:
        self.draws.append(high)
        return high / 2

    def queue(self, padding: int = 0) -> int:
        def make(seq: int, outbox: dict[str, Any]) -> bytes:
            document = build_document(
                endpoint_id=self.endpoint_id, seq=seq, created_at=self.clock(), hostname="web-1",
                sections={"outbox": outbox, "inventory": {"padding": "x" * padding}},
            )  # fmt: skip
            return sign_report(serialise(document), self.enrolled.key, self.endpoint_id).to_json()

        return self.outbox.enqueue(self.endpoint_id, make, self.clock())

    def flush(self) -> FlushResult:
        flusher = Flusher(
            self.outbox, self.client, self.endpoint_id, clock=self.clock, draw=self.draw
        )
        return flusher.flush()

    def stored(self) -> list[int]:
        return self.collector.only_endpoint().seqs

    def payload(self, seq: int) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.collector.only_endpoint().reports[seq])
        return document


@pytest.fixture
def harness(enrolled: Enrolled) -> Iterator[Harness]:
    h = Harness(enrolled)
    yield h
    h.client.close()


def test_delivered_in_order_and_removed(harness: Harness) -> None:
    assert [harness.queue() for _ in range(5)] == [1, 2, 3, 4, 5]
    result = harness.flush()
    assert (result.delivered, result.dropped, result.remaining, result.complete) == (5, 0, 0, True)
    assert harness.stored() == [1, 2, 3, 4, 5]
    assert [status for _, status in harness.collector.answers] == [202] * 5
    status = harness.outbox.status()
    assert (status.queued, status.next_seq, status.last_delivered_seq) == (0, 6, 5)


def test_seq_survives_reopening_and_is_never_reused(harness: Harness, tmp_path: Any) -> None:
    harness.queue()
    harness.flush()
    harness.enrolled.store.close()
    from patchd.state.store import StateStore

    with StateStore.open(harness.enrolled.state_dir) as reopened:
        harness.outbox = ReportOutbox(reopened, max_reports=100, max_bytes=10**8)
        assert harness.queue() == 2
        assert harness.flush().complete
    assert harness.stored() == [1, 2]


def test_bound_drops_the_oldest_and_the_loss_is_reported(enrolled: Enrolled) -> None:
    harness = Harness(enrolled, max_reports=3)
    for _ in range(5):
        harness.queue()
    status = harness.outbox.status()
    assert (status.queued, status.oldest_seq, status.dropped) == (3, 3, {"outbox-full": 2})
    harness.queue()  # this one carries the losses, its own making of room included
    harness.flush()
    assert harness.stored() == [4, 5, 6]
    assert harness.payload(6)["outbox"] == {
        "dropped": 3, "dropped_by_reason": {"outbox-full": 3}, "queued": 2,
    }  # fmt: skip
    assert harness.payload(4)["outbox"]["dropped"] == 1


def test_byte_bound(enrolled: Enrolled) -> None:
    harness = Harness(enrolled, max_bytes=3 * 40_000)
    for _ in range(4):
        harness.queue(padding=30_000)  # about 40 kB as an envelope
    status = harness.outbox.status()
    assert status.queued < 4
    assert status.queued_bytes <= 3 * 40_000
    assert status.dropped == {"outbox-full": 4 - status.queued}


def test_retry_after_sets_the_next_attempt(harness: Harness) -> None:
    harness.queue()
    harness.queue()
    harness.collector.script(Fault("status", 429, {"Retry-After": "120"}))
    result = harness.flush()
    assert (result.delivered, result.remaining, result.unauthorized) == (0, 2, False)
    assert result.retry_in_s == 120.0  # the draw (half of 10 s) is below the floor
    assert harness.outbox.next_attempt_at() == harness.clock.now.replace() + _seconds(120)
    assert "429 Too Many Requests" in (harness.outbox.status().last_error or "")
    harness.clock.advance(120)
    assert harness.flush().complete
    assert harness.stored() == [1, 2]
    assert harness.outbox.next_attempt_at() is None


def test_retry_after_as_an_http_date(harness: Harness) -> None:
    harness.queue()
    harness.collector.script(Fault("status", 503, {"Retry-After": "Fri, 04 Dec 2026 12:10:00 GMT"}))
    assert harness.flush().retry_in_s == 600.0


def test_backoff_grows_with_each_failure_and_resets(harness: Harness) -> None:
    harness.queue()
    harness.collector.script(*[Fault("status", 503)] * 4)
    delays = []
    for _ in range(4):
        result = harness.flush()
        assert result.remaining == 1
        assert result.retry_in_s is not None
        delays.append(result.retry_in_s)
        harness.clock.advance(result.retry_in_s)
    assert harness.draws == [10.0, 20.0, 40.0, 80.0]  # full jitter under doubling ceilings
    assert delays == [5.0, 10.0, 20.0, 40.0]
    assert harness.outbox.failures() == 4
    assert harness.flush().complete
    assert harness.outbox.failures() == 0
    harness.queue()
    harness.collector.script(Fault("status", 500))
    harness.flush()
    assert harness.draws[-1] == 10.0  # back to the first ceiling


def test_stops_at_the_first_retryable_failure_to_keep_order(harness: Harness) -> None:
    for _ in range(3):
        harness.queue()
    harness.collector.script(Fault("status", 202), Fault("status", 503))  # 1 "stored", 2 fails
    result = harness.flush()
    assert (result.delivered, result.remaining) == (1, 2)
    assert len(harness.collector.answers) == 2  # 3 was not sent past the failed 2
    assert harness.flush().complete
    assert harness.stored() == [2, 3]


@pytest.mark.parametrize(
    ("status", "reason"),
    [(409, "refused"), (413, "too-large"), (400, "rejected"), (422, "rejected")],
)
def test_final_refusals_are_dropped_and_counted(harness: Harness, status: int, reason: str) -> None:
    harness.queue()
    harness.queue()
    harness.collector.script(Fault("status", status))
    result = harness.flush()
    assert (result.delivered, result.dropped, result.remaining) == (1, 1, 0)
    assert not result.complete
    assert harness.stored() == [2]
    assert harness.outbox.status().dropped == {reason: 1}
    assert f"report 1 dropped ({reason})" in (harness.outbox.status().last_error or "")
    harness.queue()
    harness.flush()
    assert harness.payload(3)["outbox"]["dropped_by_reason"] == {reason: 1}


def test_unauthorized_keeps_reports_and_waits_long(harness: Harness) -> None:
    harness.queue()
    harness.collector.script(Fault("status", 401))
    result = harness.flush()
    assert result.unauthorized
    assert result.remaining == 1
    assert result.retry_in_s == UNAUTHORIZED_DELAY_S
    assert "enrol again" in (result.error or "")
    assert harness.flush().complete


@pytest.mark.parametrize("fault", ["drop", "hang"])
def test_no_answer_is_retried(enrolled: Enrolled, fault: str) -> None:
    harness = Harness(enrolled, timeout_s=1.0)
    harness.queue()
    harness.collector.script(Fault(fault))
    result = harness.flush()
    assert (result.delivered, result.remaining) == (0, 1)
    assert result.error is not None
    expected = "no answer within 1 s" if fault == "hang" else "closed"
    assert expected in result.error
    assert harness.flush().complete
    assert harness.stored() == [1]
    harness.client.close()


def test_outage_then_recovery_delivers_everything_in_order(harness: Harness) -> None:
    harness.queue()
    harness.collector.stop()
    for _ in range(3):
        result = harness.flush()
        assert result.remaining == harness.outbox.queued()
        assert result.error is not None
        assert "cannot connect" in result.error
        harness.queue()
    harness.collector.start()
    assert harness.flush().complete
    assert harness.stored() == [1, 2, 3, 4]
    assert harness.collector.flagged == []


def test_a_resent_report_is_a_duplicate_not_a_loss(harness: Harness) -> None:
    harness.queue()
    envelope = next(harness.outbox.pending(harness.endpoint_id)).envelope
    assert harness.flush().complete
    # As after a crash between the collector's answer and the removal: the same bytes again.
    assert harness.client.post("/v1/reports", envelope).status == 200
    tampered = json.loads(envelope)
    tampered["payload"] = base64.b64encode(base64.b64decode(tampered["payload"]) + b" ").decode()
    assert harness.client.post("/v1/reports", json.dumps(tampered).encode()).status == 401


def _seconds(n: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=n)


def test_a_body_over_the_collectors_limit_is_dropped_as_too_large(enrolled: Enrolled) -> None:
    enrolled.collector.max_body_bytes = 8192  # the collector stops reading beyond this
    harness = Harness(enrolled)
    harness.queue(padding=20_000)
    harness.queue()
    result = harness.flush()
    assert (result.delivered, result.dropped, result.remaining) == (1, 1, 0)
    assert harness.outbox.status().dropped == {"too-large": 1}
    assert harness.stored() == [2]
    assert harness.payload(2)["outbox"]["dropped"] == 0  # made before the drop; the next one says
    harness.client.close()
