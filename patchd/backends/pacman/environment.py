"""How patchd invokes pacman on a target: argv and paths, all inside the target root.

On the host, pacman's own configuration applies unchanged. For an alternate root
(``--root``), every path pacman would otherwise take from the host — its database,
configuration, package cache, log, hooks and keyring — is named on the command line
and points into the root, so nothing touches the host's pacman state. pacman then runs
install scriptlets and hooks chrooted into the root.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from patchd import process
from patchd.target import Target

PACMAN_CONF_TIMEOUT_S = 30.0

# Never ask; never colour; no progress bars in transcripts.
NONINTERACTIVE_OPTIONS = ("--noconfirm", "--noprogressbar", "--color", "never")


@dataclass(frozen=True)
class PacmanPaths:
    """Where pacman keeps its state for a target (the stock Arch layout)."""

    root: Path
    db_dir: Path  # DBPath: local/ (installed packages) and sync/ (repository databases)
    config: Path
    cache_dirs: tuple[Path, ...]  # where pacman keeps downloaded packages; the first is written
    log_file: Path
    hook_dir: Path
    gpg_dir: Path

    @property
    def local_db(self) -> Path:
        return self.db_dir / "local"

    @property
    def sync_db(self) -> Path:
        return self.db_dir / "sync"

    @property
    def lock_file(self) -> Path:
        """pacman's lock: a file that exists while a transaction runs (``db.lck``)."""
        return self.db_dir / "db.lck"


class PacmanEnvironment:
    """Builds pacman command lines for one target."""

    def __init__(self, target: Target) -> None:
        self.target = target

    @cached_property
    def paths(self) -> PacmanPaths:
        """pacman's directories: the stock layout inside a root; on the host, as configured."""
        if self.target.is_host:
            return self._configured_paths()
        return PacmanPaths(
            root=self.target.root,
            db_dir=self.target.path("/var/lib/pacman"),
            config=self.target.path("/etc/pacman.conf"),
            cache_dirs=(self.target.path("/var/cache/pacman/pkg"),),
            log_file=self.target.path("/var/log/pacman.log"),
            hook_dir=self.target.path("/etc/pacman.d/hooks"),
            gpg_dir=self.target.path("/etc/pacman.d/gnupg"),
        )

    def _configured_paths(self) -> PacmanPaths:
        """The host's paths as ``pacman-conf`` resolves ``/etc/pacman.conf`` (with defaults)."""
        names = ("DBPath", "CacheDir", "LogFile", "HookDir", "GPGDir")
        result = process.run(["pacman-conf", "--verbose", *names], timeout_s=PACMAN_CONF_TIMEOUT_S)
        values: dict[str, list[str]] = {}
        for line in result.stdout.splitlines():
            name, sep, value = line.partition(" = ")
            if sep and name in names:
                values.setdefault(name, []).append(value.strip())

        def first(name: str, default: str) -> Path:
            return Path(values.get(name, [default])[0])

        return PacmanPaths(
            root=Path("/"),
            db_dir=first("DBPath", "/var/lib/pacman/"),
            config=Path("/etc/pacman.conf"),
            cache_dirs=tuple(Path(v) for v in values.get("CacheDir", ["/var/cache/pacman/pkg/"])),
            log_file=first("LogFile", "/var/log/pacman.log"),
            hook_dir=first("HookDir", "/etc/pacman.d/hooks/"),
            gpg_dir=first("GPGDir", "/etc/pacman.d/gnupg/"),
        )

    def location_options(self) -> list[str]:
        """The options that keep pacman inside the target (none on the host)."""
        if self.target.is_host:
            return []
        p = self.paths
        return [
            "--root", str(p.root),
            "--dbpath", str(p.db_dir),
            "--config", str(p.config),
            "--cachedir", str(p.cache_dirs[0]),
            "--logfile", str(p.log_file),
            "--hookdir", str(p.hook_dir),
            "--gpgdir", str(p.gpg_dir),
        ]  # fmt: skip

    def query_argv(self, *args: str) -> list[str]:
        """A read-only pacman command line (``-Q...``): takes no lock."""
        return ["pacman", *self.location_options(), "--color", "never", *args]

    def change_argv(self, *args: str) -> list[str]:
        """A non-interactive pacman command line that may change the target."""
        return ["pacman", *self.location_options(), *NONINTERACTIVE_OPTIONS, *args]
