"""A real agent and a real collector: enrol, report, patch, report again, survive an outage,
and an export that verifies offline — on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collector.conftest import new_database
from tests.conftest import Patchd
from tests.support.aptroot import AptRoot
from tests.support.collector import Collector, free_port, patchd_cli, running_collector


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return new_database(request.param, request, tmp_path)


def _token(db: str) -> str:
    made = patchd_cli("collector", "token", "create", "--db", db)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def _endpoint(collector: Collector) -> dict[str, object]:
    (listed,) = collector.get("/v1/endpoints").json()["endpoints"]
    detail = collector.get(f"/v1/endpoints/{listed['id']}")
    assert detail.status_code == 200
    document: dict[str, object] = detail.json()
    return document


def test_an_agent_enrols_reports_patches_and_survives_an_outage(
    patchd: Patchd, apt_root: AptRoot, database: str, tmp_path: Path
) -> None:
    port = free_port()
    with running_collector(tmp_path / "c1", database, port=port) as collector:
        enrolled = patchd("enroll", "--collector", collector.url, "--token", _token(database))
        assert enrolled.returncode == 0, enrolled.stderr
        sent = patchd("report", "send")
        assert sent.returncode == 0, sent.stderr
        first = _endpoint(collector)
        assert (first["hostname"], first["last_seq"]) == ("testroot", 1)
        pending = {u["name"] for u in first["updates"] if u["pending"]}  # type: ignore[attr-defined]
        assert "hello" in pending

        applied = patchd("apply", "--yes", "--json", "hello")
        assert applied.returncode == 0, applied.stderr
        assert patchd("report", "send").returncode == 0
        second = _endpoint(collector)
        assert second["last_seq"] == 2
        runs = second["runs"]
        assert [(r["kind"], r["status"], r["done"]) for r in runs] == [("apply", "succeeded", 1)]  # type: ignore[attr-defined]
        hello = next(u for u in second["updates"] if u["name"] == "hello")  # type: ignore[attr-defined]
        assert hello["installed_at"] is not None
        assert hello["pending"] is False

    # The collector is down: the report waits in the outbox (exit 75), nothing is lost.
    down = patchd("report", "send")
    assert down.returncode == 75, down.stderr
    status = patchd("report", "status", "--json").json()
    assert status["queued"] >= 1

    with running_collector(tmp_path / "c2", database, port=port) as collector:
        assert patchd("report", "send").returncode == 0
        third = _endpoint(collector)
        # The report queued during the outage (3), then this send's own (4): none lost.
        assert [r["seq"] for r in third["reports"]] == [4, 3, 2, 1]  # type: ignore[attr-defined]
        assert third["flagged"] is False
        figures = collector.get("/v1/compliance").json()
        assert figures["endpoints"]["reporting"] == 1
        assert figures["time_to_patch"]["all"]["count"] == 1
        export = tmp_path / "fleet.json"
        made = patchd_cli(
            "collector", "report", "--db", database, "--format", "json", "--out", str(export)
        )
        assert made.returncode == 0, made.stderr
        verified = patchd_cli("collector", "verify-export", str(export))
        assert verified.returncode == 0, verified.stderr
