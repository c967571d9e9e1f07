"""How patchd invokes apt and dpkg on a target: argv, environment and paths.

On the host, apt's own configuration applies unchanged. For an alternate root
(``--root``), patchd writes an apt configuration that points every directory into the
root and passes ``--root``/``--log`` to dpkg, so that nothing touches the host's package
database or log; dpkg then runs maintainer scripts chrooted into the root.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from patchd import process
from patchd.atomicfile import atomic_write_text
from patchd.target import Target

APT_CONFIG_TIMEOUT_S = 30.0
# Keep the administrator's changed configuration files; take the package's default
# answer where a file was not changed. Never prompt.
NONINTERACTIVE_OPTIONS = (
    "-o", "Dpkg::Options::=--force-confdef",
    "-o", "Dpkg::Options::=--force-confold",
    "-o", "Dpkg::Use-Pty=0",
    "-o", "APT::Color=0",
    "-o", "quiet::NoProgress=1",
)  # fmt: skip
NONINTERACTIVE_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "APT_LISTCHANGES_FRONTEND": "none",
    "APT_LISTBUGS_FRONTEND": "none",
    "UCF_FORCE_CONFFOLD": "1",  # ucf-managed files: keep the local version too
    "NEEDRESTART_MODE": "l",  # needrestart lists; patchd decides about restarts and reboots
}
POLICY_RC_D = "/usr/sbin/policy-rc.d"
_DENY_ALL_SERVICE_ACTIONS = "#!/bin/sh\n# written by patchd while it patches this root\nexit 101\n"


@dataclass(frozen=True)
class AptPaths:
    """Where apt keeps its state for a target, as apt's configuration resolves it."""

    lists_dir: Path
    archives_dir: Path
    admin_dir: Path  # dpkg's database directory
    dpkg_log: Path


class AptEnvironment:
    """Builds apt and dpkg command lines for one target."""

    def __init__(self, target: Target, work_dir: Path) -> None:
        self.target = target
        self._work_dir = work_dir

    @cached_property
    def config_file(self) -> Path | None:
        """The apt configuration patchd writes for an alternate root (``None`` on the host)."""
        if self.target.is_host:
            return None
        root = str(self.target.root).rstrip("/")
        text = (
            "// written by patchd: apt works inside the target root\n"
            f'Dir "{root}/";\n'
            f'Dir::State::status "{root}/var/lib/dpkg/status";\n'
            f'DPkg::Options {{ "--root={root}"; "--log={root}/var/log/dpkg.log"; }};\n'
        )
        import hashlib

        digest = hashlib.sha256(root.encode()).hexdigest()[:16]
        path = self._work_dir / f"apt-{digest}.conf"
        self._work_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text, mode=0o644)
        return path

    @property
    def env(self) -> dict[str, str]:
        env = dict(NONINTERACTIVE_ENV)
        if self.config_file is not None:
            env["APT_CONFIG"] = str(self.config_file)
        return env

    def dpkg_argv(self, *args: str) -> list[str]:
        """A dpkg command line that works on the target's database."""
        if self.target.is_host:
            return ["dpkg", *args]
        root = str(self.target.root)
        return ["dpkg", f"--root={root}", f"--log={root}/var/log/dpkg.log", *args]

    def apt_get_argv(self, *args: str, lock_timeout_s: float = 0) -> list[str]:
        """A non-interactive apt-get command line."""
        return [
            "apt-get",
            "-y",
            *NONINTERACTIVE_OPTIONS,
            "-o",
            f"DPkg::Lock::Timeout={max(0, int(lock_timeout_s))}",
            *args,
        ]

    @cached_property
    def paths(self) -> AptPaths:
        """apt's directories for the target (asks ``apt-config``, which is cheap)."""
        result = process.run(
            [
                "apt-config", "shell",
                "LISTS", "Dir::State::lists/d",
                "ARCHIVES", "Dir::Cache::archives/d",
                "STATUS", "Dir::State::status/f",
            ],
            env=self.env,
            timeout_s=APT_CONFIG_TIMEOUT_S,
        )  # fmt: skip
        values: dict[str, str] = {}
        for line in result.stdout.splitlines():
            name, sep, quoted = line.partition("=")
            if sep:
                parts = shlex.split(quoted)
                values[name] = parts[0] if parts else ""
        admin_dir = Path(values.get("STATUS", "/var/lib/dpkg/status")).parent
        return AptPaths(
            lists_dir=Path(values.get("LISTS", "/var/lib/apt/lists")),
            archives_dir=Path(values.get("ARCHIVES", "/var/cache/apt/archives")),
            admin_dir=admin_dir,
            dpkg_log=self.target.path("/var/log/dpkg.log"),
        )

    def lock_files(self) -> list[Path]:
        """The locks apt and dpkg take, in the order they take them."""
        admin = self.paths.admin_dir
        return [admin / "lock-frontend", admin / "lock"]

    @contextmanager
    def services_held(self) -> Iterator[None]:
        """In an alternate root, stop maintainer scripts from starting services.

        A package upgraded in a mounted image must not start its daemon on the host
        patchd runs on. A ``policy-rc.d`` that denies every action does that; it is
        removed afterwards unless the root already had one.
        """
        if self.target.is_host:
            yield
            return
        guard = self.target.path(POLICY_RC_D)
        if guard.exists():
            yield
            return
        guard.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(guard, _DENY_ALL_SERVICE_ACTIONS, mode=0o755)
        try:
            yield
        finally:
            guard.unlink(missing_ok=True)
