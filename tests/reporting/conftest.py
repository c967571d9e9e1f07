"""Fixtures for reporting: a state database, a fake collector, an enrolled endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from patchd.config import ReportingSettings
from patchd.reporting.enrolment import Enrolment, enroll
from patchd.reporting.identity import ensure_endpoint_key
from patchd.signing.keys import PrivateKey
from patchd.state.store import StateStore
from tests.support.fakecollector import FakeCollector

START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Enrolled:
    store: StateStore
    key: PrivateKey
    enrolment: Enrolment
    collector: FakeCollector
    state_dir: Path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state") as opened:
        yield opened


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    with FakeCollector() as running:
        yield running


@pytest.fixture
def enrolled(store: StateStore, collector: FakeCollector, tmp_path: Path) -> Enrolled:
    key = ensure_endpoint_key(tmp_path / "state")
    enrolment = enroll(
        store,
        ReportingSettings(timeout_s=5),
        collector_url=collector.url,
        token=collector.add_token(),
        key=key,
        hostname="web-1",
        now=START,
    )
    return Enrolled(store, key, enrolment, collector, tmp_path / "state")
