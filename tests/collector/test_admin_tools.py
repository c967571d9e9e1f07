"""The collector's admin tools and service behaviour: policies served to agents, exports an
auditor verifies offline, overload, TLS, several workers, and collectors sharing PostgreSQL."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from patchd.policy.fetch import fetch_policy
from patchd.signing.dsse import POLICY_PAYLOAD_TYPE
from tests.cli.test_policy_cli import Admins, policy_document
from tests.cli.test_policy_cli import admins as admins  # noqa: PLC0414 - the fixture, re-exported
from tests.collector.conftest import new_database
from tests.support.collector import Collector, SimEndpoint, patchd_cli, running_collector, sections


def _enrolled(collector: Collector, hostname: str) -> SimEndpoint:
    made = patchd_cli("collector", "token", "create", "--db", collector.db)
    assert made.returncode == 0, made.stderr
    endpoint = SimEndpoint(hostname)
    assert endpoint.enrol(collector.url, made.stdout.strip()).status_code == 201
    return endpoint


# -- policies ---------------------------------------------------------------------------------


def test_a_published_policy_is_served_to_agents_and_verifies_against_the_trust_root(
    collector: Collector, admins: Admins
) -> None:
    path = admins.write(policy_document(version=7))
    published = patchd_cli(
        "collector",
        "policy",
        "publish",
        "--db",
        collector.db,
        str(path),
        "--trust",
        str(admins.root),
    )
    assert published.returncode == 0, published.stderr
    envelope = fetch_policy(f"{collector.url}/v1/policy")  # the agent's own fetch code
    assert envelope.payload_type == POLICY_PAYLOAD_TYPE
    assert envelope.payload == path.read_bytes()
    from patchd.cli.commands.policy import _root_file

    signers = _root_file(admins.root).verify_policy(envelope.payload, envelope.signatures)
    assert len(signers) == 2
    older = patchd_cli(
        "collector",
        "policy",
        "publish",
        "--db",
        collector.db,
        str(admins.write(policy_document(version=6), name="old.yaml")),
    )
    assert older.returncode == 2
    assert "not newer than version 7" in older.stderr
    assert fetch_policy(f"{collector.url}/v1/policy").payload == path.read_bytes()


def test_a_policy_short_of_its_signatures_is_not_published(
    collector: Collector, admins: Admins
) -> None:
    before = requests.get(f"{collector.url}/v1/policy", timeout=30)
    path = admins.write(policy_document(version=99), name="one.yaml", signers=("alice",))
    result = patchd_cli(
        "collector",
        "policy",
        "publish",
        "--db",
        collector.db,
        str(path),
        "--trust",
        str(admins.root),
    )
    assert result.returncode == 78  # a policy problem: nothing changes
    assert "1 of 2 required" in result.stderr
    after = requests.get(f"{collector.url}/v1/policy", timeout=30)
    assert (after.status_code, after.content) == (before.status_code, before.content)


# -- exports --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(collector: Collector, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """JSON and CSV exports of a fleet that includes a hostile hostname."""
    for hostname, facts in [("=HYPERLINK(\"http://evil\")", {"overdue": 1}), ("good.example", {}),
                            ("+cmd|' /C calc'!A0", {"pending": 4})]:  # fmt: skip
        endpoint = _enrolled(collector, hostname)
        assert endpoint.report(collector.url, **sections(**facts)).status_code == 202  # type: ignore[arg-type]
    out = tmp_path_factory.mktemp("exports")
    files = {}
    for fmt in ("json", "csv", "html"):
        target = out / f"fleet.{fmt}"
        result = patchd_cli(
            "collector", "report", "--db", collector.db, "--format", fmt, "--out", str(target)
        )
        assert result.returncode == 0, result.stderr
        files[fmt] = target
    return files


def test_exports_verify_offline_against_the_signed_reports(exported: dict[str, Path]) -> None:
    for fmt in ("json", "csv"):
        result = patchd_cli("collector", "verify-export", str(exported[fmt]))
        assert result.returncode == 0, result.stderr
        assert "match the endpoints' signed reports" in result.stdout


def test_csv_cells_cannot_run_as_formulas(exported: dict[str, Path]) -> None:
    rows = list(csv.DictReader(io.StringIO(exported["csv"].read_text())))
    hostnames = {r["hostname"] for r in rows}
    assert '\'=HYPERLINK("http://evil")' in hostnames
    assert "'+cmd|' /C calc'!A0" in hostnames
    assert not any(v.startswith(("=", "+", "-", "@")) for r in rows for v in r.values())


def test_the_html_report_escapes_endpoint_text(exported: dict[str, Path]) -> None:
    html = exported["html"].read_text()
    assert "compliance report" in html
    assert "=HYPERLINK(&#34;http://evil&#34;)" in html


@pytest.mark.parametrize(
    ("column", "value"),
    [("overdue", 0), ("hostname", "someone-else"), ("status", "compliant"), ("pending", 99)],
)
def test_a_doctored_export_row_fails_verification(
    exported: dict[str, Path], tmp_path: Path, column: str, value: Any
) -> None:
    document = json.loads(exported["json"].read_text())
    row = next(r for r in document["rows"] if r["hostname"].startswith("=HYPERLINK"))
    assert row[column] != value
    row[column] = value
    doctored = tmp_path / "doctored.json"
    doctored.write_text(json.dumps(document))
    result = patchd_cli("collector", "verify-export", str(doctored))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "row" in result.stderr


def test_a_doctored_csv_fails_verification(exported: dict[str, Path], tmp_path: Path) -> None:
    doctored = tmp_path / "doctored.csv"
    doctored.write_text(exported["csv"].read_text().replace(",4,", ",0,", 1))
    (tmp_path / "doctored.csv.evidence.json").write_bytes(
        Path(str(exported["csv"]) + ".evidence.json").read_bytes()
    )
    result = patchd_cli("collector", "verify-export", str(doctored))
    assert result.returncode == 1
    assert "pending" in result.stderr


def test_forged_evidence_fails_verification(exported: dict[str, Path], tmp_path: Path) -> None:
    document = json.loads(exported["json"].read_text())
    endpoint_id, encoded = next(iter(document["evidence"]["reports"].items()))
    envelope = json.loads(base64.b64decode(encoded))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["compliance"] = {"overdue": 0, "pending": 0}
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    document["evidence"]["reports"][endpoint_id] = base64.b64encode(
        json.dumps(envelope).encode()
    ).decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    result = patchd_cli("collector", "verify-export", str(forged))
    assert result.returncode == 1
    assert "does not verify" in result.stderr


def test_the_api_export_matches_the_cli_export(
    collector: Collector, exported: dict[str, Path]
) -> None:
    answer = collector.get("/v1/export?format=csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    api_rows = list(csv.DictReader(io.StringIO(answer.text)))
    cli_rows = list(csv.DictReader(io.StringIO(exported["csv"].read_text())))
    assert {r["endpoint_id"] for r in api_rows} >= {r["endpoint_id"] for r in cli_rows}
    assert collector.get("/v1/export?format=xml").status_code == 400


# -- service behaviour ------------------------------------------------------------------------------


def test_an_overloaded_collector_answers_429_with_retry_after(tmp_path: Path) -> None:
    import uvicorn

    from patchd.collector.app import Settings, create_app
    from tests.support.collector import free_port, wait_until_up

    db = str(tmp_path / "busy.db")
    settings = Settings(
        db=db, admin_token="t" * 32, max_queue=0
    )  # every report finds the queue full
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, None)
        token = patchd_cli("collector", "token", "create", "--db", db).stdout.strip()
        endpoint = SimEndpoint("busy.example")
        assert endpoint.enrol(url, token).status_code == 201
        answer = endpoint.report(url)
        assert answer.status_code == 429
        assert answer.headers["Retry-After"].isdigit()
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_bad_service_options_are_refused_in_one_line(tmp_path: Path) -> None:
    token = tmp_path / "admin.token"
    token.write_text("short\n")
    token.chmod(0o600)
    cases = [
        (["--admin-token-file", str(token)], "at least 16 characters", 78),
        (["--admin-token-file", str(tmp_path / "missing")], "no such admin token", 78),
        (["--admin-token-file", str(token), "--listen", "nowhere"], "HOST:PORT", 2),
    ]
    for args, fragment, status in cases:
        result = patchd_cli("collector", "serve", "--db", str(tmp_path / "c.db"), *args)
        assert result.returncode == status, result.stderr
        assert fragment in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    loose = tmp_path / "loose.token"
    loose.write_text("x" * 40)
    loose.chmod(0o644)
    result = patchd_cli(
        "collector", "serve", "--db", str(tmp_path / "c.db"), "--admin-token-file", str(loose)
    )
    assert result.returncode == 78
    assert "readable by other users" in result.stderr


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("tls")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return cert, key


def test_the_collector_serves_https(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    with running_collector(tmp_path, str(tmp_path / "tls.db"), extra=("--tls-cert", str(cert), "--tls-key", str(key)),
                           scheme="https", ca=cert) as collector:  # fmt: skip
        answer = requests.get(f"{collector.url}/healthz", verify=str(cert), timeout=30)
        assert answer.json()["status"] == "ok"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{collector.url}/healthz", timeout=30)  # not trusted without the CA


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return new_database(request.param, request, tmp_path)


def test_two_workers_and_two_collectors_share_one_database(shared_db: str, tmp_path: Path) -> None:
    with running_collector(tmp_path / "a", shared_db, workers=2) as first, \
         running_collector(tmp_path / "b", shared_db) as second:  # fmt: skip
        endpoint = _enrolled(first, "shared.example")
        envelopes = [endpoint.envelope(endpoint.payload(seq=seq)) for seq in range(1, 41)]
        answers: list[int] = []
        for seq, envelope in enumerate(envelopes, start=1):
            target = first if seq % 2 else second
            answers.append(endpoint.send(target.url, envelope).status_code)
        assert answers == [202] * 40
        # The same report raced to both collectors: stored once, the other answer a duplicate.
        racing = endpoint.envelope(endpoint.payload(seq=41))
        results: list[int] = []
        threads = [threading.Thread(target=lambda c=c: results.append(endpoint.send(c.url, racing).status_code))
                   for c in (first, second, first, second)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 200, 200, 202]
        stored = second.get(f"/v1/endpoints/{endpoint.endpoint_id}").json()
        assert stored["last_seq"] == 41
        assert stored["flagged"] is False
