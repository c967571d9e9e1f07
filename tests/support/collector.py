"""Real collectors for tests: ``patchd collector serve`` processes on loopback, a throwaway
PostgreSQL cluster, and simulated endpoints that enrol and sign reports like agents do."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from patchd.signing.dsse import pae

REPORT_TYPE = "application/vnd.patchd.report+json"
START_TIMEOUT_S = 60.0
PG_BIN = Path("/usr/lib/postgresql")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(
    url: str,
    process: subprocess.Popen[bytes] | None,
    log: Path | None = None,
    *,
    verify: bool | str = True,
) -> None:
    """Poll ``url``/healthz until it answers (bounded); fail with the server's log if it dies."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            shown = log.read_text() if log is not None else ""
            raise RuntimeError(f"the collector exited with {process.returncode}: {shown[-2000:]}")
        try:
            if requests.get(f"{url}/healthz", timeout=2, verify=verify).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the collector at {url} did not come up within {START_TIMEOUT_S} s")


@dataclass
class Collector:
    """A running ``patchd collector serve``."""

    url: str
    db: str
    admin_token: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, headers=self.admin, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def patchd_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patchd", *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


@contextmanager
def running_collector(
    work: Path,
    db: str,
    *,
    workers: int = 1,
    extra: tuple[str, ...] = (),
    tls: tuple[Path, Path] | None = None,
    port: int | None = None,
) -> Iterator[Collector]:
    """``patchd collector serve`` on loopback; with ``tls`` (certificate, key) it serves HTTPS."""
    work.mkdir(parents=True, exist_ok=True)
    token_file = work / "admin.token"
    if not token_file.exists():
        token_file.write_text(secrets.token_hex(24) + "\n")
        token_file.chmod(0o600)
    port = port or free_port()
    log = work / f"collector-{port}.log"
    if tls is not None:
        extra = (*extra, "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "patchd", "collector", "serve", "--db", db, "--listen", f"127.0.0.1:{port}",
             "--admin-token-file", str(token_file), "--workers", str(workers), *extra],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    scheme = "http" if tls is None else "https"
    collector = Collector(
        f"{scheme}://127.0.0.1:{port}",
        db,
        token_file.read_text().strip(),
        process,
        log,
    )
    try:
        wait_until_up(collector.url, process, log, verify=True if tls is None else str(tls[0]))
        yield collector
    finally:
        collector.stop()


# -- PostgreSQL -----------------------------------------------------------------------------


def pg_bindir() -> Path | None:
    versions = sorted(PG_BIN.glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@dataclass
class Postgres:
    """A throwaway cluster owned by the ``postgres`` user, on loopback."""

    directory: Path
    port: int
    bindir: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                              timeout=120, check=True)  # fmt: skip

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database (a copy of ``template`` if given, which nobody may be using)."""
        copy = ("-T", template) if template else ()
        self._as_postgres(
            str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), *copy, name
        )
        return self.url(name)


@contextmanager
def postgres_cluster(*, durable: bool = False) -> Iterator[Postgres]:
    """A cluster in a directory of its own (the ``postgres`` user cannot enter pytest's).

    Tests run it without fsync; ``durable`` (benchmarks) keeps PostgreSQL's default, so a
    commit is on disk when it returns, as a collector's 202 promises.
    """
    bindir = pg_bindir()
    assert bindir is not None, "PostgreSQL is not installed"
    work = Path(tempfile.mkdtemp(prefix="patchd-pg-"))
    shutil.chown(work, "postgres", "postgres")
    data = work / "data"
    port = free_port()
    cluster = Postgres(work, port, bindir)
    try:
        cluster._as_postgres(
            str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        cluster._as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(work / "pg.log"), "-w", "-o",
                             f"-k {work} -p {port} -c listen_addresses=127.0.0.1"
                             + ("" if durable else " -c fsync=off"), "start")  # fmt: skip
        yield cluster
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "stop"], capture_output=True, timeout=120, check=False)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


# -- simulated endpoints ----------------------------------------------------------------------


def now_stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class SimEndpoint:
    """An endpoint as the collector sees one: a key, an id once enrolled, a sequence."""

    hostname: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    endpoint_id: str | None = None
    seq: int = 0

    @property
    def public_key(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def enrol(self, collector_url: str, token: str) -> requests.Response:
        answer = requests.post(f"{collector_url}/v1/enroll", json={"token": token, "public_key": self.public_key,
                                                                  "hostname": self.hostname}, timeout=30)  # fmt: skip
        if answer.status_code == 201:
            self.endpoint_id = answer.json()["endpoint_id"]
        return answer

    def payload(self, seq: int | None = None, **sections: Any) -> dict[str, Any]:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return {"schema_version": 1, "endpoint_id": self.endpoint_id, "seq": seq,
                "created_at": now_stamp(), "hostname": self.hostname, **sections}  # fmt: skip

    def envelope(
        self, payload: Mapping[str, Any] | bytes, *, key: Ed25519PrivateKey | None = None
    ) -> bytes:
        data = (
            payload if isinstance(payload, bytes) else json.dumps(payload, sort_keys=True).encode()
        )
        sig = (key or self.key).sign(pae(REPORT_TYPE, data))
        return json.dumps({"payloadType": REPORT_TYPE, "payload": base64.b64encode(data).decode(),
                           "signatures": [{"keyid": self.endpoint_id, "sig": base64.b64encode(sig).decode()}]}).encode()  # fmt: skip

    def send(self, collector_url: str, envelope: bytes) -> requests.Response:
        return requests.post(f"{collector_url}/v1/reports", data=envelope, timeout=30,
                             headers={"Content-Type": "application/json"})  # fmt: skip

    def report(self, collector_url: str, **sections: Any) -> requests.Response:
        return self.send(collector_url, self.envelope(self.payload(**sections)))


def sections(*, overdue: int = 0, pending: int = 0, segments: tuple[str, ...] = ("servers",), ring: str = "broad",
             eol_past: bool = False, updates: list[dict[str, Any]] | None = None,
             runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Report sections as the agent writes them (docs/reporting.md), with chosen facts."""
    return {
        "inventory": {"os": {"family": "debian", "pretty_name": "Debian GNU/Linux 12 (bookworm)", "version": "12"},
                      "end_of_life": {"past_security_end": eol_past, "security_end": "2026-06-10"}},
        "policy": {"name": "fleet", "version": 3, "state": "active", "segments": list(segments), "ring": ring},
        "reboot": {"required": False, "reasons": []},
        "compliance": {"pending": pending, "pending_security": pending, "overdue": overdue},
        "updates": {"items": updates or [], "total": len(updates or []), "truncated": False},
        "runs": {"items": runs or [], "total": len(runs or []), "truncated": False},
    }  # fmt: skip


def have_postgres() -> bool:
    return pg_bindir() is not None and shutil.which("runuser") is not None


def environment_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
