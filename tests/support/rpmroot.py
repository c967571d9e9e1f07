"""Isolated RPM roots managed by the real dnf or zypper, never touching the host.

Both tools work inside the root (``--installroot`` / ``--root``); librpm is pointed at
the root's own database (``/var/lib/rpm``) through a ``HOME`` whose ``.rpmmacros`` says
so, because Debian's rpm would otherwise keep it in ``~/.rpmdb``. zypper's log and lock
are sent into the root as well (``ZYPP_LOGFILE``, ``ZYPP_LOCKFILE_ROOT``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

TOOL_TIMEOUT_S = 300
DB_DIR = "/var/lib/rpm"
ROCKY_OS_RELEASE = (
    'NAME="Rocky Linux"\nVERSION="9.4 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
    'VERSION_ID="9.4"\nPRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n'
)
LEAP_OS_RELEASE = (
    'NAME="openSUSE Leap"\nVERSION="15.6"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\n'
    'VERSION_ID="15.6"\nPRETTY_NAME="openSUSE Leap 15.6"\n'
)
# What the tests check stays unchanged on the host: rpm's databases (Debian's rpm keeps
# root's in ~/.rpmdb), dnf's history and logs, zypper's state and logs.
HOST_RPM_STATE = (
    Path("/var/lib/rpm/rpmdb.sqlite"),
    Path("/root/.rpmdb/rpmdb.sqlite"),
    Path("/usr/lib/sysimage/rpm/rpmdb.sqlite"),
    Path("/var/lib/dnf/history.sqlite"),
    Path("/var/log/dnf.log"),
    Path("/var/log/dnf.rpm.log"),
    Path("/var/lib/zypp"),
    Path("/var/log/zypp/history"),
    Path("/var/log/zypper.log"),
)


def _run(argv: Sequence[str], env: Mapping[str, str], check: bool = True) -> str:
    proc = subprocess.run(
        list(argv),
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", **env},
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


class RpmRoot:
    """A throwaway root with its own rpm database, managed by dnf or zypper."""

    def __init__(self, path: Path, home: Path) -> None:
        self.path = path
        self.home = home

    @classmethod
    def create(cls, path: Path, home: Path, *, os_release: str) -> RpmRoot:
        (path / "etc").mkdir(parents=True, exist_ok=True)
        (path / "etc/os-release").write_text(os_release)
        (path / "etc/hostname").write_text("rpmroot\n")
        home.mkdir(parents=True, exist_ok=True)
        (home / ".rpmmacros").write_text(f"%_dbpath {DB_DIR}\n")
        return cls(path, home)

    @property
    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "ZYPP_LOGFILE": str(self.path / "var/log/zypper.log"),
            "ZYPP_LOCKFILE_ROOT": str(self.path),
        }

    # -- dnf -------------------------------------------------------------------------

    def set_yum_repos(self, repos: Mapping[str, Path]) -> None:
        directory = self.path / "etc/yum.repos.d"
        directory.mkdir(parents=True, exist_ok=True)
        for name, repo in repos.items():
            (directory / f"{name}.repo").write_text(
                f"[{name}]\nname={name}\nbaseurl=file://{repo}\ngpgcheck=0\nenabled=1\n"
            )

    def dnf(self, *args: str, check: bool = True) -> str:
        return _run(
            [
                "dnf", "-y", "-q", f"--installroot={self.path}", "--releasever=9",
                f"--setopt=reposdir={self.path}/etc/yum.repos.d", "--noplugins", *args,
            ],
            self.env,
            check,
        )  # fmt: skip

    # -- zypper ----------------------------------------------------------------------

    def set_zypp_repos(self, repos: Mapping[str, Path]) -> None:
        directory = self.path / "etc/zypp/repos.d"
        directory.mkdir(parents=True, exist_ok=True)
        for name, repo in repos.items():
            (directory / f"{name}.repo").write_text(
                f"[{name}]\nname={name}\nenabled=1\nautorefresh=0\nbaseurl=file://{repo}\n"
                "type=rpm-md\ngpgcheck=0\n"
            )

    def zypper(self, *args: str, check: bool = True) -> str:
        return _run(
            ["zypper", "--root", str(self.path), "-n", "--no-gpg-checks", *args], self.env, check
        )

    # -- both ------------------------------------------------------------------------

    def versions(self) -> dict[str, str]:
        """Installed package → ``[epoch:]version-release``, as rpm itself reports them."""
        out = _run(
            [
                "rpm", "--root", str(self.path), "--dbpath", DB_DIR, "-qa", "--qf",
                "%{NAME} %{EPOCH} %{VERSION}-%{RELEASE}\\n",
            ],
            self.env,
        )  # fmt: skip
        result = {}
        for line in out.splitlines():
            name, epoch, vr = line.split(" ")
            if name != "gpg-pubkey":
                result[name] = vr if epoch in ("(none)", "0") else f"{epoch}:{vr}"
        return result
