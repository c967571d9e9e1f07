"""How patchd invokes zypper on a target: argv and environment.

On the host, zypper's own configuration applies unchanged. For an alternate root,
``--root`` moves repositories, caches, the rpm database and zypp's history into the
root; the environment moves what ``--root`` does not: zypper's log (``ZYPP_LOGFILE``,
otherwise the host's ``/var/log/zypper.log``), zypp's lock (``ZYPP_LOCKFILE_ROOT``,
otherwise the host's ``/run/zypp.pid``) and, on hosts whose rpm keeps its database
elsewhere, librpm's ``%_dbpath`` (see :mod:`patchd.backends.rpm.environment`). zypper
never waits for its lock itself (``ZYPP_LOCK_TIMEOUT=0``): patchd has waited, for a
bounded time, before starting it.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from patchd.backends.rpm.environment import rpm_home
from patchd.backends.rpm.rpmdb import RpmDatabase
from patchd.target import Target

LOCK_FILE = "/run/zypp.pid"
RAW_CACHE = "/var/cache/zypp/raw"
PACKAGE_CACHE = "/var/cache/zypp/packages"


class ZypperEnvironment:
    """Builds zypper command lines for one target."""

    def __init__(self, target: Target, rpmdb: RpmDatabase, work_dir: Path) -> None:
        self.target = target
        self.rpmdb = rpmdb
        self._work_dir = work_dir

    @cached_property
    def env(self) -> dict[str, str]:
        env = {"ZYPP_LOCK_TIMEOUT": "0"}
        if not self.target.is_host:
            env["ZYPP_LOGFILE"] = str(self.target.path("/var/log/zypper.log"))
            env["ZYPP_LOCKFILE_ROOT"] = str(self.target.root)
            env.update(rpm_home(self.target, self.rpmdb.db_dir, self._work_dir))
        return env

    def argv(
        self,
        *args: str,
        xml: bool = False,
        refresh: bool = False,
        global_options: tuple[str, ...] = (),
    ) -> list[str]:
        """A non-interactive zypper command line inside the target.

        Without ``refresh``, zypper works on the metadata it has (``--no-refresh``).
        ``global_options`` go before the command, where zypper wants them.
        """
        argv = ["zypper", "--non-interactive", *global_options]
        if xml:
            argv.append("--xmlout")
        if not refresh:
            argv.append("--no-refresh")
        if not self.target.is_host:
            argv += ["--root", str(self.target.root)]
        return [*argv, *args]

    def lock_files(self) -> list[Path]:
        """zypp's pid lock for this target (and the host's, which ``zypper --root`` uses)."""
        own = self.target.path(LOCK_FILE)
        return [own] if self.target.is_host else [own, Path(LOCK_FILE)]

    def raw_cache(self, alias: str) -> Path:
        """Where zypper keeps a repository's downloaded metadata."""
        return self.target.path(RAW_CACHE) / alias

    @property
    def package_cache(self) -> Path:
        return self.target.path(PACKAGE_CACHE)
