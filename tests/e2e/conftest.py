"""The end-to-end fixtures: a booted container with patchd installed as an administrator
would, a real collector on the host's loopback, signed policies, a local apt repository.

One container is booted per module and the tests in a module run in order, each taking
the endpoint from where the previous one left it (installed, enrolled, patched, ...), the
way an administrator's machine lives. Each test still checks its own preconditions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
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
from tests.support.linuxpkg import REPO, build_packages, package_test_version
from tests.support.linuxpkg import TOOLS as PACKAGE_TOOLS
from tests.support.nspawn import CACHE_DIR, Container, booted, cached_root, copy_root, deb_depends

E2E_TOOLS = (
    "debootstrap",
    "systemd-nspawn",
    "nsenter",
    "dpkg-deb",
    "apt-ftparchive",
    *PACKAGE_TOOLS,
)
# What the packages are made from: a change to any of it builds them again.
PACKAGE_INPUTS = ("patchd", "packaging/linux", "packaging/man", "packaging/completions",
                  "setup.cfg", "pyproject.toml", "README.md", "LICENSE")  # fmt: skip
DEB_CACHE = CACHE_DIR / "debs"
DEB_CACHE_KEEP = 4  # package builds kept (the newest); each is two versions, ~40 MB
REPO_DIR = "/srv/patchd-e2e"  # inside the container: the local repository and what installs
AGENT_UNIT = "patchd-agent.service"
PATCHD = "/opt/patchd/bin/patchd"
SLOW_POSTINST_S = 8  # how long the slow packages' postinst works: a stop lands in the middle
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


def slow_postinst() -> str:
    """A postinst that works for a while, leaving marks of its start and end in /var/lib."""
    return (
        "#!/bin/sh\nset -e\n"
        'if [ "$1" = configure ]; then\n'
        '  touch "/var/lib/$DPKG_MAINTSCRIPT_PACKAGE-postinst-started"\n'
        f"  sleep {SLOW_POSTINST_S}\n"
        '  touch "/var/lib/$DPKG_MAINTSCRIPT_PACKAGE-postinst-finished"\n'
        "fi\n"
    )


def test_packages() -> list[DebSpec]:
    """What the container's repository holds: base versions and the updates the tests approve."""
    return [
        DebSpec("hello", "1.0"),
        DebSpec("hello", "1.1"),
        DebSpec("slowpkg", "1.0"),
        DebSpec("slowpkg", "2.0", postinst=slow_postinst()),
        DebSpec("slowtwo", "1.0"),
        DebSpec("slowtwo", "2.0", postinst=slow_postinst()),
    ]


def build_repository(root: Path, work: Path, patchd_debs: list[Path]) -> None:
    """(Re)build the local repository inside the container's root: the test packages and
    the given patchd packages. It is the endpoint's only apt source (``file:``)."""
    debs = [build_deb(spec, work / "debs", work / "trees") for spec in test_packages()]
    publish_repo(RepoSpec("repo"), root / REPO_DIR.lstrip("/"), [*debs, *patchd_debs])
    (root / "etc/apt/sources.list.d/patchd-e2e.list").write_text(
        f"deb [trusted=yes] file:{REPO_DIR}/repo ./\n"
    )


def upgrade_version(version: str) -> str:
    """The next version after ``version``, for dpkg (``0.1.0+pkgtest`` < ``0.1.0+pkgtest.1``)."""
    return f"{version}.1"


def _source_key() -> str:
    digest = hashlib.sha256()
    for top in PACKAGE_INPUTS:
        path = REPO / top
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def patchd_deb(version: str) -> Path:
    """``make deb``'s patchd package at ``version`` (packaging/linux/build.py).

    Built from this tree unless the cache has a build of the same sources; the tests of
    tests/packaging share the session's builds.
    """
    entry = DEB_CACHE / f"{_source_key()}-{version}"
    cached = entry / f"patchd_{version}_amd64.deb"
    if cached.is_file():
        return cached
    built = build_packages("deb", version)["patchd"]
    staging = entry.with_name(entry.name + f".{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built, staging / built.name)
    shutil.rmtree(entry, ignore_errors=True)
    staging.rename(entry)
    entries = sorted(DEB_CACHE.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[DEB_CACHE_KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return cached


def install_patchd(endpoint: Endpoint, version: str) -> None:
    """Install the patchd package from the endpoint's repository, as an administrator does.

    Its postinst enables and starts the agent. The configuration is already in place, so
    dpkg keeps it (``--force-confold``), as with any configuration management tool.
    """
    endpoint.container.run(
        "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        "-o", "Dpkg::Use-Pty=0", f"patchd={version}",
    )  # fmt: skip


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
def versions() -> tuple[str, str]:
    """The patchd version installed first, and the one it upgrades itself to."""
    first = package_test_version()
    return first, upgrade_version(first)


@pytest.fixture(scope="module")
def endpoint(
    tmp_path_factory: pytest.TempPathFactory, admin: Admin, versions: tuple[str, str]
) -> Iterator[Endpoint]:
    """A booted container with the base packages and patchd installed and running."""
    require(*E2E_TOOLS, root=True)
    work = tmp_path_factory.mktemp("e2e")
    first = patchd_deb(versions[0])
    root = copy_root(cached_root(deb_depends(first)), work / "root")
    build_repository(root, work, [first])
    (root / "etc/patchd").mkdir(parents=True, exist_ok=True)
    (root / "etc/patchd/trust-root.json").write_bytes(admin.trust_root.read_bytes())
    (root / "etc/patchd/agent.yaml").write_text(yaml.safe_dump({
        "policy": {"trust_root": "/etc/patchd/trust-root.json",
                   "urls": [f"{admin.collector.url}/v1/policy"]},
        "agent": {"scan_interval": "1h", "refresh": True},
        "apt": {"lock_timeout": 60},
    }))  # fmt: skip
    admin.publish(1, ["hello=1.1"], window_open=False)  # approved, but its window is closed
    with booted(root, work / "nspawn.log") as container:
        ep = Endpoint(container, admin)
        ep.facts["work"] = work
        try:
            container.run("apt-get", "update", "-q")
            container.run("apt-get", "install", "-y", "-q", "hello=1.0", "slowpkg=1.0", "slowtwo=1.0",
                          "-o", "Dpkg::Use-Pty=0")  # fmt: skip
            install_patchd(ep, versions[0])
            yield ep
        finally:
            journal = container.run("journalctl", "-b", "--no-pager", check=False).stdout
            (work / "journal.txt").write_text(journal)
            if os.environ.get("PATCHD_E2E_SHOW_JOURNAL"):
                print(journal[-20000:])
