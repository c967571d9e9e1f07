"""How patchd invokes dnf (or yum) on a target: argv, environment and paths.

On the host, dnf's own configuration applies unchanged. For an alternate root, dnf
works with ``--installroot`` (packages, its cache, history and logs all inside the
root), reads the root's repository definitions (``--setopt=reposdir=``), loads none of
the host's plugins (``--noplugins``: a subscription or versionlock plugin of the host
must not act on the root), and is told the root's release where the root's database
cannot tell it. Every command exits at once when another one holds dnf's locks
(``exit_on_lock``): patchd has already waited, for a bounded time, before starting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from patchd.backends.rpm.environment import rpm_home
from patchd.backends.rpm.rpmdb import RpmDatabase
from patchd.target import Target

MAX_OS_RELEASE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Flavour:
    """What differs between dnf (EL8+, Fedora) and yum (EL7): data, not branches."""

    program: str
    cachedir: str  # inside the target
    cache_layout: str  # "dnf": ID-HASH/repodata; "yum": BASEARCH/RELEASEVER/ID
    refresh: tuple[tuple[str, ...], ...]  # commands that fetch fresh metadata
    pid_locks: tuple[str, ...]  # pid files the tool locks, inside the target
    lock_exit_code: int = 200  # what the tool exits with when another holds its lock


DNF = Flavour(
    program="dnf",
    cachedir="/var/cache/dnf",
    cache_layout="dnf",
    refresh=(("makecache", "--refresh"),),
    pid_locks=(
        "/var/cache/dnf/metadata_lock.pid",
        "/var/cache/dnf/download_lock.pid",
        "/var/lib/dnf/rpmdb_lock.pid",
    ),
)
YUM = Flavour(
    program="yum",
    cachedir="/var/cache/yum",
    cache_layout="yum",
    refresh=(("clean", "expire-cache"), ("makecache",)),
    pid_locks=("/var/run/yum.pid", "/run/yum.pid"),
)


class DnfEnvironment:
    """Builds dnf (or yum) command lines for one target."""

    def __init__(
        self, target: Target, flavour: Flavour, rpmdb: RpmDatabase, work_dir: Path
    ) -> None:
        self.target = target
        self.flavour = flavour
        self.rpmdb = rpmdb
        self._work_dir = work_dir

    @cached_property
    def env(self) -> dict[str, str]:
        return rpm_home(self.target, self.rpmdb.db_dir, self._work_dir)

    @cached_property
    def releasever(self) -> str | None:
        """The release to tell dnf for an alternate root; ``None`` where dnf finds it itself.

        dnf reads it from the package providing ``system-release(releasever)``; a root
        without one (a minimal image) gets the major ``VERSION_ID`` of its os-release.
        """
        if self.target.is_host or self.rpmdb.provides_releasever():
            return None
        return _version_id_major(self.target.path("/etc/os-release"))

    def argv(self, *args: str) -> list[str]:
        """A non-interactive command line of the tool, kept inside the target."""
        argv = [self.flavour.program, "-y", "--setopt=exit_on_lock=True"]
        if not self.target.is_host:
            root = str(self.target.root)
            argv += [
                f"--installroot={root}",
                f"--setopt=reposdir={self.target.path('/etc/yum.repos.d')}",
                "--noplugins",
            ]
            if self.releasever:
                argv.append(f"--releasever={self.releasever}")
        return [*argv, *args]

    @property
    def reposdir(self) -> Path:
        return self.target.path("/etc/yum.repos.d")

    @property
    def cachedir(self) -> Path:
        return self.target.path(self.flavour.cachedir)

    def pid_lock_files(self) -> list[Path]:
        return [self.target.path(p) for p in self.flavour.pid_locks]


def _version_id_major(os_release: Path) -> str | None:
    try:
        with os_release.open("rb") as f:
            text = f.read(MAX_OS_RELEASE_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "VERSION_ID":
            major = value.strip().strip("\"'").split(".")[0]
            return major or None
    return None
