"""An isolated Debian root: its own dpkg database, apt state and sources, no host packages.

apt is pointed into the root by a configuration file named in ``APT_CONFIG`` (``Dir``),
and dpkg by ``--root``/``--log``; dpkg runs maintainer scripts chrooted into the root,
where a static busybox provides ``/bin/sh``. Building one takes about 0.1 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APT_TIMEOUT_S = 300
_DIRS = (
    "var/lib/dpkg/updates",
    "var/lib/dpkg/info",
    "var/lib/dpkg/triggers",
    "var/lib/dpkg/alternatives",
    "var/lib/apt/lists/partial",
    "var/cache/apt/archives/partial",
    "var/log/apt",
    "etc/apt/apt.conf.d",
    "etc/apt/preferences.d",
    "etc/apt/sources.list.d",
    "bin",
    "tmp",
    "usr/sbin",
)


class AptRoot:
    """A throwaway root directory apt and dpkg manage as if it were a system."""

    def __init__(self, path: Path, config_dir: Path) -> None:
        self.path = path
        self.config_file = config_dir / f"apt-{path.name}.conf"

    @classmethod
    def create(cls, path: Path, config_dir: Path, *, os_release: str | None = None) -> AptRoot:
        root = cls(path, config_dir)
        for d in _DIRS:
            (path / d).mkdir(parents=True, exist_ok=True)
        (path / "var/lib/dpkg/status").touch()
        (path / "var/lib/dpkg/available").touch()
        shutil.copy2(BUSYBOX, path / "bin" / "busybox")
        for tool in ("sh", "true", "kill", "touch", "rm", "cat"):
            (path / "bin" / tool).symlink_to("busybox")
        (path / "etc" / "os-release").write_text(
            os_release
            or 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
            'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
        )
        (path / "etc" / "hostname").write_text("testroot\n")
        config_dir.mkdir(parents=True, exist_ok=True)
        r = str(path)
        root.config_file.write_text(
            f'Dir "{r}/";\n'
            f'Dir::State::status "{r}/var/lib/dpkg/status";\n'
            f'DPkg::Options {{ "--root={r}"; "--log={r}/var/log/dpkg.log"; }};\n'
        )
        return root

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "APT_CONFIG": str(self.config_file),
            "DEBIAN_FRONTEND": "noninteractive",
            "LC_ALL": "C",
        }

    def set_sources(self, uris: Sequence[str]) -> None:
        """Flat repositories at ``uris`` (``file:/…`` or ``http://127.0.0.1:…/…``)."""
        lines = "".join(f"deb [trusted=yes] {uri} ./\n" for uri in uris)
        (self.path / "etc/apt/sources.list").write_text(lines)

    def apt_get(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0", *args],
            env=self.env,
            check=check,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
        )

    def dpkg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = str(self.path)
        return subprocess.run(
            ["dpkg", f"--root={r}", f"--log={r}/var/log/dpkg.log", *args],
            env=self.env,
            check=check,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
        )

    def hold(self, package: str) -> None:
        """``apt-mark hold``, as dpkg records it."""
        r = str(self.path)
        subprocess.run(
            ["dpkg", f"--root={r}", "--set-selections"],
            input=f"{package} hold\n",
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
        )

    def update(self) -> None:
        self.apt_get("update")

    def install(self, *specs: str) -> None:
        self.apt_get("install", "--allow-downgrades", *specs)

    def versions(self) -> dict[str, str]:
        """Installed package → version, as dpkg itself reports them."""
        out = subprocess.run(
            ["dpkg-query", f"--admindir={self.path}/var/lib/dpkg", "-W", "-f",
             "${Package} ${Version} ${db:Status-Abbrev}\n"],
            check=True,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
        ).stdout  # fmt: skip
        result = {}
        for line in out.splitlines():
            name, version, status = line.split(" ", 2)
            if status.strip().startswith("i") or status.strip()[1:2] in ("U", "F", "H", "W", "t"):
                result[name] = version
        return result

    def status_bytes(self) -> bytes:
        return (self.path / "var/lib/dpkg/status").read_bytes()


def tools_missing(*tools: str) -> list[str]:
    """Which of ``tools`` (programs or absolute paths) are not available."""
    missing = []
    for tool in tools:
        if os.path.isabs(tool):
            if not os.path.exists(tool):
                missing.append(tool)
        elif shutil.which(tool) is None:
            missing.append(tool)
    return missing
