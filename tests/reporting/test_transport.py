"""The transport: verified TLS (a private CA through reporting.ca_file), one reused connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patchd.config import ReportingSettings
from patchd.errors import ExitCode, TemporaryFailure
from patchd.reporting.enrolment import enroll, load_enrolment
from patchd.reporting.envelope import sign_report
from patchd.reporting.identity import ensure_endpoint_key
from patchd.reporting.outbox import ReportOutbox
from patchd.reporting.payload import build_document, serialise
from patchd.reporting.sender import Flusher
from patchd.reporting.transport import CollectorClient
from patchd.state.store import StateStore
from tests.policy.test_fetch import self_signed
from tests.reporting.conftest import START, Clock, Enrolled
from tests.support.fakecollector import FakeCollector


@pytest.fixture
def tls_collector(tmp_path: Path) -> Iterator[tuple[FakeCollector, Path]]:
    context, ca_file = self_signed(tmp_path)
    with FakeCollector(tls=context) as running:
        yield running, ca_file


def _enroll(store: StateStore, collector: FakeCollector, state: Path, ca_file: Path | None) -> None:
    enroll(
        store,
        ReportingSettings(ca_file=ca_file, timeout_s=5),
        collector_url=collector.url,
        token=collector.add_token(),
        key=ensure_endpoint_key(state),
        hostname="web-1",
        now=START,
    )


def test_an_untrusted_certificate_is_refused(
    tls_collector: tuple[FakeCollector, Path], store: StateStore, tmp_path: Path
) -> None:
    collector, _ = tls_collector
    with pytest.raises(TemporaryFailure) as error:
        _enroll(store, collector, tmp_path / "state", ca_file=None)
    assert "TLS certificate not trusted" in str(error.value)
    assert error.value.exit_code == ExitCode.TEMPORARY
    assert load_enrolment(store) is None
    assert collector.endpoints == {}


def test_a_private_ca_is_trusted_through_ca_file(
    tls_collector: tuple[FakeCollector, Path], store: StateStore, tmp_path: Path
) -> None:
    collector, ca_file = tls_collector
    _enroll(store, collector, tmp_path / "state", ca_file=ca_file)
    enrolment = load_enrolment(store)
    assert enrolment is not None
    assert enrolment.collector_url.startswith("https://127.0.0.1:")


def test_a_flush_reuses_one_connection(enrolled: Enrolled) -> None:
    endpoint_id = enrolled.enrolment.endpoint_id
    outbox = ReportOutbox(enrolled.store, max_reports=100, max_bytes=10**8)

    def make(seq: int, section: dict[str, Any]) -> bytes:
        document = build_document(
            endpoint_id=endpoint_id, seq=seq, created_at=START, hostname="h",
            sections={"outbox": section},
        )  # fmt: skip
        return sign_report(serialise(document), enrolled.key, endpoint_id).to_json()

    for _ in range(5):
        outbox.enqueue(endpoint_id, make, START)
    before = enrolled.collector.connections
    with CollectorClient(enrolled.collector.url, ca_file=None, timeout_s=5) as client:
        assert Flusher(outbox, client, endpoint_id, clock=Clock()).flush().complete
    assert enrolled.collector.connections - before == 1
    assert enrolled.collector.only_endpoint().seqs == [1, 2, 3, 4, 5]
