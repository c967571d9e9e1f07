"""Enrolment at the function level: what is recorded, and what a refusal leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchd.config import ReportingSettings
from patchd.errors import EnrolmentRefused, ExitCode, ReportingError, UsageError
from patchd.reporting.enrolment import check_token, endpoint_id_from, enroll, load_enrolment
from patchd.reporting.envelope import sign_report
from patchd.reporting.identity import endpoint_key_path, ensure_endpoint_key, public_key_text
from patchd.reporting.outbox import ReportOutbox
from patchd.state.store import StateStore
from tests.reporting.conftest import START, Enrolled
from tests.support.fakecollector import FakeCollector


def _enroll(enrolled_store: StateStore, collector: FakeCollector, state: Path, token: str) -> None:
    enroll(enrolled_store, ReportingSettings(timeout_s=5), collector_url=collector.url + "/",
           token=token, key=ensure_endpoint_key(state), hostname="web-1", now=START)  # fmt: skip


def test_records_what_the_collector_pinned(enrolled: Enrolled) -> None:
    enrolment = load_enrolment(enrolled.store)
    assert enrolment == enrolled.enrolment
    endpoint = enrolled.collector.only_endpoint()
    assert enrolment.endpoint_id == endpoint.endpoint_id
    assert enrolment.public_key == public_key_text(enrolled.key)
    assert endpoint.hostname == "web-1"


def test_a_refused_token_changes_nothing(
    store: StateStore, collector: FakeCollector, tmp_path: Path
) -> None:
    with pytest.raises(EnrolmentRefused) as error:
        _enroll(store, collector, tmp_path / "state", "Tok-9f3c")
    assert int(error.value.exit_code) == int(ExitCode.NOPERM) == 77
    assert "Tok-9f3c" not in str(error.value)
    assert load_enrolment(store) is None
    assert ReportOutbox(store, max_reports=10, max_bytes=10**6).status().next_seq == 1


def test_a_single_use_token_works_once(
    store: StateStore, collector: FakeCollector, tmp_path: Path
) -> None:
    token = collector.add_token()
    _enroll(store, collector, tmp_path / "state", token)
    first = load_enrolment(store)
    endpoint_key_path(tmp_path / "state").unlink()  # a new key would need a new token
    with pytest.raises(EnrolmentRefused):
        _enroll(store, collector, tmp_path / "state", token)
    assert load_enrolment(store) == first


def test_re_enrolment_drops_and_counts_reports_of_the_old_identity(enrolled: Enrolled) -> None:
    outbox = ReportOutbox(enrolled.store, max_reports=10, max_bytes=10**6)
    old_id = enrolled.enrolment.endpoint_id
    for _ in range(2):
        outbox.enqueue(
            old_id, lambda seq, _: sign_report(b"{}", enrolled.key, old_id).to_json(), START
        )
    endpoint_key_path(enrolled.state_dir).unlink()
    _enroll(enrolled.store, enrolled.collector, enrolled.state_dir, enrolled.collector.add_token())
    enrolment = load_enrolment(enrolled.store)
    assert enrolment is not None
    assert enrolment.endpoint_id != old_id
    status = outbox.status()
    assert (status.queued, status.dropped, status.next_seq) == (0, {"re-enrolled": 2}, 3)


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"endpoint_id": ""}', b'{"endpoint_id": 5}', b'{"endpoint_id": "a\\nb"}', b"[1]",
     b"not json", json.dumps({"endpoint_id": "x" * 300}).encode()],
    ids=["missing", "empty", "number", "control-char", "not-object", "not-json", "too-long"],
)  # fmt: skip
def test_a_malformed_answer_is_refused(body: bytes) -> None:
    with pytest.raises(ReportingError):
        endpoint_id_from(body, "http://127.0.0.1:1")


@pytest.mark.parametrize("token", ["", "a b\n", "é", "x" * 5000])
def test_unsendable_tokens_are_usage_errors(token: str) -> None:
    with pytest.raises(UsageError) as error:
        check_token(token)
    assert token not in str(error.value) or token == ""
