"""Shared fixtures: the host's package database guard, built repositories, isolated roots."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.aptroot import AptRoot, tools_missing
from tests.support.catalogue import Catalogue, build_catalogue

APT_TOOLS = ("apt-get", "apt-ftparchive", "dpkg-deb", "/bin/busybox")
HOST_PACKAGE_STATE = (
    Path("/var/lib/dpkg/status"),
    Path("/var/log/dpkg.log"),
    Path("/var/lib/dpkg/updates"),
)
CLI_TIMEOUT_S = 600


def require(*tools: str, root: bool = False) -> None:
    """Skip (locally) or fail (in CI, where nothing may be skipped) without these tools."""
    problems = [f"{t} is not installed" for t in tools_missing(*tools)]
    if root and os.geteuid() != 0:
        problems.append("needs root")
    if problems:
        message = "; ".join(problems) + " (make test installs them when run as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _fingerprint(path: Path) -> str:
    if path.is_dir():
        return json.dumps(sorted(p.name for p in path.iterdir()))
    if not path.exists():
        return "absent"
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session", autouse=True)
def host_package_database_unchanged() -> Iterator[None]:
    """No test may touch the host's own packages: dpkg's status, log and journal stay as they were."""
    before = {p: _fingerprint(p) for p in HOST_PACKAGE_STATE}
    yield
    after = {p: _fingerprint(p) for p in HOST_PACKAGE_STATE}
    changed = [str(p) for p in HOST_PACKAGE_STATE if before[p] != after[p]]
    assert not changed, f"the test session changed the host's package state: {changed}"


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    require(*APT_TOOLS)
    return build_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture
def apt_root(tmp_path: Path, catalogue: Catalogue) -> AptRoot:
    """A root with the base versions installed and every repository as a source."""
    require(*APT_TOOLS, root=True)
    root = AptRoot.create(tmp_path / "root", tmp_path / "aptconf")
    root.set_sources(catalogue.uris())
    root.update()
    root.install(*catalogue.base_specs())
    return root


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Patchd:
    """Runs the real ``patchd`` command against one root and state directory."""

    root: Path
    state_dir: Path
    config: Path

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> CliResult:
        return run_patchd(
            [
                "--root",
                str(self.root),
                "--state-dir",
                str(self.state_dir),
                "--config",
                str(self.config),
                *args,
            ],
            env=env,
            stdin=stdin,
        )


def run_patchd(
    args: Sequence[str], *, env: dict[str, str] | None = None, stdin: str | None = None
) -> CliResult:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PATCHD_CONFIG", "NO_COLOR")}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "patchd", *args],
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def patchd(apt_root: AptRoot, tmp_path: Path) -> Patchd:
    config = tmp_path / "agent.yaml"
    config.write_text("tags: [test]\napt:\n  lock_timeout: 5\n")
    return Patchd(apt_root.path, tmp_path / "state", config)
