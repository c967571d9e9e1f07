"""``patchd enroll`` and ``patchd report`` for real: the real command on an isolated apt root,
a real collector on 127.0.0.1, crashes by SIGKILL at the worst moments, and the agent."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patchd.reporting.envelope import verify_report
from patchd.signing.keys import PublicKey
from tests.conftest import CLI_TIMEOUT_S, CliResult, Patchd
from tests.support.fakecollector import FakeCollector, Fault

HEADER = {"schema_version", "endpoint_id", "seq", "created_at", "hostname"}
SECTIONS = {"inventory", "updates", "runs", "policy", "reboot", "journal", "compliance", "outbox"}


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    with FakeCollector() as running:
        yield running


def enrol(patchd: Patchd, collector: FakeCollector) -> str:
    # --token=...: a token may start with "-" (token_urlsafe), which argparse would take for an option
    result = patchd("enroll", "--collector", collector.url, f"--token={collector.add_token()}")
    assert result.returncode == 0, result.stderr
    endpoint_id = collector.only_endpoint().endpoint_id
    assert result.stdout == f"Enrolled with {collector.url} as endpoint {endpoint_id}\n"
    return endpoint_id


def report_status(patchd: Patchd) -> dict[str, Any]:
    result = patchd("report", "status", "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = result.json()
    return document


def error_line(result: CliResult) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("patchd: error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


# -- enrolment ------------------------------------------------------------------------------


def test_enroll(patchd: Patchd, collector: FakeCollector) -> None:
    endpoint_id = enrol(patchd, collector)
    endpoint = collector.only_endpoint()
    key_file = patchd.state_dir / "keys" / "endpoint.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    status = report_status(patchd)
    assert status["enrolment"]["endpoint_id"] == endpoint_id
    assert status["enrolment"]["collector"] == collector.url
    assert base64.b64decode(status["enrolment"]["public_key"]) == endpoint.public_key
    assert status["endpoint_key"] == str(key_file)
    assert (status["queued"], status["next_seq"]) == (0, 1)


def test_enroll_with_a_bad_token(patchd: Patchd, collector: FakeCollector) -> None:
    result = patchd("enroll", "--collector", collector.url, "--token", "not-a-token")
    assert result.returncode == 77
    line = error_line(result)
    assert "refused the enrolment token (401 Unauthorized)" in line
    assert "patchd collector token create" in line
    assert "not-a-token" not in result.stderr
    assert collector.endpoints == {}
    assert report_status(patchd)["enrolment"] is None


def test_enroll_reads_the_token_from_a_file_or_standard_input(
    patchd: Patchd, collector: FakeCollector, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(collector.add_token() + "\n")
    result = patchd("enroll", "--collector", collector.url, "--token-file", str(token_file))
    assert result.returncode == 0, result.stderr
    first = collector.only_endpoint().endpoint_id
    assert report_status(patchd)["enrolment"]["endpoint_id"] == first

    collector.endpoints.clear()  # the same key enrols again, with a token from stdin
    token = collector.add_token()
    result = patchd("enroll", "--collector", collector.url, "--token-file", "-", stdin=token + "\n")
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr


def test_enroll_with_an_unreadable_token_file(
    patchd: Patchd, collector: FakeCollector, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    result = patchd("enroll", "--collector", collector.url, "--token-file", str(missing))
    assert result.returncode == 2  # a usage error, like argparse's own
    line = error_line(result)
    assert f"--token-file {missing}: cannot read it: No such file or directory" in line
    assert collector.endpoints == {}
    assert report_status(patchd)["enrolment"] is None
    both = patchd("enroll", "--collector", collector.url, "--token", "t", "--token-file", "-")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


def test_enroll_twice_with_the_same_key_is_a_conflict(
    patchd: Patchd, collector: FakeCollector
) -> None:
    endpoint_id = enrol(patchd, collector)
    result = patchd("enroll", "--collector", collector.url, f"--token={collector.add_token()}")
    assert result.returncode == 1
    assert "already knows this endpoint with another key (409 Conflict)" in error_line(result)
    assert report_status(patchd)["enrolment"]["endpoint_id"] == endpoint_id


def test_enroll_with_the_collector_down(patchd: Patchd, collector: FakeCollector) -> None:
    token = collector.add_token()
    collector.stop()
    result = patchd("enroll", "--collector", collector.url, f"--token={token}")
    assert result.returncode == 75
    assert "cannot connect" in error_line(result)
    assert report_status(patchd)["enrolment"] is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param("http://collector.example", "must use https", id="plain-http-off-host"),
        pytest.param("https://user:pw@collector.example", "credentials", id="credentials"),
        pytest.param("https://collector.example/?token=x", "query string", id="query"),
        pytest.param("ftp://collector.example", "https:// URL", id="scheme"),
    ],
)
def test_enroll_refuses_bad_urls(patchd: Patchd, url: str, problem: str) -> None:
    result = patchd("enroll", "--collector", url, "--token", "t")
    assert result.returncode == 78
    assert problem in error_line(result)
    assert "pw" not in result.stderr
    assert report_status(patchd)["enrolment"] is None


def test_enroll_with_a_missing_ca_file(
    patchd: Patchd, collector: FakeCollector, tmp_path: Path
) -> None:
    patchd.config.write_text(f"reporting:\n  ca_file: {tmp_path / 'nope.pem'}\n")
    result = patchd("enroll", "--collector", collector.url, f"--token={collector.add_token()}")
    assert result.returncode == 78
    assert "reporting.ca_file" in error_line(result)


# -- reports ------------------------------------------------------------------------------


def test_show_and_send(patchd: Patchd, collector: FakeCollector) -> None:
    endpoint_id = enrol(patchd, collector)
    shown = patchd("report", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    preview = shown.json()
    assert set(preview) >= HEADER | SECTIONS
    assert (preview["endpoint_id"], preview["seq"], preview["schema_version"]) == (
        endpoint_id,
        1,
        1,
    )
    assert preview["truncated"] is False
    updates = preview["updates"]["items"]
    assert updates, "the catalogue offers updates"
    for item in updates:
        assert item["decision"] == "blocked"
        assert item["reason"] == "no policy is active: nothing is installed automatically"
        assert {"backend", "name", "available_version", "classification", "severity", "cves",
                "not_before"} <= set(item)  # fmt: skip
    assert preview["compliance"]["pending"] == len(updates)
    assert preview["policy"]["state"] == "none"
    assert preview["inventory"]["package_count"] > 0
    assert "packages" not in preview["inventory"]
    assert report_status(patchd)["next_seq"] == 1  # show reserves nothing

    sent = patchd("report", "send", "--json")
    assert sent.returncode == 0, sent.stderr
    assert sent.json() == {"schema_version": 1, "queued_seq": 1, "delivered": 1, "dropped": 0,
                           "remaining": 0, "error": None, "retry_in_s": None}  # fmt: skip
    endpoint = collector.only_endpoint()
    payload = json.loads(endpoint.reports[1])
    assert set(payload) == set(preview)
    assert payload["updates"] == preview["updates"]
    status = report_status(patchd)
    assert (status["queued"], status["last_delivery"]["seq"], status["next_seq"]) == (0, 1, 2)

    human = patchd("report", "show")
    assert human.returncode == 0
    assert f"Report 2 of endpoint {endpoint_id}" in human.stdout
    assert f"{len(updates)} pending" in human.stdout


def test_sent_reports_verify_with_the_enrolled_key(
    patchd: Patchd, collector: FakeCollector
) -> None:
    enrol(patchd, collector)
    envelopes: list[bytes] = []
    original = collector.report

    def keep(body: bytes) -> tuple[int, int | None]:
        envelopes.append(body)
        return original(body)

    collector.report = keep  # type: ignore[method-assign]
    assert patchd("report", "send").returncode == 0
    endpoint = collector.only_endpoint()
    payload = verify_report(envelopes[0], PublicKey(endpoint.public_key), endpoint.endpoint_id)
    assert payload == endpoint.reports[1]


def test_send_without_enrolment(patchd: Patchd) -> None:
    result = patchd("report", "send")
    assert result.returncode == 78
    assert "not enrolled" in error_line(result)
    assert report_status(patchd)["next_seq"] == 1


def test_send_during_an_outage_then_after_it(patchd: Patchd, collector: FakeCollector) -> None:
    enrol(patchd, collector)
    collector.stop()
    down = patchd("report", "send")
    assert down.returncode == 75
    assert "cannot connect" in error_line(down)
    status = report_status(patchd)
    assert status["queued"] == 1
    assert "cannot connect" in status["last_error"]["message"]
    assert status["next_attempt_at"] is not None
    collector.start()
    up = patchd("report", "send")
    assert up.returncode == 0, up.stderr
    assert collector.only_endpoint().seqs == [1, 2]
    assert report_status(patchd)["queued"] == 0


@pytest.mark.parametrize(("status", "code"), [(401, 77), (409, 1), (503, 75), (413, 1)])
def test_send_exit_status_follows_the_answer(
    patchd: Patchd, collector: FakeCollector, status: int, code: int
) -> None:
    enrol(patchd, collector)
    collector.script(Fault("status", status))
    result = patchd("report", "send")
    assert result.returncode == code, result.stderr
    assert str(status) in error_line(result)


@pytest.mark.parametrize("point", ["report-queued", "report-delivered"])
def test_sigkill_loses_nothing_and_reuses_no_seq(
    patchd: Patchd, collector: FakeCollector, point: str
) -> None:
    enrol(patchd, collector)
    assert patchd("report", "send").returncode == 0
    killed = patchd("report", "send", env={"PATCHD_FAULT_AFTER": point})
    assert killed.returncode == -signal.SIGKILL
    endpoint = collector.only_endpoint()
    assert endpoint.seqs == ([1] if point == "report-queued" else [1, 2])
    assert report_status(patchd)["queued"] == 1  # report 2 is on disk either way
    again = patchd("report", "send")
    assert again.returncode == 0, again.stderr
    assert endpoint.seqs == [1, 2, 3]
    answers = [status for _, status in collector.answers]
    expected = [202, 202, 202] if point == "report-queued" else [202, 202, 200, 202]
    assert answers == expected  # a resent report is a duplicate (200), never a refusal
    assert collector.flagged == []


# -- the agent ------------------------------------------------------------------------------


def _start_agent(patchd: Patchd) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PATCHD_CONFIG", "NOTIFY_SOCKET")}
    return subprocess.Popen(
        [sys.executable, "-m", "patchd", "--config", str(patchd.config), "--root", str(patchd.root),
         "--state-dir", str(patchd.state_dir), "agent"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own group: SIGKILL reaches its workers too
    )  # fmt: skip


def _wait_for_line(proc: subprocess.Popen[str], fragment: str) -> list[str]:
    """Read the agent's standard error until a line has ``fragment`` (or it exits)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line.rstrip("\n"))
        if fragment in line:
            return seen
    raise AssertionError(f"the agent ended without {fragment!r}:\n" + "\n".join(seen))


def test_agent_reports_survive_an_outage_and_sigkill(
    patchd: Patchd, collector: FakeCollector
) -> None:
    patchd.config.write_text("agent:\n  refresh: false\napt:\n  lock_timeout: 5\n")
    enrol(patchd, collector)
    collector.stop()
    agent = _start_agent(patchd)
    try:
        _wait_for_line(agent, "report 1 queued")
        _wait_for_line(agent, "retrying in")  # the send failed; the report is on disk
    finally:
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(timeout=CLI_TIMEOUT_S)
        assert agent.stderr is not None
        agent.stderr.close()
    status = report_status(patchd)
    assert status["queued"] == 1
    assert status["oldest"]["seq"] == 1

    collector.start()
    agent = _start_agent(patchd)
    try:
        _wait_for_line(agent, "2 delivered")
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=CLI_TIMEOUT_S) == 0
        assert agent.stderr is not None
        agent.stderr.close()
    assert collector.only_endpoint().seqs == [1, 2]
    assert collector.flagged == []
    assert report_status(patchd)["queued"] == 0
