"""A simulated fleet for the collector benchmark: endpoints with their own keys, enrolled
for real, and the ~4 KiB signed reports they send, built (and signed) before any timing.

Reports are made the way agents make them (``tests.support.collector.SimEndpoint``: the
payload is JSON, the DSSE envelope is signed with the endpoint's Ed25519 key) with the
sections an agent writes (``tests.support.collector.sections``), filled with pending
updates shaped like the agent's own (``patchd.models.Update.as_dict`` plus the policy's
decision), so the collector parses and stores what it would in production.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from patchd.models import Classification, Severity, Update  # noqa: E402
from tests.support.collector import SimEndpoint, sections  # noqa: E402

REPORT_PATH = "/v1/reports"
PAYLOAD_BYTES = 4096  # what each report's payload is padded towards (real update items)
ENROL_TTL = timedelta(hours=2)
_HEADER_BYTES = 150  # schema_version, endpoint_id, seq, created_at, hostname

# Debian 12 security and bug-fix updates of the kind a fleet has pending at once.
# (name, installed, available, classification, severity, CVEs)
_POOL: tuple[tuple[str, str, str, str, str, tuple[str, ...]], ...] = (
    ("openssl", "3.0.15-1~deb12u1", "3.0.16-1~deb12u1", "security", "important", ("CVE-2024-13176",)),
    ("libssl3", "3.0.15-1~deb12u1", "3.0.16-1~deb12u1", "security", "important", ("CVE-2024-13176",)),
    ("libc6", "2.36-9+deb12u9", "2.36-9+deb12u10", "security", "moderate", ("CVE-2025-0395",)),
    ("libxml2", "2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3~deb12u2", "security", "important",
     ("CVE-2024-56171", "CVE-2025-24928")),
    ("libcurl4", "7.88.1-10+deb12u8", "7.88.1-10+deb12u12", "security", "moderate",
     ("CVE-2024-11053", "CVE-2025-0167")),
    ("openssh-server", "1:9.2p1-2+deb12u4", "1:9.2p1-2+deb12u5", "security", "important",
     ("CVE-2025-26465",)),
    ("rsync", "3.2.7-1", "3.2.7-1+deb12u2", "security", "critical", ("CVE-2024-12084", "CVE-2024-12085")),
    ("bind9-libs", "1:9.18.28-1~deb12u2", "1:9.18.33-1~deb12u2", "security", "important",
     ("CVE-2024-11187", "CVE-2024-12705")),
    ("git", "1:2.39.5-0+deb12u1", "1:2.39.5-0+deb12u2", "security", "moderate", ("CVE-2024-50349",)),
    ("postgresql-15", "15.10-0+deb12u1", "15.12-0+deb12u1", "security", "important", ("CVE-2025-1094",)),
    ("tzdata", "2024b-0+deb12u1", "2025a-0+deb12u1", "other", "unknown", ()),
    ("systemd", "252.33-1~deb12u1", "252.36-1~deb12u1", "bugfix", "unknown", ()),
    ("base-files", "12.4+deb12u9", "12.4+deb12u10", "bugfix", "unknown", ()),
    ("linux-image-amd64", "6.1.124-1", "6.1.129-1", "security", "important",
     ("CVE-2024-57882", "CVE-2025-21700", "CVE-2024-53166")),
)  # fmt: skip


@dataclass
class FleetEndpoint:
    """One simulated endpoint and the requests it will send, signed in advance."""

    sim: SimEndpoint
    requests: list[bytes]


def _update_item(
    entry: tuple[str, str, str, str, str, tuple[str, ...]], now: datetime
) -> dict[str, Any]:
    name, installed, available, classification, severity, cves = entry
    update = Update(backend="apt", name=name, arch="amd64", installed_version=installed,
                    available_version=available, classification=Classification(classification),
                    severity=Severity(severity), cves=cves)  # fmt: skip
    security = classification == "security"
    first_seen = now - timedelta(days=3)
    return {
        **update.as_dict(),
        "first_seen": first_seen.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "deadline": (first_seen + timedelta(days=7 if security else 30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "overdue": False,
        "decision": "install-later",
        "reason": f"{severity} {classification} update: installed in the next maintenance window (ring broad)",
        "not_before": (now + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }  # fmt: skip


def report_sections(rng: random.Random, now: datetime) -> dict[str, Any]:
    """Sections with as many pending updates as fit in about :data:`PAYLOAD_BYTES`."""
    pool = list(_POOL)
    rng.shuffle(pool)
    items: list[dict[str, Any]] = []
    found = sections(segments=("servers", "eu-west"))
    for entry in pool:
        candidate = [*items, _update_item(entry, now)]
        security = sum(i["classification"] == "security" for i in candidate)
        trial = sections(pending=len(candidate), segments=("servers", "eu-west"), updates=candidate)
        trial["compliance"]["pending_security"] = security
        if len(json.dumps(trial, sort_keys=True)) + _HEADER_BYTES > PAYLOAD_BYTES:
            break
        items, found = candidate, trial
    return found


def request_bytes(envelope: bytes) -> bytes:
    """A whole HTTP/1.1 request for ``envelope``, as an agent sends it (keep-alive)."""
    head = (f"POST {REPORT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(envelope)}\r\n\r\n")  # fmt: skip
    return head.encode() + envelope


def new_fleet(count: int, prefix: str) -> list[FleetEndpoint]:
    """``count`` endpoints, each with a key of its own (not enrolled yet)."""
    return [FleetEndpoint(SimEndpoint(f"{prefix}-{i:05d}.example.net", Ed25519PrivateKey.generate()), [])
            for i in range(count)]  # fmt: skip


def enrol(db: str, fleet: Sequence[FleetEndpoint]) -> None:
    """Enrol every endpoint with one multi-use token, through the collector's own store.

    Setup is not measured; a per-transaction fsync would make it minutes long, so the
    enrolment transactions skip it (the collector under test commits durably).
    """
    from sqlalchemy import event

    from patchd.collector.store import CollectorStore

    store = CollectorStore(db)
    store.engine.dispose()

    @event.listens_for(store.engine, "connect")
    def _fast(dbapi_connection: Any, _record: Any) -> None:
        if store.dialect == "sqlite":
            dbapi_connection.execute("PRAGMA synchronous=OFF")
        else:
            dbapi_connection.execute("SET synchronous_commit = off")
            dbapi_connection.commit()

    try:
        token = store.create_token(ttl=ENROL_TTL, uses=len(fleet), note="bench fleet")
        for endpoint in fleet:
            sim = endpoint.sim
            done = store.enrol(token.secret, sim.public_key, sim.hostname)
            if done.status != "enrolled":
                raise RuntimeError(f"{sim.hostname}: enrolment answered {done.status}")
            sim.endpoint_id = done.endpoint_id
    finally:
        store.close()


def sign_reports(fleet: Sequence[FleetEndpoint], reports_each: int, seed: int) -> int:
    """Sign ``reports_each`` reports (seq 1, 2, ...) per endpoint; the payload size in bytes."""
    rng = random.Random(seed)  # noqa: S311 - variety, not secrecy
    now = datetime.now(UTC)
    size = 0
    for endpoint in fleet:
        found = report_sections(rng, now)
        for _ in range(reports_each):
            payload = endpoint.sim.payload(**found)
            envelope = endpoint.sim.envelope(payload)
            endpoint.requests.append(request_bytes(envelope))
            size = max(size, len(envelope))
    return size
