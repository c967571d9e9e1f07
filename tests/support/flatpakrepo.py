"""A local flatpak repository and an isolated system installation, for the real flatpak.

The repository is an OSTree repo built with ``flatpak build-export`` from directories
written here (a tiny runtime and applications whose ``metadata`` and ``export/`` stand
in for ``flatpak build-init``/``build-finish``); the installation lives under a test
root's ``var/lib/flatpak`` and is reached with ``FLATPAK_SYSTEM_DIR``, as patchd does
for ``--root``. Nothing touches the host's installation.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

FLATPAK_TIMEOUT_S = 300
RUNTIME = "org.patchd.Platform"
APPS = ("org.patchd.Hello", "org.patchd.World")
ARCH = "x86_64" if os.uname().machine == "x86_64" else os.uname().machine


def _flatpak(*args: str | Path, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
    result = subprocess.run(
        ["flatpak", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        timeout=FLATPAK_TIMEOUT_S,
        env=full_env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"flatpak {' '.join(map(str, args))}: {result.stderr.strip()}")
    return result.stdout


class FlatpakRepo:
    """An OSTree repository of test applications, each exported at chosen versions."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.path = workdir / "repo"
        self.uri = f"file://{self.path}"
        runtime = workdir / "build" / RUNTIME
        (runtime / "files").mkdir(parents=True)
        (runtime / "usr").mkdir()  # build-export --runtime reads it
        (runtime / "metadata").write_text(
            f"[Runtime]\nname={RUNTIME}\nruntime={RUNTIME}/{ARCH}/1\nsdk={RUNTIME}/{ARCH}/1\n"
        )
        (runtime / "files" / "version").write_text("1\n")
        _flatpak("build-export", "--runtime", self.path, runtime, "1")

    def export(self, app_id: str, version: str) -> None:
        """Export ``app_id`` (branch ``stable``) with content that differs by ``version``."""
        build = self.workdir / "build" / app_id
        (build / "files" / "bin").mkdir(parents=True, exist_ok=True)
        (build / "export").mkdir(exist_ok=True)
        (build / "metadata").write_text(
            f"[Application]\nname={app_id}\nruntime={RUNTIME}/{ARCH}/1\n"
            f"sdk={RUNTIME}/{ARCH}/1\ncommand=hello\n"
        )
        (build / "files" / "bin" / "hello").write_text(f"#!/bin/sh\necho {app_id} {version}\n")
        _flatpak("build-export", self.path, build, "stable")
        _flatpak("build-update-repo", self.path)


class FlatpakRoot:
    """A root whose ``var/lib/flatpak`` is a system installation using one remote."""

    def __init__(self, path: Path, repo: FlatpakRepo, remote: str = "test") -> None:
        self.path = path
        self.installation = path / "var" / "lib" / "flatpak"
        self.installation.mkdir(parents=True)
        (path / "etc" / "flatpak").mkdir(parents=True)
        self.env = {
            "FLATPAK_SYSTEM_DIR": str(self.installation),
            "FLATPAK_CONFIG_DIR": str(path / "etc" / "flatpak"),
            "FLATPAK_USER_DIR": str(path / "user-flatpak"),
        }
        self.remote = remote
        self.run("remote-add", "--no-gpg-verify", remote, repo.uri)

    def run(self, *args: str) -> str:
        return _flatpak("--system", *args, env=self.env)

    def install(self, app_id: str) -> None:
        self.run("install", "-y", "--noninteractive", self.remote, app_id)

    def commits(self) -> dict[str, str]:
        """Installed ``ID//BRANCH`` → abbreviated active commit, read with flatpak itself."""
        out = self.run("list", "--columns=application,branch,active")
        return {
            f"{app}//{branch}": commit
            for app, branch, commit in (line.split("\t") for line in out.splitlines() if line)
        }

    def full_commit(self, ref: str) -> str:
        return self.run("info", "--show-commit", ref).strip()


@dataclass
class TwoApps:
    """Both test applications installed at their first commit; the remote has a second."""

    root: FlatpakRoot
    old: dict[str, str]  # ID//BRANCH -> abbreviated commit installed
    new: dict[str, str]  # ID//BRANCH -> abbreviated commit the remote offers


def installed_then_updated(workdir: Path) -> TwoApps:
    """Export, install, export again: the state every real flatpak test starts from.

    The remote keeps the first commits in its history, so flatpak can go back to them.
    """
    repo = FlatpakRepo(workdir / "build")
    for app in APPS:
        repo.export(app, "1")
    root = FlatpakRoot(workdir / "root", repo)
    for app in APPS:
        root.install(app)
    old = root.commits()
    for app in APPS:
        repo.export(app, "2")
    new = {
        f"{app}//stable": root.run(
            "remote-info", "--show-commit", root.remote, f"app/{app}/{ARCH}/stable"
        )[:12]
        for app in APPS
    }
    return TwoApps(root, old, new)
