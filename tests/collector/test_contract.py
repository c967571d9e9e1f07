"""The collector's contract (issue 5), end to end over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from itertools import count
from typing import Any

import pytest
import requests

from tests.support.collector import Collector, SimEndpoint, patchd_cli, sections

_hosts = count()


def _endpoint(collector: Collector, token: str, **kwargs: object) -> SimEndpoint:
    endpoint = SimEndpoint(f"host-{next(_hosts)}.example", **kwargs)  # type: ignore[arg-type]
    answer = endpoint.enrol(collector.url, token)
    assert answer.status_code == 201, answer.text
    return endpoint


def _stored(collector: Collector, endpoint: SimEndpoint) -> dict[str, Any]:
    answer = collector.get(f"/v1/endpoints/{endpoint.endpoint_id}")
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


# -- enrolment -------------------------------------------------------------------------------


def test_enrolment_pins_the_key_and_returns_an_endpoint_id(
    collector: Collector, token: str
) -> None:
    endpoint = SimEndpoint("enrol-ok.example")
    answer = endpoint.enrol(collector.url, token)
    assert answer.status_code == 201
    assert answer.json()["endpoint_id"].startswith("ep_")
    stored = _stored(collector, endpoint)
    assert stored["public_key"] == endpoint.public_key
    assert stored["hostname"] == "enrol-ok.example"
    assert stored["status"] == "never-reported"


def test_a_single_use_token_enrols_once(collector: Collector) -> None:
    made = patchd_cli("collector", "token", "create", "--db", collector.db)
    assert made.returncode == 0, made.stderr
    once = made.stdout.strip()
    assert SimEndpoint("first.example").enrol(collector.url, once).status_code == 201
    again = SimEndpoint("second.example").enrol(collector.url, once)
    assert again.status_code == 401
    assert "used up" in again.json()["error"]
    listed = collector.get("/v1/endpoints").json()["endpoints"]
    assert "second.example" not in {e["hostname"] for e in listed}


def test_a_token_with_uses_enrols_that_many(collector: Collector) -> None:
    made = patchd_cli("collector", "token", "create", "--db", collector.db, "--uses", "3", "--json")
    secret = json.loads(made.stdout)["token"]
    answers = [
        SimEndpoint(f"mass-{i}.example").enrol(collector.url, secret).status_code for i in range(4)
    ]
    assert answers == [201, 201, 201, 401]


@pytest.mark.parametrize("token", ["", "pdt_not-a-token", "nonsense", None])
def test_a_bad_token_is_refused_and_nothing_is_enrolled(
    collector: Collector, token: object
) -> None:
    before = len(collector.get("/v1/endpoints").json()["endpoints"])
    answer = requests.post(f"{collector.url}/v1/enroll", timeout=30,
                           json={"token": token, "public_key": SimEndpoint("x").public_key, "hostname": "bad-token"})  # fmt: skip
    assert answer.status_code == 401
    assert len(collector.get("/v1/endpoints").json()["endpoints"]) == before


@pytest.mark.parametrize(
    "body",
    [
        {"public_key": "AAAA", "hostname": "h"},  # not 32 bytes
        {"public_key": "%%%", "hostname": "h"},  # not base64
        {"public_key": base64.b64encode(b"k" * 32).decode(), "hostname": ""},
    ],
)
def test_a_malformed_enrolment_is_refused(
    collector: Collector, token: str, body: dict[str, str]
) -> None:
    answer = requests.post(f"{collector.url}/v1/enroll", json={"token": token, **body}, timeout=30)
    assert answer.status_code == 422


def test_a_known_endpoint_with_a_new_key_waits_for_an_admins_approval(
    collector: Collector, token: str
) -> None:
    endpoint = _endpoint(collector, token)
    assert endpoint.report(collector.url).status_code == 202
    reinstalled = SimEndpoint(endpoint.hostname)
    answer = reinstalled.enrol(collector.url, token)
    assert answer.status_code == 202
    assert answer.json() == {"endpoint_id": endpoint.endpoint_id, "status": "pending-approval"}
    reinstalled.endpoint_id = endpoint.endpoint_id
    refused = reinstalled.send(collector.url, reinstalled.envelope(reinstalled.payload(seq=1)))
    assert refused.status_code == 401  # the old key is still the pinned one
    assert _stored(collector, endpoint)["key_approval_pending"] is True
    approved = patchd_cli(
        "collector", "approve-key", "--db", collector.db, str(endpoint.endpoint_id)
    )
    assert approved.returncode == 0, approved.stderr
    accepted = reinstalled.send(collector.url, reinstalled.envelope(reinstalled.payload(seq=1)))
    assert accepted.status_code == 202, accepted.text  # its sequence restarted with the new key
    old = endpoint.send(collector.url, endpoint.envelope(endpoint.payload(seq=50)))
    assert old.status_code == 401  # the replaced key is refused at once, cached or not
    assert _stored(collector, endpoint)["last_seq"] == 1


# -- reports -----------------------------------------------------------------------------------


def test_a_signed_report_is_stored(collector: Collector, token: str) -> None:
    endpoint = _endpoint(collector, token)
    answer = endpoint.report(collector.url, **sections(overdue=0, pending=2))
    assert answer.status_code == 202, answer.text
    stored = _stored(collector, endpoint)
    assert (stored["last_seq"], stored["pending"], stored["status"]) == (1, 2, "compliant")


def test_a_minimal_report_is_valid(collector: Collector, token: str) -> None:
    endpoint = _endpoint(collector, token)
    assert endpoint.report(collector.url).status_code == 202
    assert _stored(collector, endpoint)["status"] == "unknown"  # reporting, but no facts


def test_unknown_fields_are_kept_not_refused(collector: Collector, token: str) -> None:
    endpoint = _endpoint(collector, token)
    envelope = endpoint.envelope(endpoint.payload(future_section={"x": [1, 2]}, another="yes"))
    assert endpoint.send(collector.url, envelope).status_code == 202
    export = collector.get("/v1/export?format=json").json()
    kept = base64.b64decode(export["evidence"]["reports"][endpoint.endpoint_id])
    assert kept == envelope


def test_the_same_report_again_is_a_duplicate(collector: Collector, token: str) -> None:
    endpoint = _endpoint(collector, token)
    envelope = endpoint.envelope(endpoint.payload())
    assert endpoint.send(collector.url, envelope).status_code == 202
    assert endpoint.send(collector.url, envelope).status_code == 200
    assert _stored(collector, endpoint)["flagged"] is False


def test_the_same_seq_with_other_bytes_is_refused_and_flagged(
    collector: Collector, token: str
) -> None:
    endpoint = _endpoint(collector, token)
    assert (
        endpoint.send(collector.url, endpoint.envelope(endpoint.payload(seq=5))).status_code == 202
    )
    fork = endpoint.envelope(endpoint.payload(seq=5, hostname_note="a clone"))
    assert endpoint.send(collector.url, fork).status_code == 409
    stored = _stored(collector, endpoint)
    assert stored["flagged"] is True
    assert stored["last_seq"] == 5
    assert [f["kind"] for f in stored["flags"]] == ["fork"]


def test_a_replayed_or_older_seq_is_refused_and_flagged(collector: Collector, token: str) -> None:
    endpoint = _endpoint(collector, token)
    assert (
        endpoint.send(collector.url, endpoint.envelope(endpoint.payload(seq=10))).status_code == 202
    )
    older = endpoint.send(collector.url, endpoint.envelope(endpoint.payload(seq=9)))
    assert older.status_code == 409
    stored = _stored(collector, endpoint)
    assert (stored["last_seq"], stored["flagged"]) == (10, True)
    assert [r["seq"] for r in stored["reports"]] == [10]


def test_an_unknown_endpoint_is_refused(collector: Collector) -> None:
    stranger = SimEndpoint("stranger.example", endpoint_id="ep_0000000000000000dead")
    assert stranger.report(collector.url).status_code == 401


def test_a_tampered_payload_fails_its_signature(collector: Collector, token: str) -> None:
    endpoint = _endpoint(collector, token)
    envelope = json.loads(endpoint.envelope(endpoint.payload(**sections(overdue=3))))
    signed = base64.b64decode(envelope["payload"])
    payload = signed.replace(b'"overdue": 3', b'"overdue": 0')
    assert payload != signed
    envelope["payload"] = base64.b64encode(payload).decode()
    answer = endpoint.send(collector.url, json.dumps(envelope).encode())
    assert answer.status_code == 401
    assert _stored(collector, endpoint)["last_seq"] == -1


def test_a_report_signed_by_another_endpoints_key_is_refused(
    collector: Collector, token: str
) -> None:
    victim, attacker = _endpoint(collector, token), _endpoint(collector, token)
    forged = victim.envelope(victim.payload(), key=attacker.key)
    assert victim.send(collector.url, forged).status_code == 401
    assert _stored(collector, victim)["last_seq"] == -1


def test_a_payload_naming_another_endpoint_is_refused(collector: Collector, token: str) -> None:
    endpoint, other = _endpoint(collector, token), _endpoint(collector, token)
    payload = endpoint.payload()
    payload["endpoint_id"] = other.endpoint_id
    assert endpoint.send(collector.url, endpoint.envelope(payload)).status_code == 422
    assert _stored(collector, other)["last_seq"] == -1


def test_a_body_over_the_limit_is_refused_with_413(collector: Collector, token: str) -> None:
    endpoint = _endpoint(collector, token)
    huge = endpoint.envelope(endpoint.payload(padding="x" * (1024 * 1024)))
    assert endpoint.send(collector.url, huge).status_code == 413
    assert _stored(collector, endpoint)["last_seq"] == -1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"payloadType": "text/plain", "payload": "", "signatures": []}', 400),
        (
            b'{"payloadType": "application/vnd.patchd.report+json", "payload": "!!", "signatures": []}',
            400,
        ),
    ],
)
def test_a_malformed_envelope_is_refused(collector: Collector, body: bytes, status: int) -> None:
    answer = requests.post(f"{collector.url}/v1/reports", data=body, timeout=30)
    assert answer.status_code == status


@pytest.mark.parametrize(
    "change",
    [
        {"seq": -1},
        {"seq": "1"},
        {"created_at": "yesterday"},
        {"hostname": ""},
        {"schema_version": 2},
    ],
)
def test_a_signed_but_malformed_payload_is_refused_with_422(
    collector: Collector, token: str, change: dict[str, object]
) -> None:
    endpoint = _endpoint(collector, token)
    payload = {**endpoint.payload(), **change}
    assert endpoint.send(collector.url, endpoint.envelope(payload)).status_code == 422
    assert _stored(collector, endpoint)["last_seq"] == -1


# -- admin routes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/endpoints", "/v1/endpoints/ep_x", "/v1/compliance", "/v1/export?format=csv"]
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-wrong-token", "Basic abc"])
def test_admin_routes_need_the_admin_token(
    collector: Collector, path: str, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    answer = requests.get(collector.url + path, headers=headers, timeout=30)
    assert answer.status_code == 401


def test_health_metrics_and_openapi_are_served(collector: Collector, token: str) -> None:
    _endpoint(collector, token).report(collector.url, **sections())
    assert requests.get(f"{collector.url}/healthz", timeout=30).json()["status"] == "ok"
    metrics = requests.get(f"{collector.url}/metrics", timeout=30).text
    assert 'patchd_endpoints{status="enrolled"}' in metrics
    assert "patchd_compliance_rate" in metrics
    paths = requests.get(f"{collector.url}/openapi.json", timeout=30).json()["paths"]
    assert {
        "/v1/enroll",
        "/v1/reports",
        "/v1/endpoints",
        "/v1/compliance",
        "/v1/export",
        "/v1/policy",
    } <= set(paths)
