"""The end-to-end fixtures: a booted container with patchd installed as an administrator
would, a real collector on the host's loopback, signed policies, a local apt repository.

One container is booted per module and the tests in a module run in order, each taking
the endpoint from where the previous one left it (installed, enrolled, patched, ...), the
way an administrator's machine lives. Each test still checks its own preconditions.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require, run_patchd
from tests.support.collector import Collector, running_collector
from tests.support.debian import DebSpec, RepoSpec, build_deb, publish_repo
from tests.support.nspawn import Container, booted, cached_root, copy_root

E2E_TOOLS = ("debootstrap", "systemd-nspawn", "nsenter", "dpkg-deb", "apt-ftparchive")
REPO_DIR = "/srv/patchd-e2e"  # inside the container: the local repository and what installs
AGENT_UNIT = "patchd-agent.service"
PATCHD = "/opt/patchd/bin/patchd"
SLOW_POSTINST_S = 8  # how long slowpkg 2.0's postinst works: a stop lands in the middle
WAIT_S = 240.0  # generous bound for each awaited event; tests never assert durations


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def policy_document(version: int, approved: list[str], *, window_open: bool) -> dict[str, Any]:
    """A policy installing only ``approved``, in a window open now (or opening in 12 h)."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(hours=1) if window_open else now + timedelta(hours=12)).strftime(
        "%H:00"
    )
    return {
        "version": version,
        "name": "e2e",
        "issued_at": _stamp(now - timedelta(hours=1)),
        "expires": _stamp(now + timedelta(days=30)),
        "segments": [{"name": "everyone", "windows": ["daily"]}],
        "rings": [{"name": "all", "members": {"percentage": 100}, "deferrals": {"default": "0d"}}],
        "rules": [{"action": "approval", "approved": approved}],
        "windows": {
            "daily": {
                "timezone": "UTC",
                "weekly": {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": start,
                    "duration": "6h",
                },
            }
        },
    }


@dataclass
class Admin:
    """The administrator's side on the host: keys, trust root, the collector."""

    work: Path
    collector: Collector
    db: str

    @property
    def trust_root(self) -> Path:
        return self.work / "trust-root.json"

    def publish(self, version: int, approved: list[str], *, window_open: bool = True) -> None:
        """Sign a policy version and publish it on the collector, as an admin would."""
        path = self.work / f"policy-v{version}.yaml"
        path.write_text(yaml.safe_dump(policy_document(version, approved, window_open=window_open)))
        signed = run_patchd(["policy", "sign", str(path), "--key", str(self.work / "admin.key")])
        assert signed.returncode == 0, signed.stderr
        published = run_patchd(["collector", "policy", "publish", "--db", self.db, str(path),
                                "--trust", str(self.trust_root)])  # fmt: skip
        assert published.returncode == 0, published.stderr

    def token(self) -> str:
        made = run_patchd(["collector", "token", "create", "--db", self.db, "--note", "e2e"])
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        answer = self.collector.get(f"/v1/endpoints/{endpoint_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def envelopes(self, endpoint_id: str) -> list[tuple[int, bytes]]:
        """Every report the collector stored from ``endpoint_id``: (seq, envelope bytes)."""
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(
                "SELECT seq, envelope FROM reports WHERE endpoint_id = ? ORDER BY seq",
                (endpoint_id,),
            ).fetchall()
        return [(int(seq), bytes(envelope)) for seq, envelope in rows]

    def public_key(self, endpoint_id: str) -> str:
        with sqlite3.connect(self.db) as conn:
            row = conn.execute(
                "SELECT public_key FROM endpoints WHERE id = ?", (endpoint_id,)
            ).fetchone()
        assert row is not None, f"the collector knows no endpoint {endpoint_id}"
        return str(row[0])


@dataclass
class Endpoint:
    """The container with patchd installed, and what the tests learn along the way."""

    container: Container
    admin: Admin
    facts: dict[str, Any] = field(default_factory=dict)

    def patchd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.container.run(PATCHD, *args, check=check)

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.patchd("status", "--json").stdout)
        return found

    def unit(self, *properties: str) -> dict[str, str]:
        return self.container.show(AGENT_UNIT, *properties)

    def versions(self) -> dict[str, tuple[str, str]]:
        """Package → (version, dpkg status) inside the container."""
        out = self.container.run(
            "dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Status}\n"
        ).stdout
        return {
            name: (version, status)
            for name, version, status in (line.split("\t") for line in out.splitlines())
        }

    def on_host(self, path: str) -> Path:
        """A path of the running container's file system, seen from the host."""
        return Path(f"/proc/{self.container.init_pid}/root") / path.lstrip("/")


def test_packages() -> list[DebSpec]:
    """What the container's repository holds: base versions and the updates the tests approve."""
    slow = (
        "#!/bin/sh\nset -e\n"
        'if [ "$1" = configure ]; then\n'
        "  touch /var/lib/slowpkg-postinst-started\n"
        f"  sleep {SLOW_POSTINST_S}\n"
        "  touch /var/lib/slowpkg-postinst-finished\n"
        "fi\n"
    )
    return [
        DebSpec("hello", "1.0"),
        DebSpec("hello", "1.1"),
        DebSpec("slowpkg", "1.0"),
        DebSpec("slowpkg", "2.0", postinst=slow),
    ]


def build_repository(root: Path, work: Path) -> None:
    """Build the local repository into the container's root, as ``file:`` apt source."""
    debs = [build_deb(spec, work / "debs", work / "trees") for spec in test_packages()]
    publish_repo(RepoSpec("repo"), root / REPO_DIR.lstrip("/"), debs)
    (root / "etc/apt/sources.list.d/patchd-e2e.list").write_text(
        f"deb [trusted=yes] file:{REPO_DIR}/repo ./\n"
    )


def build_wheels(out: Path) -> Path:
    """patchd and its agent's dependencies as wheels (the interim install, below)."""
    out.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(out), str(repo)],
                   check=True, capture_output=True, timeout=900)  # fmt: skip
    return out


def install_patchd(endpoint: Endpoint, work: Path) -> None:
    """Install patchd in the container, enabled and started, as the package's postinst does.

    Interim, until ``make deb`` exists: the documented way without packages — a virtual
    environment in /opt/patchd, then ``patchd service install`` and a start.
    """
    container = endpoint.container
    wheels = build_wheels(work / "wheels")
    target = endpoint.on_host(f"{REPO_DIR}/wheels")
    target.mkdir(parents=True, exist_ok=True)
    for wheel in wheels.glob("*.whl"):
        (target / wheel.name).write_bytes(wheel.read_bytes())
    container.run("python3", "-m", "venv", "/opt/patchd")
    container.run("/opt/patchd/bin/pip", "install", "--quiet", "--no-index", "--find-links",
                  f"{REPO_DIR}/wheels", "patchd")  # fmt: skip
    container.run(PATCHD, "service", "install")
    container.run("install", "-m", "0644", f"{REPO_DIR}/agent.yaml", "/etc/patchd/agent.yaml")
    container.systemctl("start", AGENT_UNIT)


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    work = tmp_path_factory.mktemp("admin")
    assert run_patchd(["key", "generate", "--out", str(work / "admin")]).returncode == 0
    made = run_patchd(["trust", "init", "--key", str(work / "admin.pub"), "--threshold", "1",
                       "--out", str(work / "trust-root.json")])  # fmt: skip
    assert made.returncode == 0, made.stderr
    db = str(work / "collector.db")
    with running_collector(work / "collector", db) as collector:
        yield Admin(work, collector, db)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, admin: Admin) -> Iterator[Endpoint]:
    """A booted container with the base packages and patchd installed and running."""
    require(*E2E_TOOLS, root=True)
    work = tmp_path_factory.mktemp("e2e")
    root = copy_root(cached_root(), work / "root")
    build_repository(root, work)
    (root / "etc/patchd").mkdir(parents=True, exist_ok=True)
    (root / "etc/patchd/trust-root.json").write_bytes(admin.trust_root.read_bytes())
    (root / REPO_DIR.lstrip("/") / "agent.yaml").write_text(yaml.safe_dump({
        "policy": {"trust_root": "/etc/patchd/trust-root.json",
                   "urls": [f"{admin.collector.url}/v1/policy"]},
        "agent": {"scan_interval": "1h", "refresh": True},
        "apt": {"lock_timeout": 60},
    }))  # fmt: skip
    admin.publish(1, ["hello=1.1"], window_open=False)  # approved, but its window is closed
    with booted(root, work / "nspawn.log") as container:
        ep = Endpoint(container, admin)
        try:
            container.run("apt-get", "update", "-q")
            container.run("apt-get", "install", "-y", "-q", "hello=1.0", "slowpkg=1.0",
                          "-o", "Dpkg::Use-Pty=0")  # fmt: skip
            install_patchd(ep, work)
            yield ep
        finally:
            journal = container.run("journalctl", "-b", "--no-pager", check=False).stdout
            (work / "journal.txt").write_text(journal)
            if os.environ.get("PATCHD_E2E_SHOW_JOURNAL"):
                print(journal[-20000:])
